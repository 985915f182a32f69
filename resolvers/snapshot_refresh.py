"""The background snapshotter (`[history] refresh_every_s`, off by default): every period it
reads each configured account, one at a time, as a request would (the same loaders, cache
and breakers), so accounts nobody reads still get history. The read's view offers its
snapshot like any other (resolvers/accounts.py), once per snapshot_every_s at most."""
from __future__ import annotations

import asyncio
import logging

from gateway.upstream.resilience import Deadline
from resolvers.accounts import account_view
from resolvers.context import GatewayState, RequestContext
from resolvers.loaders import Loaders

log = logging.getLogger("gateway.history")


async def refresh_once(state: GatewayState) -> int:
    """Read every configured account once; returns how many were read."""
    read = 0
    for account in state.config.accounts:
        ctx = RequestContext(state=state, caller=account, loaders=None,
                             deadline=Deadline.after(state.config.server.request_deadline_s),
                             request_id="history-refresh")
        ctx.loaders = Loaders(state.clients, ctx.fetch_options, ctx.default_options)
        try:
            await account_view(ctx, account)
            read += 1
        except Exception as exc:   # one account's trouble never stops the others'
            log.error("history: background read of an account failed (%s)", type(exc).__name__)
    return read


async def refresh_forever(state: GatewayState, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await refresh_once(state)
