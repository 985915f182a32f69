"""What one request read from the upstreams: its read ledger.

Upstream fills a request's ledger as it reads (FetchOptions.ledger). The memo reads it
used say for how long an answer built only from them stays true (policy/kept_responses.py);
any other read (a live or cached page, a joined read, history) makes the answer
unrepeatable; the waits make the gateway's own overhead measurable.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol


class Memo(Protocol):
    """Where a memoised read lives (Upstream): asked whether it still holds it."""

    def still_holds(self, identity: Any, fetch: Any) -> bool: ...

    def reused(self, identity: Any) -> None: ...


@dataclass(slots=True)
class Dependency:
    """One memoised fetch a response was built from."""
    memo: Memo
    identity: Any
    fetch: Any           # the memo's own SourceFetch object: compared by identity
    expires: float       # wall-clock time after which the request would not accept it


@dataclass(slots=True)
class ReadLedger:
    """What one request read, filled in by Upstream as the request runs."""
    deps: list[Dependency] = field(default_factory=list)
    other_reads: bool = False    # a page read, live or from the page cache: not reproducible from the memo
    uncacheable: bool = False    # the request had a side effect (an APQ registration)
    # (start, end) perf_counter of each wait for an upstream response (the gateway overhead metric)
    waits: list[tuple[float, float]] = field(default_factory=list)

    def note_joined_read(self, waiting_since: float) -> None:
        """The request joined another's live read (resolvers.accounts.fetch_account):
        its response is not reproducible from the memo, and the time since `waiting_since`
        was spent waiting for upstreams."""
        self.other_reads = True
        self.waits.append((waiting_since, time.perf_counter()))
