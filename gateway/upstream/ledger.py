"""Whole responses, answered again while every upstream read behind them is unchanged.

A request served entirely from the normalized-read memo (`Upstream.recall`) is a pure
function of: who asks, the request bytes, the memo entries it used and the breakers'
states. So its encoded response can be sent again, without parsing, validating or
executing anything, for as long as each of those memo entries is still the one in the
memo and still fresh for that request (`maxAge`). Whatever changes one of them (an
expiry, a `refresh`, a new read after a miss, a breaker opening) makes the stored
response unusable, and the request runs normally.

What is never stored: responses with errors, requests that read anything outside the
memo (a live or cached page read, balance history), APQ registrations (their side
effect must happen each time), non-200 answers.

Per process; the bound is on bytes as well as entries, since one large account's deep
query answers about 1 MB.
"""
from __future__ import annotations

import contextvars
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # import cycle: upstream.py records into the ledger
    from gateway.upstream.resilience import CircuitBreaker
    from gateway.upstream.pipeline import Upstream


@dataclass(slots=True)
class Dependency:
    """One memoised fetch a response was built from."""
    upstream: "Upstream"
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


# Set per request by the gate; read by Upstream.recall/get (tasks inherit it).
CURRENT_LEDGER: contextvars.ContextVar[ReadLedger | None] = contextvars.ContextVar("read_ledger", default=None)


def note_joined_read(waiting_since: float) -> None:
    """The request joined another's live read (resolvers.accounts.fetch_account):
    its response is not reproducible from the memo, and the time since `waiting_since` was
    spent waiting for upstreams."""
    ledger = CURRENT_LEDGER.get()
    if ledger is not None:
        ledger.other_reads = True
        ledger.waits.append((waiting_since, time.perf_counter()))


@dataclass(slots=True)
class StoredResponse:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    deps: tuple[Dependency, ...]
    breakers: tuple[tuple["CircuitBreaker", Any], ...]


class ResultCache:
    def __init__(self, breakers: list["CircuitBreaker"], *, max_entries: int, max_bytes: int):
        self.breakers = breakers
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, StoredResponse] = OrderedDict()
        self.bytes = 0

    def lookup(self, key: tuple) -> StoredResponse | None:
        stored = self.entries.get(key)
        if stored is None:
            return None
        now = time.time()
        for dep in stored.deps:
            memo = dep.upstream.normalized.get(dep.identity)
            if now > dep.expires or memo is None or memo[0] is not dep.fetch:
                self._drop(key)
                return None
        for breaker, state in stored.breakers:
            if breaker.state is not state:
                self._drop(key)
                return None
        self.entries.move_to_end(key)
        for dep in stored.deps:   # the reads this answer stands for: as cache hits, kept recent in the memo
            dep.upstream.normalized.move_to_end(dep.identity)
            dep.upstream.count_cache_hit()
        return stored

    def breaker_states(self) -> tuple[tuple["CircuitBreaker", Any], ...]:
        """Taken before a request runs: a breaker that changes while it runs (or before its
        response is stored) then differs from this, and the kept response is never used."""
        return tuple((b, b.state) for b in self.breakers)

    def store(self, key: tuple, ledger: ReadLedger, breakers: tuple[tuple["CircuitBreaker", Any], ...],
              headers: list[tuple[bytes, bytes]], body: bytes) -> bool:
        if ledger.other_reads or ledger.uncacheable or len(body) > self.max_bytes // 8:
            return False
        stored = StoredResponse(headers=headers, body=body, deps=tuple(ledger.deps), breakers=breakers)
        self._drop(key)
        self.entries[key] = stored
        self.bytes += len(body)
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = self.entries.popitem(last=False)
            self.bytes -= len(evicted.body)
        return True

    def _drop(self, key: tuple) -> None:
        stored = self.entries.pop(key, None)
        if stored is not None:
            self.bytes -= len(stored.body)
