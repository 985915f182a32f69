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

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.upstream.ledger import Dependency, ReadLedger
from gateway.upstream.resilience import CircuitBreaker


@dataclass(slots=True)
class StoredResponse:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    deps: tuple[Dependency, ...]
    breakers: tuple[tuple[CircuitBreaker, Any], ...]


class KeptResponses:
    def __init__(self, breakers: list[CircuitBreaker], *, max_entries: int, max_bytes: int):
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
            if now > dep.expires or not dep.memo.still_holds(dep.identity, dep.fetch):
                self._drop(key)
                return None
        for breaker, state in stored.breakers:
            if breaker.state is not state:
                self._drop(key)
                return None
        self.entries.move_to_end(key)
        for dep in stored.deps:   # the reads this answer stands for: as cache hits, kept recent in the memo
            dep.memo.reused(dep.identity)
        return stored

    def breaker_states(self) -> tuple[tuple[CircuitBreaker, Any], ...]:
        """Taken before a request runs: a breaker that changes while it runs (or before its
        response is stored) then differs from this, and the kept response is never used."""
        return tuple((b, b.state) for b in self.breakers)

    def store(self, key: tuple, ledger: ReadLedger, breakers: tuple[tuple[CircuitBreaker, Any], ...],
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

    def clear(self) -> None:
        """Everything goes (an account changed: any kept response may have shown it)."""
        self.entries.clear()
        self.bytes = 0

    def _drop(self, key: tuple) -> None:
        stored = self.entries.pop(key, None)
        if stored is not None:
            self.bytes -= len(stored.body)
