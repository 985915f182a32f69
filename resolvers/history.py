"""Account balance history (Cryptofuse), paged with gateway cursors over upstream offsets.

How the pages are read and anchored so that they stay right while the history grows,
and what a cursor holds, is Cryptofuse's (gateway/sources/cryptofuse/history.py). Here:
the arguments, the listing's scope, the client errors, and the connection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.domain.errors import ClientCode, UpstreamError
from gateway.sources.catalog import Source
from gateway.sources.cryptofuse.client import BalanceChangeRecord
from gateway.sources.cryptofuse.history import (HistoryChanged, HistoryReader, NotACursor, decode_cursor,
                                                encode_cursor, read_slice)
from resolvers.context import RequestContext, UpstreamProblem
from resolvers.errors import client_error
from resolvers.pagination import DEFAULT_PAGE, MAX_PAGE, Connection, PageInfo, scope_of

_MEMO_ATTR = "_history_page_memo"


@dataclass(slots=True)
class HistoryEdge:
    cursor: str      # history cursors carry their own drift check, so they are built eagerly
    node: Any


def _bad_cursor() -> Exception:
    return client_error(ClientCode.BAD_USER_INPUT,
                        "`after` is not a cursor from this listing; start again without it")


def _history_changed() -> Exception:
    return client_error(ClientCode.BAD_USER_INPUT,
                        "the balance history changed under this cursor; start again without `after`")


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
    try:
        anchor = decode_cursor(scope, after) if after else None
    except NotACursor:
        raise _bad_cursor() from None

    client = ctx.state.clients.get(Source.CRYPTOFUSE)
    if client is None:
        return _empty()
    key = (account_id, Source.CRYPTOFUSE)
    identities = ctx.identities.get(key)
    if identities is None:
        identities = ctx.identities[key] = client.identities(ref.config)
    if not identities:
        return _empty()
    memo: dict | None = getattr(ctx, _MEMO_ATTR, None)
    if memo is None:
        memo = {}
        setattr(ctx, _MEMO_ATTR, memo)
    reader = HistoryReader(client, identities[0], account_id, currency, type_, memo, ctx.options_for(account_id))

    try:
        read = await read_slice(reader, anchor, first)
    except HistoryChanged:
        raise _history_changed() from None
    except UpstreamError as exc:
        ctx.upstream_problems.setdefault(key, UpstreamProblem(account_id, Source.CRYPTOFUSE,
                                                              exc.code.value, exc.message))
        return _empty()
    picked, first_pos, end, total = read.picked, read.first_pos, read.end, read.total

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
