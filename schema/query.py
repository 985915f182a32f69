"""The Query root."""
from __future__ import annotations

from typing import Annotated, Optional

import strawberry
from strawberry import Info

from resolvers import roots
from schema.types import Account, Asset, Node, Token


MaxAge = Annotated[Optional[int], strawberry.argument(
    description="Seconds: use upstream answers at most this old (cached ones may be up to each source's TTL).")]
Refresh = Annotated[bool, strawberry.argument(
    description="Ask every source again instead of the cache (rate-limited per source; Cobo without force_refresh).")]


@strawberry.type
class Query:
    @strawberry.field(description="The account the caller's key belongs to.")
    def viewer(self, info: Info, max_age: MaxAge = None, refresh: Refresh = False) -> Optional[Account]:
        return roots.viewer(info.context, max_age, refresh)

    @strawberry.field(description="An account by id (FORBIDDEN unless it is the caller's).")
    async def account(self, info: Info, id: strawberry.ID, max_age: MaxAge = None, refresh: Refresh = False) -> Optional[Account]:
        return await roots.account(info.context, id, max_age, refresh)

    @strawberry.field(description="Several accounts; a forbidden one is null with an error at its index.")
    async def accounts(self, info: Info, ids: list[strawberry.ID], max_age: MaxAge = None,
                       refresh: Refresh = False) -> list[Optional[Account]]:
        return await roots.accounts(info.context, ids, list(info.path.as_list()), max_age, refresh)

    @strawberry.field(description="Any Account, Wallet, Holding or Token by its id.")
    async def node(self, info: Info, id: strawberry.ID) -> Optional[Node]:
        return await roots.node(info.context, id)

    @strawberry.field(description="A token by CAIP-19 id (case-insensitive for EVM) or source-scoped id.")
    async def token(self, info: Info, id: strawberry.ID) -> Optional[Token]:
        return await roots.token(info.context, id)

    @strawberry.field(description="An asset by key, e.g. usdc.")
    def asset(self, info: Info, key: str) -> Optional[Asset]:
        return roots.asset(info.context, key)
