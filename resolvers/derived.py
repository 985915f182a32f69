"""What is computed from one set of valued holdings alone, kept with the set.

An account's valued holdings (resolvers/valuation.py, `Valued`) are shared by every request
that reuses the same reads (the memo, a joined read). What depends only on them and on the
query's arguments (a filter's selection, its order, its sums per currency, its groups) is
then the same for each of those requests, and a large account's fields cost a pass over
thousands of holdings each: `Derived` keeps each result with the set it came from, under a
key naming everything it depends on besides the set. Nothing that depends on exchange
rates, the token registry or the time is kept here. Results are shared like the records:
consumers never mutate them.
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 64   # per set: past this many distinct (field, filter) keys, results are not kept

_MISSING = object()


class Derived:
    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[Hashable, Any] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        found = self.entries.get(key, _MISSING)
        if found is _MISSING:
            found = compute()
            if len(self.entries) < MAX_ENTRIES:   # a client varying its filters cannot grow it
                self.entries[key] = found
        return found   # type: ignore[return-value]
