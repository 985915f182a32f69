"""Relay-style connections over an already ordered list, with opaque cursors.

A cursor names the last item a page returned (its id and position), plus a fingerprint
of the listing so a cursor from one listing is refused by another. The next page starts
after that item wherever it now sits, so an item added or removed before it between
two page requests neither repeats nor skips anything. The upstream's own cursors and
offsets never reach the client.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any, Generic, Sequence, TypeVar

from gateway.domain.errors import ClientCode
from resolvers.errors import client_error

DEFAULT_PAGE = 50
MAX_PAGE = 200

T = TypeVar("T")


@dataclass(slots=True)
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@dataclass(slots=True)
class Edge(Generic[T]):
    node: T
    scope: str
    index: int

    @property
    def cursor(self) -> str:
        # Encoded only when a client selects it: most queries read `nodes`, not cursors.
        return encode_cursor(self.scope, self.index, _item_id(self.node))


@dataclass(slots=True)
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T]
    page_info: PageInfo
    total_count: int


def encode_cursor(scope: str, index: int, item_id: str = "") -> str:
    return base64.urlsafe_b64encode(f"c1|{scope}|{index}|{item_id}".encode()).rstrip(b"=").decode()


def decode_cursor(scope: str, cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        version, cursor_scope, index, item_id = text.split("|", 3)
        if version != "c1" or cursor_scope != scope or not index.isdigit():
            raise ValueError
        return int(index), item_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise client_error(ClientCode.BAD_USER_INPUT,
                           "`after` is not a cursor from this listing; start again without it") from None


def _item_id(item: Any) -> str:
    return str(getattr(item, "id", None) or getattr(item, "key", ""))


def _start_after(items: Sequence[Any], index: int, item_id: str) -> int:
    """Where the page after the cursor's item starts: after that item if it is still listed
    (wherever it moved), else at its old position."""
    if item_id:
        if index < len(items) and _item_id(items[index]) == item_id:
            return index + 1
        for i, item in enumerate(items):
            if _item_id(item) == item_id:
                return i + 1
    return min(index + 1, len(items))


def paginate(items: Sequence[T], first: int | None, after: str | None, scope: str = "") -> Connection[T]:
    if first is None:
        first = DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise client_error(ClientCode.BAD_USER_INPUT, f"`first` must be between 0 and {MAX_PAGE}")
    start = _start_after(items, *decode_cursor(scope, after)) if after else 0
    window = items[start:start + first]
    edges = [Edge(node=node, scope=scope, index=start + i) for i, node in enumerate(window)]
    return Connection(
        edges=edges,
        nodes=list(window),
        page_info=PageInfo(
            has_next_page=start + len(window) < len(items),
            has_previous_page=start > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=len(items),
    )


def scope_of(*parts: Any) -> str:
    """A short fingerprint of what a listing is (its owner, filter and order)."""
    return hashlib.blake2s(repr(parts).encode(), digest_size=6).hexdigest()
