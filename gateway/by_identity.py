"""A bounded map keyed by objects' identity, for things computed once per parsed document.

ParserCache hands every request with the same query text the same DocumentNode, so what
is derived from a document (its validation, its shape, its execution plans) can be kept
by the identity of the document or its nodes, without hashing an AST. Each entry holds
its key objects, so their ids cannot be reused while it stands; when full, every entry is
dropped (the next requests compute them again).
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
        if len(self._entries) >= self.maxsize:
            self._entries.clear()
        self._entries[(tuple(map(id, objects)), extra)] = (objects, value)
        return value
