"""Apollo Federation entity resolution (`_entities`): Account, Wallet and Token by `id`.

A federated gateway sends every representation of a query plan step in one `_entities`
call. Each one resolves exactly as the matching root field would, so authorization is
the same as `account(id)` / `node(id)`: another account's entity is null with a FORBIDDEN
error at its index. Upstream reads go through account_view, i.e. the per-request
dataloaders, so N representations cost one upstream call per (source, identity).
"""
from __future__ import annotations

from typing import Any

from gateway.domain import ids
from gateway.domain.errors import ClientCode
from gateway.domain.records import Token, WalletRecord
from resolvers import roots
from resolvers.accounts import AccountRef, account_view, authorize, load
from resolvers.context import RequestContext
from resolvers.errors import client_error


def _key(entity_id: Any, type_name: str) -> str:
    if not isinstance(entity_id, str) or not entity_id:
        raise client_error(ClientCode.BAD_USER_INPUT, f"a {type_name} representation needs its `id`")
    return entity_id


async def account(ctx: RequestContext, account_id: Any) -> AccountRef:
    # Data is read lazily by the selected fields; all of them share the account's one view.
    await load(ctx, account_id)
    return authorize(ctx, _key(account_id, "Account"))


async def wallet(ctx: RequestContext, wallet_id: Any) -> WalletRecord | None:
    wallet_id = _key(wallet_id, "Wallet")
    decoded = ids.decode(wallet_id)
    if not decoded or decoded[0] != "Wallet" or len(decoded[1]) < 3:
        return None                      # not a wallet id: no such entity
    await load(ctx, decoded[1][1])
    ref = authorize(ctx, decoded[1][1])  # the opaque id names its account
    view = await account_view(ctx, ref.config)
    return next((w for w in view.wallets if w.id == wallet_id), None)


async def token(ctx: RequestContext, token_id: Any) -> Token | None:
    return await roots.token(ctx, _key(token_id, "Token"))
