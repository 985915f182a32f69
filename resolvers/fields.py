"""Resolver functions the schema's fields call. Each takes the request context first."""
from __future__ import annotations

from typing import Any

from gateway import ids
from gateway.errors import ClientCode
from gateway.records import Asset, HoldingRecord, Source, Token, WalletRecord
from resolvers.accounts import AccountRef, authorize, fetch_account, wallets_of
from resolvers.context import RequestContext
from resolvers.errors import client_error
from resolvers.holdings import order, select, selection, value_total, holdings_of
from resolvers.pagination import Connection, paginate, scope_of

_SOURCE_ORDER = {s: i for i, s in enumerate(Source)}


# -- roots ------------------------------------------------------------------
def viewer(ctx: RequestContext) -> AccountRef | None:
    return AccountRef(id=ctx.caller.id, config=ctx.caller) if ctx.caller else None


def account(ctx: RequestContext, account_id: str) -> AccountRef:
    return authorize(ctx, account_id)


def accounts(ctx: RequestContext, account_ids: list[str], path: list[Any]) -> list[AccountRef | None]:
    out: list[AccountRef | None] = []
    for index, account_id in enumerate(account_ids):
        try:
            out.append(authorize(ctx, account_id))
        except Exception as exc:  # a GraphQLError from authorize: report it at its index
            exc.path = path + [index]
            ctx.extra_errors.append(exc)
            out.append(None)
    return out


async def node(ctx: RequestContext, node_id: str) -> Any:
    decoded = ids.decode(node_id)
    if decoded and decoded[0] in ("Wallet", "Holding") and len(decoded[1]) >= 3:
        type_name, (source_value, account_id, *_) = decoded
        ref = authorize(ctx, account_id)
        try:
            source = Source(source_value)
        except ValueError:
            return None
        fetches = await fetch_account(ctx, ref.config, [source])
        items = wallets_of(fetches) if type_name == "Wallet" else holdings_of(fetches)
        return next((item for item in items if item.id == node_id), None)
    if ctx.state.account(node_id) is not None:
        return authorize(ctx, node_id)
    return await token(ctx, node_id)


async def token(ctx: RequestContext, token_id: str) -> Token | None:
    known = ctx.registry.token(token_id)
    if known is not None:
        return known
    # A token outside the registry exists only as the caller's holdings name it.
    if ctx.caller is None:
        return None
    wanted = token_id.lower() if token_id.startswith("eip155:") else token_id
    for h in holdings_of(await fetch_account(ctx, ctx.caller)):
        tid = h.token.id.lower() if h.token.id.startswith("eip155:") else h.token.id
        if tid == wanted:
            return h.token
    return None


def asset(ctx: RequestContext, key: str) -> Asset | None:
    if key in ctx.registry.assets:
        return ctx.registry.assets[key]
    seen = next((t for t in ctx.seen_tokens.values() if t.asset_key == key), None)
    return ctx.registry.asset(key) if seen else None


def asset_tokens(ctx: RequestContext, key: str) -> list[Token]:
    tokens = {t.id: t for t in ctx.registry.tokens_of_asset(key)}
    for t in ctx.seen_tokens.values():
        if t.asset_key == key:
            tokens.setdefault(t.id, t)
    return list(tokens.values())


# -- account fields -----------------------------------------------------------
def _remember_tokens(ctx: RequestContext, holdings: list[HoldingRecord]) -> None:
    for h in holdings:
        ctx.seen_tokens.setdefault(h.token.id, h.token)


async def account_wallets(ctx: RequestContext, ref: AccountRef, sources: list[Source] | None) -> list[WalletRecord]:
    fetches = await fetch_account(ctx, ref.config, sources)
    return sorted(wallets_of(fetches), key=lambda w: (_SOURCE_ORDER[w.source], w.local_id))


async def _listing(ctx: RequestContext, owner: str, holdings: list[HoldingRecord], filter_: Any,
                   order_by: Any, first: int | None, after: str | None) -> Connection[HoldingRecord]:
    f = selection(filter_)
    field = order_by.field.value if order_by else "VALUE"
    direction = order_by.direction.value if order_by else "DESC"
    chosen = order(select(holdings, f), field, direction)
    _remember_tokens(ctx, chosen)
    scope = scope_of(owner, repr(f), field, direction)
    return paginate(chosen, first, after, scope)


async def account_holdings(ctx: RequestContext, ref: AccountRef, filter_: Any, order_by: Any,
                           first: int | None, after: str | None) -> Connection[HoldingRecord]:
    f = selection(filter_)
    fetches = await fetch_account(ctx, ref.config, f.sources or None)
    return await _listing(ctx, ref.id, holdings_of(fetches), f, order_by, first, after)


async def account_total(ctx: RequestContext, ref: AccountRef, currency: str, filter_: Any):
    f = selection(filter_)
    fetches = await fetch_account(ctx, ref.config, f.sources or None)
    return value_total(select(holdings_of(fetches), f), currency, fetches)


# -- wallet fields ------------------------------------------------------------
def wallet_account(ctx: RequestContext, wallet: WalletRecord) -> AccountRef:
    return authorize(ctx, wallet.account_id)


async def _wallet_fetches(ctx: RequestContext, wallet: WalletRecord):
    ref = authorize(ctx, wallet.account_id)
    return await fetch_account(ctx, ref.config, [wallet.source])


async def wallet_holdings(ctx: RequestContext, wallet: WalletRecord, filter_: Any, order_by: Any,
                          first: int | None, after: str | None) -> Connection[HoldingRecord]:
    fetches = await _wallet_fetches(ctx, wallet)
    mine = [h for h in holdings_of(fetches) if h.wallet.id == wallet.id]
    return await _listing(ctx, wallet.id, mine, filter_, order_by, first, after)


async def wallet_total(ctx: RequestContext, wallet: WalletRecord, currency: str):
    fetches = await _wallet_fetches(ctx, wallet)
    mine = select([h for h in holdings_of(fetches) if h.wallet.id == wallet.id], selection(None))
    return value_total(mine, currency, [f for f in fetches if any(w.id == wallet.id for w in f.wallets)])
