"""Subscription.viewerChanged: the caller's account, first as it is now, then each time
something changed (gateway/live/changes.py), from the shared pollers (gateway/live/hub.py).

Each event replaces the subscription's view of the account (ctx.views), so the Account
fields under `AccountChange.account` answer from that event's reads; strawberry completes
one event before it asks for the next. A failed source is a FAILED SourceStatus in the
event, never an error that ends the stream.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone

from gateway.domain.errors import ClientCode
from gateway.domain.records import HoldingRecord
from gateway.live.changes import ChangeTracker
from gateway.live.hub import LiveSubscription, TooManySubscriptions
from gateway.sources.catalog import Source
from resolvers.accounts import AccountRef, configured_sources, view_of
from resolvers.context import RequestContext
from resolvers.errors import client_error

MAX_INTERVAL_S = 86_400


@dataclass(slots=True)
class AccountChangeView:
    account: AccountRef
    changed: list[HoldingRecord]
    removed_holding_ids: list[str]
    at: datetime


def viewer_changed(ctx: RequestContext, interval_s: int, sources: list[Source] | None) -> AsyncIterator[AccountChangeView]:
    """Checks the request, opens the subscription (or refuses it), and returns its events."""
    hub = ctx.state.live
    if hub is None:
        raise client_error(ClientCode.BAD_USER_INPUT, "subscriptions are not enabled on this gateway")
    if ctx.caller is None:
        raise client_error(ClientCode.UNAUTHENTICATED, "viewerChanged needs an account key (an admin key has no viewer)")
    if not 1 <= interval_s <= MAX_INTERVAL_S:
        raise client_error(ClientCode.BAD_USER_INPUT, f"`intervalS` must be 1 to {MAX_INTERVAL_S} seconds")
    account = ctx.caller
    chosen = [s for s in configured_sources(ctx, account) if sources is None or s in sources]
    keys = [(source, identity) for source in chosen for identity in ctx.state.clients[source].identities(account)]
    client_id = ctx.client_id or account.id
    if hub.is_full(client_id):
        raise _too_many(hub)
    return _events(ctx, AccountRef(id=account.id, config=account), keys, float(interval_s), client_id)


def _too_many(hub: object) -> Exception:
    return client_error(ClientCode.MAX_SUBSCRIPTIONS, f"this key has {hub.max_per_key} subscriptions open "  # type: ignore[attr-defined]
                        "already ([live] max_subscriptions_per_key); close one first")


async def _events(ctx: RequestContext, ref: AccountRef, keys: list, interval_s: float,
                  client_id: str) -> AsyncIterator[AccountChangeView]:
    # Opened here, inside the generator, so that closing the stream always closes it.
    try:
        subscription: LiveSubscription = ctx.state.live.open(keys, interval_s, client_id=client_id, account_id=ref.id)
    except TooManySubscriptions:
        raise _too_many(ctx.state.live) from None
    tracker = ChangeTracker()
    latest: dict = {}
    try:
        while True:
            if subscription.keys or tracker.seen is not None:   # nothing to read: one (empty) event at once
                arrived = await subscription.next()
                if arrived is None:
                    return   # ended by the hub (key revoked, account deleted, shutting down)
                latest.update(arrived)
            if len(latest) < len(subscription.keys):
                continue   # the first event waits until every identity has been read once
            if ctx.still_authorized is not None and not ctx.still_authorized():
                return   # the key no longer authenticates: the subscription ends
            fetches = [latest[key] for key in subscription.keys]
            view = view_of(ctx, fetches)
            change = tracker.compare(view.holdings, fetches)
            if change.empty:
                continue
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            ready.set_result(view)
            ctx.views[ref.id] = ready
            ctx.upstream_problems.clear()
            ctx.note_failures(fetches)
            yield AccountChangeView(account=ref, changed=change.changed, removed_holding_ids=change.removed_ids,
                                    at=datetime.now(timezone.utc))
    finally:
        subscription.close()
        # graphql-core's subscription executor refers to itself (its helpers are its bound
        # methods) and to this context, so it waits for a garbage collection: it then holds
        # nothing of the stream's reads and views.
        ctx.views.clear()
        ctx.loaders = None   # its cache holds the reads
        ctx.seen_tokens.clear()
        ctx.identities.clear()
