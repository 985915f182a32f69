"""The Mutation root: the account registry's admin API (docs/ACCOUNTS.md)."""
from __future__ import annotations

from typing import Optional

import strawberry
from strawberry import Info

from gateway.accounts.links import LinkInput
from resolvers import registry
from schema.enums import Source
from schema.types import Account


@strawberry.input(description="One source's identity for linkSource: only the fields of that source.")
class SourceLinkInput:
    source: Source
    token: Optional[str] = strawberry.field(default=None, description="CALICO, CRYPTOFUSE: the user's bearer token (replaces a previous one)")
    accounts: Optional[list[str]] = strawberry.field(default=None, description="ONEBALANCE: CAIP-10 ids (added to those linked)")
    wallet_uuids: Optional[list[str]] = strawberry.field(default=None, description="COBO: wallet UUIDs (added to those linked)")
    api_key: Optional[str] = strawberry.field(default=None, description="DALP: the participant's key")
    wallet: Optional[str] = strawberry.field(default=None, description="DALP: a wallet address read with the source-level key")


@strawberry.type(description="A new gateway key: `key` is shown this once and never again (only its SHA-256 is kept).")
class IssuedApiKey:
    key_id: strawberry.ID
    key: str
    label: Optional[str]


@strawberry.type(description="Admin keys or admin JWTs only; anyone else gets FORBIDDEN.")
class Mutation:
    @strawberry.mutation(description="A new account with no links; id: 1-64 of A-Z a-z 0-9 . _ -")
    async def create_account(self, info: Info, id: strawberry.ID) -> Account:
        return await registry.create_account(info.context, id)   # type: ignore[return-value]

    @strawberry.mutation(description="The account, its links and its keys, gone everywhere within a second.")
    async def delete_account(self, info: Info, id: strawberry.ID) -> bool:
        return await registry.delete_account(info.context, id)

    @strawberry.mutation(description="Link one source's identity (checked like the config file's).")
    async def link_source(self, info: Info, account_id: strawberry.ID, link: SourceLinkInput) -> Account:
        return await registry.link_source(info.context, account_id, LinkInput(  # type: ignore[return-value]
            source=link.source.value, token=link.token, accounts=link.accounts, wallet_uuids=link.wallet_uuids,
            api_key=link.api_key, wallet=link.wallet))

    @strawberry.mutation(description="Unlink one identity of a source, or (identity omitted) all of it.")
    async def unlink_source(self, info: Info, account_id: strawberry.ID, source: Source,
                            identity: Optional[str] = None) -> Account:
        return await registry.unlink_source(info.context, account_id, source, identity)   # type: ignore[return-value]

    @strawberry.mutation(description="A new gateway key for the account, shown once.")
    async def issue_api_key(self, info: Info, account_id: strawberry.ID, label: Optional[str] = None) -> IssuedApiKey:
        return await registry.issue_api_key(info.context, account_id, label)   # type: ignore[return-value]

    @strawberry.mutation(description="The key stops working in every process within a second.")
    async def revoke_api_key(self, info: Info, account_id: strawberry.ID, key_id: strawberry.ID) -> bool:
        return await registry.revoke_api_key(info.context, account_id, key_id)
