"""A bounded map keyed by objects' identity, for things computed once per object.

ParserCache hands every request with the same query text the same DocumentNode, so what
is derived from a document (its validation, its shape, its execution plans) can be kept
by the identity of the document or its nodes, without hashing an AST. Likewise an
account's valuation, by the identity of the record lists its reads handed out
(resolvers/valuation.py). Each entry holds its key objects, so their ids cannot be reused
while it stands; when full, the oldest entry is dropped (it is computed again if needed).
"""
from __future__ import annotations

from typing import Any, Hashable

MISSING = object()


class ByIdentity:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, objects: tuple[Any, ...], extra: Hashable = None) -> Any:
        """The value kept for exactly these objects (and `extra`, compared by value), or MISSING."""
        known = self._entries.get((tuple(map(id, objects)), extra))
        if known is None or any(a is not b for a, b in zip(known[0], objects)):
            return MISSING
        return known[1]

    def put(self, objects: tuple[Any, ...], value: Any, extra: Hashable = None) -> Any:
        key = (tuple(map(id, objects)), extra)
        if key not in self._entries and len(self._entries) >= self.maxsize:
            del self._entries[next(iter(self._entries))]   # the oldest
        self._entries[key] = (objects, value)
        return value
