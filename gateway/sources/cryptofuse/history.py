"""Cryptofuse's balance history, read in pages that stay right while it grows.

Cryptofuse pages its history (newest first) by `limit`/`offset` and reports `total`. New
entries arrive at the top, so every offset shifts between two client requests. A gateway
cursor therefore records, for the entry it points at: its position, the `total` seen when
it was read, and a fingerprint of the entry. The next page re-reads from that entry (one
row earlier than the page itself), after shifting the position by the growth of `total`,
and checks the fingerprint: the rows after a verified anchor are exactly the ones the
client has not seen, so nothing is skipped or repeated. When the anchor is not where it
should be, a small window around it is searched; if it cannot be found, `HistoryChanged`
is raised instead of a silently wrong page.

The same anchoring joins the upstream pages of one gateway page (first > 100).

Cursors are opaque: base64 of a packed record whose position and total are masked, with
a check tag, so neither the upstream offset nor any entry data appears in clear and a
cursor of another listing (account, currency, type) or garbage is refused (`NotACursor`).
The resolver (resolvers/history.py) turns both into client errors.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.sources.cryptofuse.client import BalanceChangeRecord, CryptofuseClient, HistoryPage
from gateway.upstream.pipeline import FetchOptions

# Largest `limit` one upstream call may ask for (the simulator's assumption; the doc gives none).
UPSTREAM_MAX_LIMIT = 100
# How far (rows either side) to look for a cursor's entry that is not where `total` says.
SEARCH_WINDOW = 10

_VERSION = 1
_TAG = b"bg-history-cursor-v1"
# version (1) | scope (6) | fingerprint (8) | masked position, total (16) | check (4)
_LAYOUT = struct.Struct(">B6s8s16s4s")


class NotACursor(Exception):
    """`after` is not a cursor of this listing."""


class HistoryChanged(Exception):
    """The history changed under a cursor so that its entry cannot be found again."""


# -- cursors --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Anchor:
    """An entry already handed out: where it was, in a listing of `total` entries."""
    pos: int
    total: int
    fp: bytes


def fingerprint(entry: BalanceChangeRecord) -> bytes:
    """8 bytes identifying an entry by what the upstream says about it."""
    def num(d: Decimal | None) -> str:
        return "" if d is None else format(d.normalize(), "f")
    text = "\x1f".join((entry.timestamp.isoformat(), entry.type, entry.currency, num(entry.amount),
                        num(entry.balance_after)))
    return hashlib.blake2s(text.encode(), digest_size=8).digest()


def _mask(scope: bytes, fp: bytes) -> bytes:
    return hashlib.blake2s(scope + fp, digest_size=16, person=b"bgmask").digest()


def _check(body: bytes) -> bytes:
    return hashlib.blake2s(body, digest_size=4, key=_TAG).digest()


def encode_cursor(scope: str, anchor: Anchor) -> str:
    """`scope`: 12 hex digits naming the listing (resolvers.pagination.scope_of)."""
    scope_b = bytes.fromhex(scope)
    numbers = struct.pack(">QQ", anchor.pos, anchor.total)
    masked = bytes(a ^ b for a, b in zip(numbers, _mask(scope_b, anchor.fp)))
    body = struct.pack(">B6s8s16s", _VERSION, scope_b, anchor.fp, masked)
    return base64.urlsafe_b64encode(body + _check(body)).rstrip(b"=").decode()


def decode_cursor(scope: str, cursor: str) -> Anchor:
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"))
        version, scope_b, fp, masked, check = _LAYOUT.unpack(raw)
    except (ValueError, binascii.Error, UnicodeEncodeError, struct.error):
        raise NotACursor() from None
    if version != _VERSION or check != _check(raw[:-4]) or scope_b != bytes.fromhex(scope):
        raise NotACursor()
    pos, total = struct.unpack(">QQ", bytes(a ^ b for a, b in zip(masked, _mask(scope_b, fp))))
    if pos >= total:
        raise NotACursor()
    return Anchor(pos=pos, total=total, fp=fp)


# -- upstream reads ---------------------------------------------------------------
class HistoryReader:
    """Upstream history pages of one listing, each read once per `memo` (one per request),
    with the request's fetch options for the account."""

    def __init__(self, client: CryptofuseClient, identity: Any, account_id: str,
                 currency: str | None, type_: str | None, memo: dict[tuple, "asyncio.Future[HistoryPage]"],
                 options: FetchOptions):
        self.client, self.identity, self.memo, self.options = client, identity, memo, options
        self.account_id, self.currency, self.type = account_id, currency, type_

    async def page(self, limit: int, offset: int) -> HistoryPage:
        key = (self.account_id, self.currency, self.type, limit, offset)
        task = self.memo.get(key)
        if task is None:
            task = self.memo[key] = asyncio.ensure_future(self.client.history_page(
                self.identity, options=self.options, currency=self.currency, type=self.type, limit=limit,
                offset=offset))
        page: HistoryPage = await task
        return page

    async def head(self, want: int) -> tuple[list[BalanceChangeRecord], int, int, bool]:
        """The first `want` (<= UPSTREAM_MAX_LIMIT) entries: (rows, first position, total, exhausted)."""
        limit = min(UPSTREAM_MAX_LIMIT, want)
        page = await self.page(limit, 0)
        rows = page.entries[:limit]
        return rows, 0, page.total, len(rows) < limit or len(rows) >= page.total

    async def after(self, anchor: Anchor, want: int, *, same_request: bool = False
                    ) -> tuple[list[BalanceChangeRecord], int, int, bool]:
        """Up to `want` entries right after the anchor entry (fewer if the upstream page
        boundary comes first): (rows, position of the first, total, exhausted).

        A client's cursor is checked by reading from its entry (one row early). The
        anchor of the previous upstream page of this same request is trusted while
        `total` has not moved, so a 200-row page costs two calls, not three."""
        if same_request:
            offset, limit = anchor.pos + 1, min(UPSTREAM_MAX_LIMIT, want)
        else:
            offset, limit = anchor.pos, min(UPSTREAM_MAX_LIMIT, want + 1)
        aimed = searched = False
        while True:
            page = await self.page(limit, offset)
            rows = page.entries[:limit]
            expected = anchor.pos + (page.total - anchor.total)   # new entries shift it down
            j = expected - offset
            if j == -1 and same_request and page.total == anchor.total:
                found = True                                      # unchanged: rows follow on
            elif 0 <= j < len(rows) and fingerprint(rows[j]) == anchor.fp:
                found = True
            else:   # not where `total` says: accept it elsewhere in these rows if unambiguous
                hits = [i for i, e in enumerate(rows) if fingerprint(e) == anchor.fp]
                found, j = (True, hits[0]) if len(hits) == 1 else (False, j)
            if found:
                exhausted = len(rows) < limit or offset + len(rows) >= page.total
                return rows[j + 1:], offset + j + 1, page.total, exhausted
            if expected < 0:
                raise HistoryChanged()
            if not aimed and not 0 <= expected - offset < len(rows) and len(rows) == limit:
                # `total` moved by more than this page covers: read again where it should be
                aimed = True
                offset, limit = expected, min(UPSTREAM_MAX_LIMIT, want + 1)
                continue
            if searched:
                raise HistoryChanged()
            searched = True
            offset = max(0, expected - SEARCH_WINDOW)
            limit = min(UPSTREAM_MAX_LIMIT, expected - offset + SEARCH_WINDOW + 1 + want)


@dataclass(slots=True)
class HistorySlice:
    """Up to `first` entries after a cursor (or from the top), each with its anchor."""
    picked: list[tuple[Anchor, BalanceChangeRecord]]
    first_pos: int | None    # position of the first entry (None when none was read)
    end: int                 # position after the last entry, in `total`
    total: int


async def read_slice(reader: HistoryReader, anchor: Anchor | None, first: int) -> HistorySlice:
    """Entries after `anchor` (from the top when None) until `first` are picked or the
    history ends, across as many upstream pages as that takes. Raises HistoryChanged,
    and UpstreamError when a read fails."""
    picked: list[tuple[Anchor, BalanceChangeRecord]] = []
    first_pos: int | None = None
    while True:
        want = first - len(picked)
        if anchor is None:
            rows, pos, total, exhausted = await reader.head(want)
        else:
            rows, pos, total, exhausted = await reader.after(anchor, want, same_request=bool(picked))
        if first_pos is None:
            first_pos = pos
        rows = rows[:want]
        for i, entry in enumerate(rows):
            picked.append((Anchor(pos=pos + i, total=total, fp=fingerprint(entry)), entry))
        end = pos + len(rows)            # position after the last row, in this total
        if rows:
            anchor = picked[-1][0]
        if len(picked) >= first or exhausted or not rows:
            return HistorySlice(picked, first_pos, end, total)
