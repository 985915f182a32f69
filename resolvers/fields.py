"""Resolver functions the schema's fields call. Each takes the request context first."""
from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, TypeVar

from gateway.domain import ids
from gateway.domain.errors import ClientCode
from gateway.domain.records import Asset, HoldingRecord, Source, SourceFetch, Token, WalletRecord
from gateway.domain.tokens import token_key
from resolvers import calico_window
from gateway.config import AccountConfig
from resolvers.accounts import AccountRef, AccountView, account_view, authorize, start_view
from resolvers.context import RequestContext
from resolvers.errors import client_error
from resolvers.holdings import order, select, selection, value_total
from resolvers.pagination import Connection, paginate, scope_of
from resolvers.positions import PositionView, group
from resolvers.valuation import derive_values

_SOURCE_ORDER = {s: i for i, s in enumerate(Source)}
T = TypeVar("T")


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


def read_early(ctx: RequestContext, roots: list[tuple[str, dict[str, Any], bool]]) -> bool:
    """Start reading the caller's account before execution reaches it, when the operation
    is only `viewer` roots and one of them needs the account's data: the upstream calls
    then overlap graphql-core's first pass over the selection (about 0.6 ms of a deep
    query) instead of following it. Same options as the first viewer root will ask for;
    anything unusual (other roots, arguments that will fail) is left to execution."""
    if ctx.caller is None or not roots or any(name != "viewer" for name, _, _ in roots) \
            or not any(needs_view for _, _, needs_view in roots):
        return False
    args = roots[0][1]
    max_age, refresh = args.get("maxAge"), args.get("refresh", False)
    if not (max_age is None or (type(max_age) is int and max_age >= 0)) or type(refresh) is not bool:
        return False
    ctx.ask(ctx.caller.id, _freshness(max_age), refresh)
    return not start_view(ctx, ctx.caller).done()


def account(ctx: RequestContext, account_id: str, max_age: int | None = None, refresh: bool = False) -> AccountRef:
    ref = authorize(ctx, account_id)
    ctx.ask(ref.id, _freshness(max_age), refresh)
    return ref


def accounts(ctx: RequestContext, account_ids: list[str], path: list[Any], max_age: int | None = None,
             refresh: bool = False) -> list[AccountRef | None]:
    freshness = _freshness(max_age)
    out: list[AccountRef | None] = []
    for index, account_id in enumerate(account_ids):
        try:
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
        view = await account_view(ctx, authorize(ctx, account_id).config)
        items = view.wallets if type_name == "Wallet" else view.holdings
        return next((item for item in items if item.id == node_id), None)
    if ":" not in node_id and "/" not in node_id:
        # Account ids cannot hold ':' (token ids always do): answer every account-shaped id
        # like account(id:), so node() cannot be used to probe which accounts exist.
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


# -- listings -----------------------------------------------------------------
def _listing(owner: str, holdings: list[HoldingRecord], filter_: Any, order_by: Any,
             first: int | None, after: str | None) -> Connection[HoldingRecord]:
    f = selection(filter_)
    field = order_by.field.value if order_by else "VALUE"
    direction = order_by.direction.value if order_by else "DESC"
    chosen = order(select(holdings, f), field, direction)
    return paginate(chosen, first, after, scope_of(owner, repr(f), field, direction))


def _fetches_for(fetches: list[SourceFetch], filter_: Any) -> list[SourceFetch]:
    """The fetches a total depends on: those of the sources the filter keeps."""
    sources = selection(filter_).sources
    return [f for f in fetches if not sources or f.source in sources]


# -- account fields -----------------------------------------------------------
# Each returns its value directly when the account's view is already built (every field
# after the first), and an awaitable otherwise: graphql-core only creates a task for the
# awaitable ones, and a deep query has a few hundred such fields.
def with_view(ctx: RequestContext, account: AccountConfig, then: Callable[[AccountView], T]) -> T | Awaitable[T]:
    pending = ctx.views.get(account.id)
    if pending is not None and pending.done() and not pending.cancelled() and pending.exception() is None:
        return then(pending.result())

    async def later() -> T:
        return then(await account_view(ctx, account))
    return later()


def account_wallets(ctx: RequestContext, ref: AccountRef, sources: list[Source] | None) -> Any:
    def then(view: AccountView) -> list[WalletRecord]:
        wallets = [w for w in view.wallets if not sources or w.source in sources]
        return sorted(wallets, key=lambda w: (_SOURCE_ORDER[w.source], w.local_id))
    return with_view(ctx, ref.config, then)


def _with_account_data(ctx: RequestContext, ref: AccountRef, filter_: Any,
                       then: Callable[[list[HoldingRecord], list[SourceFetch]], T]) -> T | Awaitable[T]:
    f = selection(filter_)
    calico_window.validate_window(f)

    def from_view(view: AccountView) -> T | Awaitable[T]:
        params = calico_window.pushdown(f, view.fetches)
        if params is None:
            return then(view.holdings, view.fetches)

        async def pushed() -> T:   # Calico's part of the filter goes to Calico: one more read
            fetches = [x for x in view.fetches if x.source is not Source.CALICO]
            fetches += await calico_window.pushed_fetches(ctx, ref.config, params)
            return then(derive_values([h for x in fetches for h in x.holdings]), fetches)
        return pushed()

    result = with_view(ctx, ref.config, from_view)
    if inspect.isawaitable(result):
        async def flatten() -> T:
            inner = await result
            return await inner if inspect.isawaitable(inner) else inner
        return flatten()
    return result


def account_holdings(ctx: RequestContext, ref: AccountRef, filter_: Any, order_by: Any,
                     first: int | None, after: str | None) -> Any:
    return _with_account_data(ctx, ref, filter_,
                              lambda holdings, _: _listing(ref.id, holdings, filter_, order_by, first, after))


def account_total(ctx: RequestContext, ref: AccountRef, currency: str, filter_: Any) -> Any:
    return _with_account_data(ctx, ref, filter_, lambda holdings, fetches: value_total(
        select(holdings, selection(filter_)), currency, _fetches_for(fetches, filter_)))


def account_positions(ctx: RequestContext, ref: AccountRef, grouping: str, currency: str, filter_: Any,
                      first: int | None, after: str | None) -> Any:
    def then(holdings: list[HoldingRecord], fetches: list[SourceFetch]) -> Connection[PositionView]:
        chosen = select(holdings, selection(filter_))
        total = value_total(chosen, currency, _fetches_for(fetches, filter_)).value.amount
        positions = group(chosen, grouping, currency, total, ctx.registry)
        return paginate(positions, first, after, scope_of(ref.id, "positions", grouping, currency.upper(),
                                                           repr(selection(filter_))))
    return _with_account_data(ctx, ref, filter_, then)


# -- wallet fields ------------------------------------------------------------
def wallet_account(ctx: RequestContext, wallet: WalletRecord) -> AccountRef:
    return authorize(ctx, wallet.account_id)


def _with_wallet(ctx: RequestContext, wallet: WalletRecord, then: Callable[[AccountView], T]) -> T | Awaitable[T]:
    return with_view(ctx, authorize(ctx, wallet.account_id).config, then)


def _wallet_fetches(view: AccountView, wallet: WalletRecord) -> list[SourceFetch]:
    return [f for f in view.fetches if f.source is wallet.source and any(w.id == wallet.id for w in f.wallets)]


def wallet_holdings(ctx: RequestContext, wallet: WalletRecord, filter_: Any, order_by: Any,
                    first: int | None, after: str | None) -> Any:
    return _with_wallet(ctx, wallet, lambda view: _listing(wallet.id, view.by_wallet.get(wallet.id, []), filter_,
                                                           order_by, first, after))


def wallet_total(ctx: RequestContext, wallet: WalletRecord, currency: str) -> Any:
    return _with_wallet(ctx, wallet, lambda view: value_total(select(view.by_wallet.get(wallet.id, []), selection(None)),
                                                              currency, _wallet_fetches(view, wallet)))
