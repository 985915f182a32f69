"""Relay-style connections over an already ordered list, with opaque cursors.

A cursor encodes the position of an item in the ordered result, plus a fingerprint of
the ordering so a cursor from one listing is refused by another instead of silently
skipping items. The upstream's own cursors and offsets never reach the client.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Generic, Sequence, TypeVar

from gateway.errors import ClientCode
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
    cursor: str
    node: T


@dataclass(slots=True)
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T]
    page_info: PageInfo
    total_count: int


def encode_cursor(scope: str, index: int) -> str:
    return base64.urlsafe_b64encode(f"c1|{scope}|{index}".encode()).rstrip(b"=").decode()


def decode_cursor(scope: str, cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        version, cursor_scope, index = text.split("|")
        if version != "c1" or cursor_scope != scope or not index.isdigit():
            raise ValueError
        return int(index)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise client_error(ClientCode.BAD_USER_INPUT,
                           "`after` is not a cursor from this listing; start again without it") from None


def paginate(items: Sequence[T], first: int | None, after: str | None, scope: str = "") -> Connection[T]:
    if first is None:
        first = DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise client_error(ClientCode.BAD_USER_INPUT, f"`first` must be between 0 and {MAX_PAGE}")
    start = decode_cursor(scope, after) + 1 if after else 0
    window = items[start:start + first]
    edges = [Edge(cursor=encode_cursor(scope, start + i), node=node) for i, node in enumerate(window)]
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
    import hashlib
    return hashlib.blake2s(repr(parts).encode(), digest_size=6).hexdigest()
