"""Simulator of Calico `GET /assets` (base_url = the server root or mount point).

Faithful to the document: bearer auth per user, optional `start_time`/`end_time` (ms),
`asset_symbols` and `crypto_sources` comma lists, `limit` (default 30, max 100) and no
cursor. Amounts are sent as JSON number tokens with all their digits (Calico sends floats).

The document does not describe error bodies. We answer errors in a shape consistent with
the success body: `{"data": [], "errors": [{"code": "...", "message": "..."}]}`.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulation.control import ControlledApp, SimControl

DEFAULT_LIMIT = 30
MAX_LIMIT = 100


@dataclass
class Dataset:
    """What the simulator serves, keyed by bearer token.

    rows:   token -> list of rows, each a dict with the document's exact fields:
            asset_symbol (str), asset_holdings / price_in_usd / staked_holdings (Decimal or
            int, sent as JSON numbers), time_fetched (ISO string, ms + Z), crypto_source_id
            (str), wallet_address_redacted (str, 4 chars). A token present here (even with
            no rows) is a valid credential.
    errors: token -> objects returned in `errors[]` next to the data (default: none).
    """
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# -- JSON with exact number tokens ----------------------------------------------
def _json(value: Any) -> str:
    """JSON text in which a Decimal is written as a number token with its exact digits."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("JSON has no NaN or Infinity")
        return str(value)  # e.g. 206.59355189175383 or 1E-7: both valid JSON numbers
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("the simulator keeps amounts as Decimal, never float")
    return json.dumps(value)


def _json_response(status: int, payload: Any) -> Response:
    return Response(_json(payload).encode(), status_code=status, media_type="application/json")


_ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                429: "RATE_LIMITED", 500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY",
                503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}


def error_shape(status: int, message: str) -> tuple[str, bytes]:
    body = {"data": [], "errors": [{"code": _ERROR_CODES.get(status, f"HTTP_{status}"), "message": message}]}
    return "application/json", json.dumps(body).encode()


def _error(status: int, message: str) -> Response:
    ctype, body = error_shape(status, message)
    return Response(body, status_code=status, media_type=ctype)


# -- the endpoint ---------------------------------------------------------------
class _BadParam(Exception):
    pass


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise _BadParam(f"{name} must be an integer") from None


def _list_param(request: Request, name: str) -> set[str] | None:
    raw = request.query_params.get(name)
    items = {item.strip().lower() for item in (raw or "").split(",") if item.strip()}
    return items or None  # blank or absent: all


def _epoch_ms(iso: str) -> int:
    parsed = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(parsed.timestamp() * 1000)


def create_app(dataset: Dataset, control: SimControl | None = None) -> ControlledApp:
    async def assets(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or token not in dataset.rows:
            return _error(401, "Missing or invalid bearer token")
        try:
            limit = _int_param(request, "limit")
            limit = DEFAULT_LIMIT if limit is None else limit
            if not 1 <= limit <= MAX_LIMIT:
                raise _BadParam(f"limit must be between 1 and {MAX_LIMIT}")
            start = _int_param(request, "start_time")
            end = _int_param(request, "end_time")
            if start is not None and end is not None and start > end:
                raise _BadParam("start_time must not be later than end_time")
        except _BadParam as exc:
            return _error(400, str(exc))
        symbols = _list_param(request, "asset_symbols")
        sources = _list_param(request, "crypto_sources")
        selected = []
        for row in dataset.rows[token]:
            if symbols and row["asset_symbol"].lower() not in symbols:
                continue
            if sources and row["crypto_source_id"].lower() not in sources:
                continue
            # "fetched after start_time" / "before end_time": bounds taken as inclusive
            fetched = _epoch_ms(row["time_fetched"]) if start is not None or end is not None else 0
            if (start is not None and fetched < start) or (end is not None and fetched > end):
                continue
            selected.append(row)
        return _json_response(200, {"data": selected[:limit], "errors": dataset.errors.get(token, [])})

    app = Starlette(routes=[Route("/assets", assets, methods=["GET"])])
    return ControlledApp(app, control or SimControl(), error_shape, lambda factor: scale_balances(dataset, factor))


def source_block(base_url: str) -> dict:
    return {"base_url": base_url}


# -- deterministic world generation ----------------------------------------------
# symbol -> (min amount, max amount, digits kept, min USD price, max USD price)
_PROFILES = {
    "BTC": (0.0005, 2.5, 8, 60000.0, 110000.0),
    "ETH": (0.005, 25.0, 18, 2300.0, 4600.0),
    "SOL": (0.5, 400.0, 9, 120.0, 260.0),
    "USDC": (5.0, 60000.0, 6, 0.9996, 1.0003),
    "USDT": (5.0, 60000.0, 6, 0.9994, 1.0004),
    "BNB": (0.05, 30.0, 8, 480.0, 720.0),
    # not in the registry: an unknown token, tiny unit price, big amounts
    "WIF": (100.0, 250000.0, 6, 0.6, 3.2),
    "MOG": (1e5, 5e9, 9, 0.0000004, 0.000002),
}
# crypto_source_id -> symbols it holds; exchanges first, then chains
_SOURCES = {
    "coinbase": ("BTC", "MOG", "ETH", "USDC", "SOL"),   # MOG: row 6 of any world
    "binance": ("BTC", "ETH", "USDT", "BNB", "SOL"),
    "ethereum": ("ETH", "USDC", "MOG", "USDT"),
    "solana": ("SOL", "WIF", "USDC", "USDT"),
    "base": ("ETH", "USDC"),
}
_STAKEABLE = {"ETH", "SOL"}
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_EPOCH = datetime(2025, 9, 26, 14, 17, 39, 584000, tzinfo=timezone.utc)


def _fake_address(source: str, rng: random.Random) -> str:
    if source == "solana":
        return "".join(rng.choice(_BASE58) for _ in range(44))
    return "0x" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(40))


def _iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _float_number(x: float) -> Decimal:
    """The digits a JSON encoder prints for this double (what Calico actually sends)."""
    return Decimal(repr(x))


def _row(source: str, redacted: str, symbol: str, fetched: str, rng: random.Random) -> dict[str, Any]:
    lo, hi, digits, plo, phi = _PROFILES[symbol]
    if rng.random() < 0.07:
        amount, value, staked = Decimal(0), Decimal(0), Decimal(0)   # emptied position
    else:
        raw = round(math.exp(rng.uniform(math.log(lo), math.log(hi))), min(digits, 17))  # log-uniform
        amount = _float_number(raw)
        value = _float_number(raw * rng.uniform(plo, phi))         # the POSITION's USD value
        staked = Decimal(0)
        if symbol in _STAKEABLE and rng.random() < 0.4:
            staked = _float_number(round(raw * rng.uniform(0.1, 0.9), min(digits, 17)))
    return {"asset_symbol": symbol, "asset_holdings": amount, "price_in_usd": value,
            "staked_holdings": staked, "time_fetched": fetched,
            "crypto_source_id": source, "wallet_address_redacted": redacted}


def populate(dataset: Dataset, account_id: str, rng: random.Random, size: int) -> dict:
    """About `size` rows for one account (all of them stored; Calico serves at most 100)."""
    token = f"calico-token-{account_id}"
    rows: list[dict[str, Any]] = []
    fetched_at = _EPOCH - timedelta(milliseconds=rng.randrange(0, 6 * 3600 * 1000))
    wallet_round = 0
    while len(rows) < size:
        # Round 0: one wallet per source; later rounds add more chain addresses.
        wallets = []
        for source, symbols in _SOURCES.items():
            if wallet_round and source in ("coinbase", "binance"):
                continue
            redacted = _fake_address(source, rng)[-4:]
            fetched = _iso_ms(fetched_at - timedelta(milliseconds=rng.randrange(0, 90_000)))
            wallets.append([_row(source, redacted, symbol, fetched, rng) for symbol in symbols])
        # Interleave the wallets so that even a small size mixes exchanges and chains.
        depth = max(len(w) for w in wallets)
        rows.extend(w[i] for i in range(depth) for w in wallets if i < len(w))
        wallet_round += 1
    dataset.rows[token] = rows[:size]
    return {"token": token}


def scale_balances(dataset: Dataset, factor: Decimal) -> int:
    """Every row's holdings (and their USD value) times `factor` (/_control/balances)."""
    rows = [row for rows in dataset.rows.values() for row in rows]
    for row in rows:
        for name in ("asset_holdings", "price_in_usd", "staked_holdings"):
            if isinstance(row.get(name), (int, Decimal)) and not isinstance(row.get(name), bool):
                row[name] = Decimal(row[name]) * factor
    return len(rows)
