"""Simulator of the Cryptofuse balances API (`/user/balances/`, `/user/balances/history/`).

Follows the Cryptofuse balances API (docs/UPSTREAMS.md). The trap it reproduces: every amount
goes out as a string with exactly 6 decimals, whatever the currency, so a balance held
with more digits (ETH, SOL, BTC dust) is rounded at the source.

Assumptions where the document is silent (kept in one place so tests can read them):
- rounding to 6 dp is ROUND_HALF_UP;
- history `limit` defaults to 20 and may not exceed 100 (a larger value is a 400, like
  a negative or non-integer `limit`/`offset`); the response's `limit` echoes the
  effective limit, `total` counts the matching entries after filtering;
- `currency` and `type` filters compare case-insensitively; an empty value is no filter;
- history `amount` is a magnitude (as in the doc, where a withdrawal shows "200.000000"
  and the balance drops): the direction follows from `type`, and for a `trade` only from
  `balance_after`;
- both routes also answer without the trailing slash (no redirect).
"""
from __future__ import annotations

import functools
import json
import random
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from gateway.simulation.control import ControlledApp, SimControl

SIX_DP = Decimal("0.000001")
HISTORY_DEFAULT_LIMIT = 20
HISTORY_MAX_LIMIT = 100
HISTORY_TYPES = ("deposit", "withdrawal", "trade", "fee")

# Tickers the gateway's registry resolves, most common first, with the digits a real
# balance of that currency carries and its typical magnitude (powers of ten).
KNOWN_TICKERS: dict[str, tuple[int, int, int]] = {
    "USDTERC20": (6, 1, 5), "USDCERC20": (6, 1, 5), "ETH": (18, -3, 1), "BTC": (8, -4, 0),
    "SOL": (9, -1, 3), "USDTBEP20": (18, 1, 4), "USDTPOLYGON": (6, 0, 4), "USDCBASE": (6, 0, 4),
    "ETHBASE": (18, -3, 0), "USDTSOL": (6, 0, 4), "USDCSOL": (6, 0, 4), "USDCARB": (6, 0, 4),
    "ETHARB": (18, -3, 0), "POL": (18, 0, 4), "BNBBSC": (18, -2, 1), "USDTARB": (6, 0, 4),
    "USDCPOLYGON": (6, 0, 3), "USDCBSC": (18, 0, 3),
}
# Real Cryptofuse-style tickers the registry does not know (TRON, XRP, ...).
UNKNOWN_TICKERS: dict[str, tuple[int, int, int]] = {
    "USDTTRC20": (6, 1, 5), "TRX": (6, 1, 5), "XRP": (6, 0, 4), "DOGE": (8, 1, 5),
    "LTC": (8, -1, 2), "TON": (9, 0, 3), "DAIERC20": (18, 0, 4), "LINKERC20": (18, -1, 3),
}
_SYNTHETIC_SUFFIXES = ("TRC20", "ERC20", "BEP20")


@dataclass
class Dataset:
    """What the simulator serves.

    `users` maps a bearer token to that user's data:
      "account":      {ticker: Decimal} main-account balances, full precision (None = key absent)
      "sub_accounts": {ticker: Decimal} aggregate over sub-accounts (None = key absent)
      "statistics":   {name: int}
      "history":      [{"timestamp": aware datetime, "currency": str, "type": str,
                        "amount": Decimal, "balance_after": Decimal | None}], newest first
    Amounts are kept exact here and rounded to 6 dp only on the way out.
    """
    users: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_user(self, token: str, *, account: dict[str, Decimal] | None = None,
                 sub_accounts: dict[str, Decimal] | None = None,
                 statistics: dict[str, int] | None = None,
                 history: list[dict[str, Any]] | None = None) -> None:
        self.users[token] = {"account": account, "sub_accounts": sub_accounts,
                             "statistics": statistics if statistics is not None else {},
                             "history": history or []}


# -- wire format --------------------------------------------------------------
def six_dp(amount: Decimal) -> str:
    """The API's amount string: exactly 6 decimals, whatever the currency."""
    return format(amount.quantize(SIX_DP, rounding=ROUND_HALF_UP), "f")


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json")


_ERROR_CODES = {400: "invalid_parameter", 401: "authentication_failed", 403: "permission_denied",
                404: "not_found", 405: "method_not_allowed", 429: "rate_limit_exceeded",
                503: "service_unavailable"}


def error_shape(status: int, message: str, details: dict[str, Any] | None = None) -> tuple[str, bytes]:
    """`{"error": {"code", "message", "details"}}` with a code that suits the status."""
    code = _ERROR_CODES.get(status, "internal_error" if status >= 500 else "request_failed")
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return "application/json", json.dumps(body, separators=(",", ":")).encode()


def _error(status: int, message: str, details: dict[str, Any] | None = None) -> Response:
    ctype, body = error_shape(status, message, details)
    return Response(body, status_code=status, media_type=ctype)


# -- app ----------------------------------------------------------------------
def create_app(dataset: Dataset, control: SimControl | None = None) -> ControlledApp:
    def user_of(request: Request) -> dict[str, Any] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return dataset.users.get(token.strip())

    def unauthorized() -> Response:
        return _error(401, "Invalid or missing authentication token")

    async def balances(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return unauthorized()
        body: dict[str, Any] = {}
        for key in ("account", "sub_accounts"):
            if user.get(key) is not None:
                body[key] = {ticker: six_dp(amount) for ticker, amount in user[key].items()}
        body["statistics"] = dict(user.get("statistics") or {})
        return _json(body)

    async def history(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return unauthorized()
        params = request.query_params
        values: dict[str, int] = {}
        for name, default in (("limit", HISTORY_DEFAULT_LIMIT), ("offset", 0)):
            raw = params.get(name)
            if raw is None:
                values[name] = default
            elif not raw.isascii() or not raw.isdigit():
                return _error(400, f"{name} must be a non-negative integer", {"parameter": name})
            else:
                values[name] = int(raw)
        if values["limit"] > HISTORY_MAX_LIMIT:
            return _error(400, f"limit must not exceed {HISTORY_MAX_LIMIT}", {"parameter": "limit"})
        currency = (params.get("currency") or "").lower()
        kind = (params.get("type") or "").lower()
        matching = [e for e in user.get("history", [])
                    if (not currency or e["currency"].lower() == currency)
                    and (not kind or e["type"].lower() == kind)]
        limit, offset = values["limit"], values["offset"]
        page = matching[offset:offset + limit]
        return _json({
            "history": [{"timestamp": _iso(e["timestamp"]), "currency": e["currency"], "type": e["type"],
                         "amount": six_dp(e["amount"]),
                         "balance_after": None if e.get("balance_after") is None else six_dp(e["balance_after"])}
                        for e in page],
            "total": len(matching), "limit": limit, "offset": offset,
        })

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "request failed")

    routes = [Route(path, balances, methods=["GET"]) for path in ("/user/balances/", "/user/balances")]
    routes += [Route(path, history, methods=["GET"])
               for path in ("/user/balances/history/", "/user/balances/history")]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.router.redirect_slashes = False
    return ControlledApp(app, control or SimControl(), error_shape, lambda factor: scale_balances(dataset, factor))


def source_block(base_url: str) -> dict:
    return {"base_url": base_url}


# -- data generation ------------------------------------------------------------
def _amount(rng: random.Random, digits: int, lo_exp: int, hi_exp: int) -> Decimal:
    """A full-precision amount in [10^e, 10^(e+1)) with `digits` decimals."""
    e = rng.randint(lo_exp, hi_exp)
    scale = e + digits
    raw = rng.randint(10 ** scale, 10 ** (scale + 1) - 1) if scale >= 0 else 1
    return Decimal(raw).scaleb(-digits)


@functools.cache
def _registry() -> TokenRegistry:
    return TokenRegistry.default()


def _synthetic_ticker(rng: random.Random, taken: set[str]) -> str:
    """A made-up ticker the registry does not know, for sizes beyond the real lists."""
    while True:
        letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(3, 5)))
        ticker = letters + rng.choice(_SYNTHETIC_SUFFIXES)
        if ticker not in taken and _registry().token_alias(Source.CRYPTOFUSE, ticker) is None:
            return ticker


def _tickers(rng: random.Random, count: int, with_unknown: bool) -> dict[str, tuple[int, int, int]]:
    """`count` tickers: the most common known ones, then a random pick of the other known
    ones, then unknown ones (at least one when asked, and all the rest beyond the registry)."""
    known = list(KNOWN_TICKERS)
    n_unknown = min(count, max(1 if with_unknown else 0, count - len(known), count // 10))
    n_known = count - n_unknown
    head = known[:min(n_known, max(3, n_known // 2))]
    picked = head + rng.sample(known[len(head):], n_known - len(head))
    chosen = {t: KNOWN_TICKERS[t] for t in picked}
    unknown = list(UNKNOWN_TICKERS)
    rng.shuffle(unknown)
    while len(chosen) < count:
        if unknown:
            t = unknown.pop()
            chosen[t] = UNKNOWN_TICKERS[t]
        else:
            chosen[_synthetic_ticker(rng, set(chosen))] = (8, 0, 5)
    return chosen


def _history(rng: random.Random, account: dict[str, Decimal], shapes: dict[str, tuple[int, int, int]],
             count: int) -> list[dict[str, Any]]:
    """`count` entries newest first, walking back from today's (rounded) balances so that
    each entry's balance_after follows from the older one by its amount."""
    running = {t: amount.quantize(SIX_DP, rounding=ROUND_HALF_UP) for t, amount in account.items()}
    tickers = list(running)
    ts = datetime(2025, 6, 30, 12, 0, 0, tzinfo=timezone.utc)
    entries = []
    for _ in range(count):
        ts -= timedelta(minutes=rng.randint(3, 60 * 30), seconds=rng.randint(0, 59))
        ticker = rng.choice(tickers)
        after = running[ticker]
        _, lo, hi = shapes[ticker]
        magnitude = max(_amount(rng, 6, lo - 1, hi - 1).quantize(SIX_DP), SIX_DP)
        kind = rng.choices(HISTORY_TYPES, weights=(4, 3, 3, 2))[0]
        if kind == "fee":
            magnitude = max((magnitude / 500).quantize(SIX_DP), SIX_DP)
        credit = kind == "deposit" or (kind == "trade" and rng.random() < 0.5)
        if credit and after < magnitude:
            if after >= SIX_DP:
                magnitude = after          # the credit that brought it up from zero
            else:
                credit = False
                kind = rng.choice(("withdrawal", "trade"))
        running[ticker] = after - magnitude if credit else after + magnitude
        entries.append({"timestamp": ts, "currency": ticker, "type": kind,
                        "amount": magnitude, "balance_after": after})
    return entries


def populate(dataset: Dataset, account_id: str, rng: random.Random, size: int) -> dict:
    """About `size` holdings for one account: the main account plus, when size allows, a
    sub-accounts aggregate holding a subset of the same tickers."""
    size = max(1, size)
    n_account = max(1, -(-size * 3 // 5))
    n_sub = min(size - n_account, n_account)
    shapes = _tickers(rng, n_account, with_unknown=size >= 6)
    account = {t: _amount(rng, *shape) for t, shape in shapes.items()}
    tickers = list(account)
    if size >= 6:
        # traps: ETH-like dust that the 6-dp strings round to "0.000000", and an emptied balance
        dust = next((t for t in reversed(tickers) if shapes[t][0] == 18), None)
        if dust:
            account[dust] = Decimal("0.0000004") + _amount(rng, 18, -9, -9)
        account[rng.choice([t for t in tickers[1:] if t != dust])] = Decimal(0)
    sub_accounts = None
    if n_sub > 0:
        picked = rng.sample(tickers, n_sub)
        sub_accounts = {t: _amount(rng, *shapes[t]) for t in picked}
        if n_sub >= 5:
            sub_accounts[picked[0]] = Decimal(0)
    history = _history(rng, account, shapes, max(10, 3 * size))
    statistics = {"total_deposits": sum(e["type"] == "deposit" for e in history),
                  "total_withdrawals": sum(e["type"] == "withdrawal" for e in history)}
    token = f"cryptofuse-token-{account_id}"
    dataset.add_user(token, account=account, sub_accounts=sub_accounts, statistics=statistics, history=history)
    return {"token": token}


def scale_balances(dataset: Dataset, factor: Decimal) -> int:
    """Every balance (main account and sub-accounts) times `factor` (/_control/balances)."""
    changed = 0
    for user in dataset.users.values():
        for part in ("account", "sub_accounts"):
            balances = user.get(part)
            if balances:
                for ticker in balances:
                    balances[ticker] = Decimal(balances[ticker]) * factor
                    changed += 1
    return changed
