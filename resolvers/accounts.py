"""Accounts: access checks, fetching an account's sources through the loaders, statuses."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gateway.config import AccountConfig
from gateway.domain.errors import ClientCode
from gateway.domain.records import (HoldingRecord, SourceError, SourceFetch, SourceState,
                             SourceWarning, WalletRecord)
from gateway.sources.catalog import SPEC_OF, Source
from gateway.upstream.resilience import BreakerState
from gateway.accounts.errors import RegistryError
from resolvers.context import RequestContext
from resolvers.derived import Derived
from resolvers.errors import client_error
from resolvers.holdings import DEFAULT_SELECTION, select
from gateway.history.codec import Snapshot


@dataclass(slots=True)
class AccountRef:
    """Field source of the Account type: an account the caller may read."""
    id: str
    config: AccountConfig


@dataclass(slots=True)
class SourceStatusView:
    source: Source
    state: SourceState
    fetched_at: datetime | None = None
    from_cache: bool = False
    error: SourceError | None = None
    warnings: list[SourceWarning] = field(default_factory=list)
    upstream_calls: int = 0
    breaker: BreakerState = BreakerState.CLOSED


def authorize(ctx: RequestContext, account_id: str) -> AccountRef:
    """The account if the caller may read it: its own, or any for an admin key.
    Anyone else gets FORBIDDEN, also for unknown ids, so a caller cannot probe which
    accounts exist; only an admin learns NOT_FOUND."""
    caller = ctx.caller
    if caller is not None and caller.id == account_id:
        return AccountRef(id=caller.id, config=caller)
    if not ctx.is_admin:
        raise client_error(ClientCode.FORBIDDEN, "you may not read this account")
    account = ctx.state.account(account_id)
    if account is None:
        raise client_error(ClientCode.NOT_FOUND, f"no account {account_id!r}")
    return AccountRef(id=account.id, config=account)


async def load(ctx: RequestContext, account_id: object) -> None:
    """An admin may read any account: one of the registry's is loaded on first use
    (REGISTRY_UNAVAILABLE when the database does not answer). Others read only their own,
    which authentication loaded."""
    directory = ctx.state.directory
    if not ctx.is_admin or directory is None or not isinstance(account_id, str) or len(account_id) > 128 \
            or ctx.state.config.account(account_id) is not None:
        return
    try:
        await directory.ensure_account(account_id)
    except RegistryError as exc:
        raise client_error(exc.code, exc.message) from None


def configured_sources(ctx: RequestContext, account: AccountConfig) -> list[Source]:
    return [s for s in Source if s in ctx.state.clients and account.source(s) is not None]


def _identities(ctx: RequestContext, account: AccountConfig) -> list[tuple[Source, object]]:
    """Each (source, upstream identity) of the account, in the order its fetches are listed."""
    out: list[tuple[Source, object]] = []
    for source in configured_sources(ctx, account):
        key = (account.id, source)
        identities = ctx.identities.get(key)
        if identities is None:
            identities = ctx.identities[key] = ctx.state.clients[source].identities(account)
        out.extend((source, identity) for identity in identities)
    return out


async def fetch_account(ctx: RequestContext, account: AccountConfig) -> list[SourceFetch]:
    """Every fetch for the account's sources, concurrently, via the per-request loaders.
    Requests reading the same account with the same options at the same time share that
    read and its normalization (GatewayState.account_reads): the first runs it through its
    loaders, the others join it, and each gets its own copies and counts the read as its own
    (its upstream calls, its wait as upstream wait, a live read)."""
    options = ctx.fetch_options.get(account.id)
    key = (account.id, False, None) if options is None else (account.id, options.refresh, options.max_age_s)
    reads = ctx.state.account_reads
    in_flight = reads.joining(key)
    if in_flight is not None:
        fetches = await _join(ctx, in_flight)
    else:
        fetches = await reads.run(key, lambda: _load(ctx, account))
    ctx.note_failures(fetches)
    return fetches


async def _load(ctx: RequestContext, account: AccountConfig) -> list[SourceFetch]:
    loads = [ctx.loaders.load(source, identity) for source, identity in _identities(ctx, account)]
    return list(await asyncio.gather(*loads)) if loads else []


async def _join(ctx: RequestContext, shared: Awaitable[list[SourceFetch]]) -> list[SourceFetch]:
    # Only the account's view reads its identities (ctx.views keeps one per account), so the
    # joiner's loaders need not hold these fetches.
    waiting = time.perf_counter()
    fetches = [f.handed_out() for f in await shared]
    if ctx.ledger is not None:
        ctx.ledger.note_joined_read(waiting)
    return fetches


def remembered_fetches(ctx: RequestContext, account: AccountConfig) -> list[SourceFetch] | None:
    """The account's fetches when every one is in the memo of normalized reads, else None.
    Each one found is primed into its loader either way, so the loaders hand it out without
    reading (or counting) it again."""
    fetches: list[SourceFetch] = []
    complete = True
    options = ctx.options_for(account.id)
    for source, identity in _identities(ctx, account):
        fetch = ctx.state.clients[source].upstream.recall(identity, options)
        if fetch is None:
            complete = False
        else:
            ctx.loaders.prime(source, identity, fetch)
            fetches.append(fetch)
    return fetches if complete else None


@dataclass(slots=True)
class AccountView:
    """Everything one request knows of one account: its fetches, wallets and valued holdings."""
    fetches: list[SourceFetch]
    wallets: list[WalletRecord]
    holdings: list[HoldingRecord]
    by_wallet: dict[str, list[HoldingRecord]] = field(default_factory=dict)   # wallet id -> holdings
    derived: Derived = field(default_factory=Derived, compare=False)   # kept with the valued holdings (resolvers/derived.py)


async def account_view(ctx: RequestContext, account: AccountConfig) -> AccountView:
    """Built once per account per request, however many fields ask for it."""
    return await start_view(ctx, account)


def start_view(ctx: RequestContext, account: AccountConfig) -> asyncio.Future[AccountView]:
    """The account's view being built: its upstream reads start now if they have not yet.
    When the memo holds every read, the view is built here and now: no loader round, no
    task (a cached request's fields then all resolve in graphql-core's first pass)."""
    pending = ctx.views.get(account.id)
    if pending is None:
        remembered = remembered_fetches(ctx, account)
        if remembered is not None:
            pending = asyncio.get_running_loop().create_future()
            ctx.note_failures(remembered)
            try:
                pending.set_result(_recorded(ctx, account, _view_of(ctx, remembered)))
            except Exception as exc:   # as the task would: the fields that ask get the error
                pending.set_exception(exc)
        else:
            pending = asyncio.ensure_future(_build_view(ctx, account))
        ctx.views[account.id] = pending
    return pending


def start_source_view(ctx: RequestContext, account: AccountConfig, sources: Any) -> asyncio.Future[AccountView]:
    """The account's view over some of its sources only, for a deferred (@defer) operation:
    a field filtered to fast sources answers without waiting for a slow one. Reads go
    through the same loaders as the whole view, so nothing is read twice. A holding without
    a price may get one derived from another source's (resolvers/valuation.py): then the
    field waits for the whole view, so the answer never differs from the non-deferred one."""
    key = f"{account.id}\x00" + ",".join(sorted(s.value for s in sources))
    pending = ctx.views.get(key)
    if pending is None:
        async def build() -> AccountView:
            chosen = [(s, i) for s, i in _identities(ctx, account) if s in sources]
            fetches = list(await asyncio.gather(*(ctx.loaders.load(s, i) for s, i in chosen)))
            ctx.note_failures(fetches)
            view = _view_of(ctx, fetches)
            others_price = any(s not in sources and SPEC_OF[s].reports_prices for s in configured_sources(ctx, account))
            if others_price and any(h.value is None and h.price is None and not h.token.is_testnet
                                    for h in view.holdings):
                return await account_view(ctx, account)
            return view
        pending = ctx.views[key] = asyncio.ensure_future(build())
    return pending


async def _build_view(ctx: RequestContext, account: AccountConfig) -> AccountView:
    return _recorded(ctx, account, _view_of(ctx, await fetch_account(ctx, account)))


def _recorded(ctx: RequestContext, account: AccountConfig, view: AccountView) -> AccountView:
    """The whole account's view, a history snapshot of it queued (gateway/history/recorder.py):
    an in-memory check now, the building and writing later, off the response's path. Views of
    some sources only (@defer, a live event's) are never recorded: the others would look empty."""
    history = ctx.state.history
    if history is None or not history.recorder.due(account.id):
        return view
    taken_at = datetime.now(timezone.utc)
    rates = ctx.state.fx.as_of_now()   # the rates the live answer converts with
    sources = configured_sources(ctx, account)
    fetches, holdings = view.fetches, view.holdings

    def make() -> Snapshot:
        chosen = select(holdings, DEFAULT_SELECTION)
        currencies = {h.value.currency.upper() for h in chosen if h.value is not None}
        return Snapshot(account_id=account.id, taken_at=taken_at, holdings=chosen,
                        states={s: status_of(s, fetches).state for s in sources},
                        rates=rates.snapshot(currencies))
    history.recorder.offer(account.id, make)
    return view


def view_of(ctx: RequestContext, fetches: list[SourceFetch]) -> AccountView:
    """An account's view from reads already made (a live event's)."""
    return _view_of(ctx, fetches)


def _view_of(ctx: RequestContext, fetches: list[SourceFetch]) -> AccountView:
    valued = ctx.state.valued.of(fetches)
    for h in valued.holdings:
        ctx.seen_tokens.setdefault(h.token.id, h.token)
    return AccountView(fetches=fetches, wallets=valued.wallets, holdings=valued.holdings, by_wallet=valued.by_wallet,
                       derived=valued.derived)


def status_of(source: Source, fetches: list[SourceFetch]) -> SourceStatusView:
    """One source's status for an account, combining its identities' fetches."""
    mine = [f for f in fetches if f.source is source]
    if not mine:
        return SourceStatusView(source=source, state=SourceState.NOT_CONFIGURED)
    failed = [f for f in mine if f.state is SourceState.FAILED]
    if len(failed) == len(mine):
        state = SourceState.FAILED
    elif failed or any(f.state is SourceState.PARTIAL for f in mine):
        state = SourceState.PARTIAL
    else:
        state = SourceState.OK
    times = [f.fetched_at for f in mine if f.fetched_at]
    return SourceStatusView(
        source=source,
        state=state,
        fetched_at=min(times) if times else None,
        from_cache=any(f.from_cache for f in mine),
        error=failed[0].error if failed else None,
        warnings=[w for f in mine for w in f.warnings],
        upstream_calls=sum(f.upstream_calls for f in mine),
    )


async def source_statuses(ctx: RequestContext, account: AccountConfig) -> list[SourceStatusView]:
    view = await account_view(ctx, account)
    statuses = [status_of(source, view.fetches) for source in Source]
    for status in statuses:
        client = ctx.state.clients.get(status.source)
        if client is not None:
            status.breaker = client.upstream.breaker.state
    return statuses
