"""Account balance history (Cryptofuse), paged with gateway cursors over upstream offsets.

Cryptofuse pages its history (newest first) by `limit`/`offset` and reports `total`. New
entries arrive at the top, so every offset shifts between two client requests. A gateway
cursor therefore records, for the entry it points at: its position, the `total` seen when
it was read, and a fingerprint of the entry. The next page re-reads from that entry (one
row earlier than the page itself), after shifting the position by the growth of `total`,
and checks the fingerprint: the rows after a verified anchor are exactly the ones the
client has not seen, so nothing is skipped or repeated. When the anchor is not where it
should be, a small window around it is searched; if it cannot be found the client gets
BAD_USER_INPUT "history changed; start again" instead of a silently wrong page.

The same anchoring joins the upstream pages of one gateway page (first > 100).

Cursors are opaque: base64 of a packed record whose position and total are masked, with
a check tag, so neither the upstream offset nor any entry data appears in clear and a
cursor of another listing (account, currency, type) or garbage is refused.
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

from gateway.domain.errors import ClientCode, UpstreamError
from gateway.sources.catalog import Source
from gateway.sources.cryptofuse.client import BalanceChangeRecord, HistoryPage
from resolvers.context import RequestContext, UpstreamProblem
from resolvers.errors import client_error
from resolvers.pagination import DEFAULT_PAGE, MAX_PAGE, Connection, PageInfo, scope_of

# Largest `limit` one upstream call may ask for (the simulator's assumption; the doc gives none).
UPSTREAM_MAX_LIMIT = 100
# How far (rows either side) to look for a cursor's entry that is not where `total` says.
SEARCH_WINDOW = 10

_VERSION = 1
_TAG = b"bg-history-cursor-v1"
# version (1) | scope (6) | fingerprint (8) | masked position, total (16) | check (4)
_LAYOUT = struct.Struct(">B6s8s16s4s")

_MEMO_ATTR = "_history_page_memo"


@dataclass(slots=True)
class HistoryEdge:
    cursor: str      # history cursors carry their own drift check, so they are built eagerly
    node: Any


# -- cursors --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Anchor:
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


def encode_cursor(scope: str, anchor: _Anchor) -> str:
    scope_b = bytes.fromhex(scope)
    numbers = struct.pack(">QQ", anchor.pos, anchor.total)
    masked = bytes(a ^ b for a, b in zip(numbers, _mask(scope_b, anchor.fp)))
    body = struct.pack(">B6s8s16s", _VERSION, scope_b, anchor.fp, masked)
    return base64.urlsafe_b64encode(body + _check(body)).rstrip(b"=").decode()


def _bad_cursor() -> Exception:
    return client_error(ClientCode.BAD_USER_INPUT,
                        "`after` is not a cursor from this listing; start again without it")


def decode_cursor(scope: str, cursor: str) -> _Anchor:
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"))
        version, scope_b, fp, masked, check = _LAYOUT.unpack(raw)
    except (ValueError, binascii.Error, UnicodeEncodeError, struct.error):
        raise _bad_cursor() from None
    if version != _VERSION or check != _check(raw[:-4]) or scope_b != bytes.fromhex(scope):
        raise _bad_cursor()
    pos, total = struct.unpack(">QQ", bytes(a ^ b for a, b in zip(masked, _mask(scope_b, fp))))
    if pos >= total:
        raise _bad_cursor()
    return _Anchor(pos=pos, total=total, fp=fp)


def _history_changed() -> Exception:
    return client_error(ClientCode.BAD_USER_INPUT,
                        "the balance history changed under this cursor; start again without `after`")


# -- upstream reads ---------------------------------------------------------------
class _Reader:
    """Upstream history pages of one listing, memoized for the request."""

    def __init__(self, ctx: RequestContext, client: Any, identity: Any, account_id: str,
                 currency: str | None, type_: str | None):
        self.ctx, self.client, self.identity = ctx, client, identity
        self.account_id, self.currency, self.type = account_id, currency, type_

    async def page(self, limit: int, offset: int) -> HistoryPage:
        memo: dict | None = getattr(self.ctx, _MEMO_ATTR, None)
        if memo is None:
            memo = {}
            setattr(self.ctx, _MEMO_ATTR, memo)
        key = (self.account_id, self.currency, self.type, limit, offset)
        task = memo.get(key)
        if task is None:
            task = memo[key] = asyncio.ensure_future(self.client.history_page(
                self.identity, options=self.ctx.options_for(self.account_id), currency=self.currency, type=self.type, limit=limit, offset=offset))
        page: HistoryPage = await task
        return page

    async def head(self, want: int) -> tuple[list[BalanceChangeRecord], int, int, bool]:
        """The first `want` (<= UPSTREAM_MAX_LIMIT) entries: (rows, first position, total, exhausted)."""
        limit = min(UPSTREAM_MAX_LIMIT, want)
        page = await self.page(limit, 0)
        rows = page.entries[:limit]
        return rows, 0, page.total, len(rows) < limit or len(rows) >= page.total

    async def after(self, anchor: _Anchor, want: int, *, same_request: bool = False
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
                raise _history_changed()
            if not aimed and not 0 <= expected - offset < len(rows) and len(rows) == limit:
                # `total` moved by more than this page covers: read again where it should be
                aimed = True
                offset, limit = expected, min(UPSTREAM_MAX_LIMIT, want + 1)
                continue
            if searched:
                raise _history_changed()
            searched = True
            offset = max(0, expected - SEARCH_WINDOW)
            limit = min(UPSTREAM_MAX_LIMIT, expected - offset + SEARCH_WINDOW + 1 + want)


# -- the resolver -------------------------------------------------------------------
def _empty() -> Connection[BalanceChangeRecord]:
    return Connection(edges=[], nodes=[], total_count=0,
                      page_info=PageInfo(has_next_page=False, has_previous_page=False,
                                         start_cursor=None, end_cursor=None))


async def account_history(ctx: RequestContext, ref: Any, currency: str | None, type_: str | None,
                          first: int | None, after: str | None) -> Connection[BalanceChangeRecord]:
    if first is None:
        first = DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise client_error(ClientCode.BAD_USER_INPUT, f"`first` must be between 0 and {MAX_PAGE}")
    currency, type_ = currency or None, type_ or None   # an empty filter is no filter
    account_id = ref.id
    scope = scope_of("cryptofuse-history", account_id, currency, type_)
    anchor = decode_cursor(scope, after) if after else None

    client = ctx.state.clients.get(Source.CRYPTOFUSE)
    if client is None:
        return _empty()
    key = (account_id, Source.CRYPTOFUSE)
    identities = ctx.identities.get(key)
    if identities is None:
        identities = ctx.identities[key] = client.identities(ref.config)
    if not identities:
        return _empty()
    reader = _Reader(ctx, client, identities[0], account_id, currency, type_)

    picked: list[tuple[_Anchor, BalanceChangeRecord]] = []
    first_pos: int | None = None
    try:
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
                picked.append((_Anchor(pos=pos + i, total=total, fp=fingerprint(entry)), entry))
            end = pos + len(rows)            # position after the last row, in this total
            if rows:
                anchor = picked[-1][0]
            if len(picked) >= first or exhausted or not rows:
                break
    except UpstreamError as exc:
        ctx.upstream_problems.setdefault(key, UpstreamProblem(account_id, Source.CRYPTOFUSE,
                                                              exc.code.value, exc.message))
        return _empty()

    for _, entry in picked:
        ctx.seen_tokens.setdefault(entry.token.id, entry.token)
    edges = [HistoryEdge(cursor=encode_cursor(scope, a), node=entry) for a, entry in picked]
    return Connection(
        edges=edges,
        nodes=[entry for _, entry in picked],
        page_info=PageInfo(
            has_next_page=end < total,
            has_previous_page=(first_pos or 0) > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=total,
    )
