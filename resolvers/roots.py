"""Resolvers of the query root fields (viewer, account, accounts, node, token, asset) and
the token registry look-ups. Each takes the request context first."""
from __future__ import annotations

from typing import Any

from gateway.domain import ids
from gateway.domain.errors import ClientCode
from gateway.domain.records import Asset, Token
from gateway.domain.tokens import token_key
from resolvers.accounts import AccountRef, account_view, authorize, load
from resolvers.context import RequestContext
from resolvers.errors import client_error



# -- roots ------------------------------------------------------------------
def _freshness(max_age: int | None) -> float | None:
    if max_age is not None and max_age < 0:
        raise client_error(ClientCode.BAD_USER_INPUT, "`maxAge` must be 0 or more seconds")
    return None if max_age is None else float(max_age)


def viewer(ctx: RequestContext, max_age: int | None = None, refresh: bool = False) -> AccountRef | None:
    if ctx.caller is None:
        return None
    ctx.ask(ctx.caller.id, _freshness(max_age), refresh)
    return AccountRef(id=ctx.caller.id, config=ctx.caller)


async def account(ctx: RequestContext, account_id: str, max_age: int | None = None, refresh: bool = False) -> AccountRef:
    await load(ctx, account_id)
    ref = authorize(ctx, account_id)
    ctx.ask(ref.id, _freshness(max_age), refresh)
    return ref


async def accounts(ctx: RequestContext, account_ids: list[str], path: list[Any], max_age: int | None = None,
                   refresh: bool = False) -> list[AccountRef | None]:
    freshness = _freshness(max_age)
    out: list[AccountRef | None] = []
    for index, account_id in enumerate(account_ids):
        try:
            await load(ctx, account_id)
            out.append(authorize(ctx, account_id))
            ctx.ask(account_id, freshness, refresh)
        except Exception as exc:  # a GraphQLError from authorize: report it at its index
            exc.path = path + [index]
            ctx.extra_errors.append(exc)
            out.append(None)
    return out


async def node(ctx: RequestContext, node_id: str) -> Any:
    decoded = ids.decode(node_id)
    if decoded and decoded[0] in ("Wallet", "Holding") and len(decoded[1]) >= 3:
        type_name, (_, account_id, *_) = decoded
        await load(ctx, account_id)
        view = await account_view(ctx, authorize(ctx, account_id).config)
        items = view.wallets if type_name == "Wallet" else view.holdings
        return next((item for item in items if item.id == node_id), None)
    if ":" not in node_id and "/" not in node_id:
        # Account ids cannot hold ':' (token ids always do): answer every account-shaped id
        # like account(id:), so node() cannot be used to probe which accounts exist.
        await load(ctx, node_id)
        if ctx.is_admin and ctx.state.account(node_id) is None:
            return None
        return authorize(ctx, node_id)
    return await token(ctx, node_id)


async def token(ctx: RequestContext, token_id: str) -> Token | None:
    known = ctx.registry.token(token_id)
    if known is not None:
        return known
    # A token outside the registry exists only as the caller's holdings name it.
    if ctx.caller is None:
        return None
    wanted = token_key(token_id)
    for h in (await account_view(ctx, ctx.caller)).holdings:
        if token_key(h.token.id) == wanted:
            return h.token
    return None


def asset(ctx: RequestContext, key: str) -> Asset | None:
    if key in ctx.registry.assets:
        return ctx.registry.assets[key]
    seen = next((t for t in ctx.seen_tokens.values() if t.asset_key == key), None)
    return Asset(key=key, symbol=seen.symbol, name=seen.name) if seen else None


def asset_tokens(ctx: RequestContext, key: str) -> list[Token]:
    tokens = {t.id: t for t in ctx.registry.tokens_of_asset(key)}
    for t in ctx.seen_tokens.values():
        if t.asset_key == key:
            tokens.setdefault(t.id, t)
    return list(tokens.values())
