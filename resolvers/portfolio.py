"""Resolvers of an account's and a wallet's data fields: wallets, holdings listings,
positions and totals, all read from the account's view. Each takes the request context first."""
from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, TypeVar

from gateway.config import AccountConfig
from gateway.domain.records import HoldingRecord, Money, Price, SourceFetch, WalletRecord
from gateway.sources.catalog import Source
from resolvers import calico_window
from resolvers.accounts import AccountRef, AccountView, account_view, authorize, start_source_view
from resolvers.context import RequestContext
from resolvers.currency import checked_currency
from resolvers.derived import Derived
from resolvers.holdings import ordered, selected, selected_sums, selection, value_total
from resolvers.pagination import Connection, paginate, scope_of
from resolvers.positions import PositionView, group, grouped
from resolvers.valuation import derive_values

_SOURCE_ORDER = {s: i for i, s in enumerate(Source)}
T = TypeVar("T")


# -- listings -----------------------------------------------------------------
def _listing(owner: tuple[str, str], holdings: list[HoldingRecord], derived: Derived, filter_: Any, order_by: Any,
             first: int | None, after: str | None) -> Connection[HoldingRecord]:
    """`owner`: ("account", id) or ("wallet", id), whose holdings these are."""
    f = selection(filter_)
    field = order_by.field.value if order_by else "VALUE"
    direction = order_by.direction.value if order_by else "DESC"
    chosen = ordered(derived, owner, holdings, f, field, direction)
    return paginate(chosen, first, after, scope_of(owner[1], repr(f), field, direction))


def _fetches_for(fetches: list[SourceFetch], filter_: Any) -> list[SourceFetch]:
    """The fetches a total depends on: those of the sources the filter keeps."""
    sources = selection(filter_).sources
    return [f for f in fetches if not sources or f.source in sources]


# -- account fields -----------------------------------------------------------
# Each returns its value directly when the account's view is already built (every field
# after the first), and an awaitable otherwise: graphql-core only creates a task for the
# awaitable ones, and a deep query has a few hundred such fields.
def with_view(ctx: RequestContext, account: AccountConfig, then: Callable[[AccountView], T],
              sources: Any = None) -> T | Awaitable[T]:
    """`sources`: in a deferred operation, a field filtered to some sources reads only those."""
    if sources and ctx.deferred:
        view = start_source_view(ctx, account, sources)

        async def partial() -> T:
            return then(await view)
        return partial()
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
                       then: Callable[[list[HoldingRecord], list[SourceFetch], Derived], T]) -> T | Awaitable[T]:
    f = selection(filter_)
    calico_window.validate_window(f)

    def from_view(view: AccountView) -> T | Awaitable[T]:
        params = calico_window.pushdown(f, view.fetches)
        if params is None:
            return then(view.holdings, view.fetches, view.derived)

        async def pushed() -> T:   # Calico's part of the filter goes to Calico: one more read
            fetches = [x for x in view.fetches if x.source is not Source.CALICO]
            fetches += await calico_window.pushed_fetches(ctx, ref.config, params)
            # holdings of this request's own: what is derived from them is its own too
            return then(derive_values([h for x in fetches for h in x.holdings]), fetches, Derived())
        return pushed()

    result = with_view(ctx, ref.config, from_view, f.sources)
    if inspect.isawaitable(result):
        async def flatten() -> T:
            inner = await result
            return await inner if inspect.isawaitable(inner) else inner
        return flatten()
    return result


def account_holdings(ctx: RequestContext, ref: AccountRef, filter_: Any, order_by: Any,
                     first: int | None, after: str | None) -> Any:
    return _with_account_data(ctx, ref, filter_, lambda holdings, _, derived: _listing(
        ("account", ref.id), holdings, derived, filter_, order_by, first, after))


def account_total(ctx: RequestContext, ref: AccountRef, currency: str, filter_: Any) -> Any:
    currency = checked_currency(ctx, currency)
    f = selection(filter_)
    return _with_account_data(ctx, ref, filter_, lambda holdings, fetches, derived: value_total(
        selected(derived, ("account", ref.id), holdings, f), currency, _fetches_for(fetches, filter_),
        ctx.state.fx.rate, selected_sums(derived, ("account", ref.id), holdings, f)))


def account_positions(ctx: RequestContext, ref: AccountRef, grouping: str, currency: str, filter_: Any,
                      first: int | None, after: str | None) -> Any:
    currency = checked_currency(ctx, currency)

    f = selection(filter_)

    def then(holdings: list[HoldingRecord], fetches: list[SourceFetch], derived: Derived) -> Connection[PositionView]:
        chosen = selected(derived, ("account", ref.id), holdings, f)
        rate_for = ctx.state.fx.rate
        total = value_total(chosen, currency, _fetches_for(fetches, filter_), rate_for,
                            selected_sums(derived, ("account", ref.id), holdings, f)).value.amount
        groups = grouped(derived, ("account", ref.id), holdings, f, grouping)
        positions = group(chosen, grouping, currency, total, ctx.registry, rate_for, groups)
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
    return _with_wallet(ctx, wallet, lambda view: _listing(("wallet", wallet.id), view.by_wallet.get(wallet.id, []),
                                                           view.derived, filter_, order_by, first, after))


def wallet_total(ctx: RequestContext, wallet: WalletRecord, currency: str) -> Any:
    currency = checked_currency(ctx, currency)
    f = selection(None)

    def then(view: AccountView) -> Any:
        holdings = view.by_wallet.get(wallet.id, [])
        owner = ("wallet", wallet.id)
        return value_total(selected(view.derived, owner, holdings, f), currency, _wallet_fetches(view, wallet),
                           ctx.state.fx.rate, selected_sums(view.derived, owner, holdings, f))
    return _with_wallet(ctx, wallet, then)


# -- a holding in another currency ---------------------------------------------
def holding_value_in(ctx: RequestContext, holding: HoldingRecord, currency: str) -> Money | None:
    """The holding's value converted (null when unvalued or no rate converts it)."""
    currency = checked_currency(ctx, currency)
    return None if holding.value is None else ctx.state.fx.convert(holding.value, currency)


def holding_price_in(ctx: RequestContext, holding: HoldingRecord, currency: str) -> Price | None:
    """The holding's unit price converted: DERIVED when a rate was applied."""
    currency = checked_currency(ctx, currency)
    return None if holding.price is None else ctx.state.fx.convert_price(holding.price, currency)
