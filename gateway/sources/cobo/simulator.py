"""Simulated Cobo WaaS: `GET /api/v1/wallets/balances` with its traps.

Faithful to the upstream doc: `X-API-Key` auth, `success: false` error bodies with
`message`/`suggestion`, filters (`wallet_uuid`, `chain_id`, `address`, `token_id`),
`limit` 1..200 (default 50), opaque `after`/`before` cursors with `meta.has_more` —
and, like the real thing, the last page still carries an `after` cursor — plus the
deprecated `offset`, which still works and fills `meta.offset`/`meta.limit`.
"""
from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain import money
from gateway.domain.evm import checksum
from gateway.simulation.control import ControlledApp, SimControl

PATH = "/api/v1/wallets/balances"
DEFAULT_API_KEY = "cobo-sim-org-api-key"
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
MAX_OFFSET = 9223372036854775807

_SUGGESTIONS = {
    400: "Check the request parameters.",
    401: "Provide a valid API key in the X-API-Key header.",
    403: "Check the permissions of your API key.",
    404: "Check the request path.",
    405: "Use GET for this endpoint.",
    422: "Check the request parameters against the API reference.",
    429: "Slow down and retry later.",
}


@dataclass
class Dataset:
    """What the simulated Cobo organization holds.

    api_keys:  values accepted in `X-API-Key`; every key sees every wallet of the org.
    wallets:   wallet_uuid -> BalanceRead dicts (amounts as strings), in serving order.
               Tests may append hand-made rows, e.g. built with `balance_row`.
    refreshed: addresses for which a `force_refresh=true` (with `address`) was honoured.
    """
    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    wallets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    refreshed: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [row for rows in self.wallets.values() for row in rows]


def balance_row(wallet_uuid: str, token_id: str, chain_id: str, amount: str, *, pending: str = "0",
                locked: str = "0", total: str | None = None, address: str = "0x0000000000000000000000000000000000000001",
                row_id: str | None = None, cobo_wallet_id: str | None = None, user_id: str | None = None,
                chain_type: str = "EVM", compatible_chains: list[str] | None = None,
                updated_at: str = "2025-06-01T00:00:00Z", balance_updated_at: str | None = None) -> dict[str, Any]:
    """One BalanceRead as the API serves it; `total` defaults to amount + pending + locked."""
    if total is None:
        total = money.plain(money.dsum(Decimal(x) for x in (amount, pending, locked)))
    return {
        "id": row_id or str(uuid.uuid4()), "wallet_uuid": wallet_uuid, "cobo_wallet_id": cobo_wallet_id,
        "user_id": user_id, "address": address, "token_id": token_id, "amount": amount,
        "updated_at": updated_at, "chain_id": chain_id, "chain_type": chain_type,
        "compatible_chains": compatible_chains if compatible_chains is not None else [chain_id],
        "total": total, "pending": pending, "locked": locked,
        "balance_updated_at": balance_updated_at if balance_updated_at is not None else updated_at,
    }


# -- errors ------------------------------------------------------------------
def error_shape(status: int, message: str) -> tuple[str, bytes]:
    body = {"success": False, "message": message,
            "suggestion": _SUGGESTIONS.get(status, "Retry later; contact Cobo support if it persists."),
            "result": [], "meta": None}
    return "application/json", json.dumps(body).encode()


def _error(status: int, message: str) -> Response:
    ctype, body = error_shape(status, message)
    return Response(body, status_code=status, media_type=ctype)


class _Invalid(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


# -- parameters and cursors ---------------------------------------------------
def _int_param(params: Any, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Invalid(422, f"Query parameter '{name}' must be an integer") from None
    if not lo <= value <= hi:
        raise _Invalid(422, f"Query parameter '{name}' must be between {lo} and {hi}")
    return value


def _bool_param(params: Any, name: str) -> bool:
    raw = (params.get(name) or "false").lower()
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise _Invalid(422, f"Query parameter '{name}' must be a boolean")


def _cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"bal:{row['id']}".encode()).decode().rstrip("=")


def _cursor_index(rows: list[dict[str, Any]], cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        text = ""
    if text.startswith("bal:"):
        for i, row in enumerate(rows):
            if row["id"] == text[4:]:
                return i
    raise _Invalid(400, "Invalid pagination cursor")


def _same_address(a: str | None, b: str) -> bool:
    if a is None:
        return False
    return a.lower() == b.lower() if a.startswith("0x") else a == b   # base58 is case-sensitive


def _page(dataset: Dataset, params: Any) -> dict[str, Any]:
    limit = _int_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(params, "offset", None, 0, MAX_OFFSET)
    force_refresh = _bool_param(params, "force_refresh")
    wallet_uuid, address = params.get("wallet_uuid"), params.get("address")
    after, before = params.get("after"), params.get("before")
    if wallet_uuid:
        try:
            wallet_uuid = str(uuid.UUID(wallet_uuid))
        except ValueError:
            raise _Invalid(422, "Query parameter 'wallet_uuid' must be a UUID") from None
    if after and before:
        raise _Invalid(400, "Use either 'after' or 'before', not both")

    rows = dataset.wallets.get(wallet_uuid, []) if wallet_uuid else dataset.rows()
    for name in ("chain_id", "token_id"):
        if params.get(name):
            rows = [r for r in rows if r.get(name) == params[name]]
    if address:
        rows = [r for r in rows if _same_address(r.get("address"), address)]
        if force_refresh:   # documented to work only together with address
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            for row in rows:
                row["balance_updated_at"] = now
            dataset.refreshed.append(address)

    legacy = offset is not None and not (after or before)
    if after:
        start = _cursor_index(rows, after) + 1
        page, has_more = rows[start:start + limit], start + limit < len(rows)
    elif before:
        end = _cursor_index(rows, before)
        start = max(0, end - limit)
        page, has_more = rows[start:end], start > 0
    else:
        start = offset if legacy else 0
        page, has_more = rows[start:start + limit], start + limit < len(rows)
    meta = {
        "total": len(rows),
        "offset": offset if legacy else None,
        "limit": limit if legacy else None,
        "has_more": has_more,
        # The trap: `after` is set on every non-empty page, the last one included.
        "after": _cursor(page[-1]) if page else None,
        "before": _cursor(page[0]) if page and start > 0 else None,
    }
    return {"result": page, "success": True, "suggestion": "", "message": "", "meta": meta}


def create_app(dataset: Dataset, control: SimControl | None = None) -> ControlledApp:
    async def balances(request: Request) -> Response:
        key = request.headers.get("x-api-key")
        if not key or key not in dataset.api_keys:
            return _error(401, "Unauthorized: missing or invalid API key")
        try:
            body = _page(dataset, request.query_params)
        except _Invalid as exc:
            return _error(exc.status, exc.message)
        return Response(json.dumps(body), media_type="application/json")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return _error(status, "Not Found" if status == 404 else "Method Not Allowed")

    app = Starlette(routes=[Route(PATH, balances, methods=["GET"])],
                    exception_handlers={404: not_found, 405: not_found})
    return ControlledApp(app, control or SimControl(), error_shape, lambda factor: scale_balances(dataset, factor))


def source_block(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "api_key": DEFAULT_API_KEY}


# -- world generation ---------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    token_id: str
    chain_id: str
    decimals: int
    lo: int       # whole-unit magnitude range: 10**lo .. 10**hi
    hi: int


_CHAIN_TYPE = {"ETH": "EVM", "BASE_ETH": "EVM", "ARBITRUM_ETH": "EVM", "SETH": "EVM", "SOL": "SOL", "BTC": "BTC"}
_EVM_CHAINS = ["ETH", "BASE_ETH", "ARBITRUM_ETH"]

_KNOWN = [
    _Spec("ETH", "ETH", 18, -2, 2), _Spec("ETH_USDC", "ETH", 6, 1, 6), _Spec("ETH_USDT", "ETH", 6, 1, 6),
    _Spec("BASE_ETH", "BASE_ETH", 18, -3, 1), _Spec("BASE_USDC", "BASE_ETH", 6, 1, 5),
    _Spec("ARBITRUM_ETH", "ARBITRUM_ETH", 18, -3, 1), _Spec("ARBITRUM_USDCOIN", "ARBITRUM_ETH", 6, 1, 5),
    _Spec("ARBITRUM_USDT", "ARBITRUM_ETH", 6, 1, 5), _Spec("SOL", "SOL", 9, -1, 3),
    _Spec("SOL_USDC", "SOL", 6, 1, 5), _Spec("SOL_USDT", "SOL", 6, 1, 5), _Spec("BTC", "BTC", 8, -3, 1),
]
_TESTNET = [_Spec("SETH", "SETH", 18, -1, 2), _Spec("SETH_USDC", "SETH", 6, 1, 4)]
# Real long-tail tokens the registry does not map (so they surface as unknown tokens).
_LONG_TAIL = [
    _Spec("ETH_PEPE", "ETH", 18, 5, 9), _Spec("ETH_LINK", "ETH", 18, 0, 3), _Spec("ETH_UNI", "ETH", 18, 0, 3),
    _Spec("ETH_AAVE", "ETH", 18, -1, 2), _Spec("ETH_SHIB", "ETH", 18, 5, 9), _Spec("ETH_LDO", "ETH", 18, 1, 4),
    _Spec("ETH_ENA", "ETH", 18, 1, 4), _Spec("BASE_DEGEN", "BASE_ETH", 18, 2, 6),
    _Spec("BASE_AERO", "BASE_ETH", 18, 1, 4), _Spec("ARBITRUM_ARB", "ARBITRUM_ETH", 18, 1, 4),
    _Spec("SOL_BONK", "SOL", 5, 5, 9), _Spec("SOL_JUP", "SOL", 6, 1, 4), _Spec("SOL_WIF", "SOL", 6, 0, 3),
]
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _evm_address(rng: random.Random) -> str:
    return checksum("0x" + rng.getrandbits(160).to_bytes(20, "big").hex())


def _sol_address(rng: random.Random) -> str:
    n, out = rng.getrandbits(256), ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return out


def _btc_address(rng: random.Random) -> str:
    """A valid-looking bech32 P2WPKH address (checksum computed, key hash random)."""
    data = [0]  # witness version 0
    bits = rng.getrandbits(160)
    data += [(bits >> (155 - 5 * i)) & 31 for i in range(32)]

    def polymod(values: list[int]) -> int:
        chk = 1
        for v in values:
            top = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
                chk ^= g if (top >> i) & 1 else 0
        return chk

    hrp = [ord(c) >> 5 for c in "bc"] + [0] + [ord(c) & 31 for c in "bc"]
    mod = polymod(hrp + data + [0] * 6) ^ 1
    return "bc1" + "".join(_BECH32[d] for d in data + [(mod >> 5 * (5 - i)) & 31 for i in range(6)])


def _raw(rng: random.Random, spec: _Spec) -> int:
    """Base units with a log-uniform magnitude and every digit significant."""
    digits = rng.randint(max(1, spec.decimals + spec.lo + 1), spec.decimals + spec.hi)
    return rng.randrange(10 ** (digits - 1), 10 ** digits)


def _human(raw: int, decimals: int) -> str:
    return money.plain(money.from_base_units(raw, decimals))


def _timestamp(rng: random.Random) -> datetime:
    return datetime(2025, 5, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(120 * 86400))


def _plan(rng: random.Random, count: int, traps: bool) -> list[_Spec]:
    """`count` distinct tokens: mostly registry-known, with the traps in the first wallet."""
    specs: list[_Spec] = []
    if traps and count >= 3:
        specs.append(rng.choice(_TESTNET))
    if traps and count >= 6:
        specs.append(rng.choice(_LONG_TAIL))
    pool = rng.sample(_KNOWN, len(_KNOWN)) + rng.sample(_LONG_TAIL, len(_LONG_TAIL))
    used = {s.token_id for s in specs}
    for spec in pool:
        if len(specs) >= count:
            break
        if spec.token_id not in used:
            specs.append(spec)
            used.add(spec.token_id)
    while len(specs) < count:   # airdropped long-tail ERC-20s, as custodial wallets collect
        symbol = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(3, 6)))
        if f"ETH_{symbol}" not in used:
            used.add(f"ETH_{symbol}")
            specs.append(_Spec(f"ETH_{symbol}", "ETH", 18, 0, 6))
    return specs


def populate(dataset: Dataset, account_id: str, rng: random.Random, size: int) -> dict:
    """One or two custodial wallets for `account_id` with about `size` holdings in all."""
    # a second wallet only when the first still gets room for every trap (>= 6 tokens)
    n_wallets = 2 if size >= 12 and rng.random() < 0.5 else 1
    user_id = _uuid(rng)
    uuids: list[str] = []
    for w in range(n_wallets):
        wallet_uuid = _uuid(rng)
        uuids.append(wallet_uuid)
        count = (size + n_wallets - 1 - w) // n_wallets
        dataset.wallets[wallet_uuid] = _wallet_rows(rng, wallet_uuid, user_id, _plan(rng, count, traps=w == 0))
    return {"wallet_uuids": uuids}


def _wallet_rows(rng: random.Random, wallet_uuid: str, user_id: str, specs: list[_Spec]) -> list[dict[str, Any]]:
    cobo_wallet_id = str(rng.randrange(10**7, 10**8))
    evm = [_evm_address(rng), _evm_address(rng)]
    addresses = {"SOL": _sol_address(rng), "BTC": _btc_address(rng)}
    known_ids = {s.token_id for s in _KNOWN}
    # Trap: one EVM token held at two addresses (its second row goes last, likely another page).
    split = next((s for s in specs if s.token_id in known_ids and s.chain_id in _EVM_CHAINS), None) \
        if len(specs) >= 2 else None
    zero = next((s for s in specs if s.token_id in known_ids and s is not split), None) if len(specs) >= 4 else None

    def row(spec: _Spec, address: str, raw: int) -> dict[str, Any]:
        pending = _raw(rng, spec) // 10**rng.randint(1, 4) if raw and rng.random() < 0.15 else 0
        locked = raw // rng.randint(3, 20) if raw and rng.random() < 0.1 else 0
        chain_type = _CHAIN_TYPE[spec.chain_id]
        updated = _timestamp(rng)
        balance_updated = updated + timedelta(seconds=rng.randrange(3600))
        # `raw` is everything held: amount (available) + locked; pending is on its way in.
        result = balance_row(
            wallet_uuid, spec.token_id, spec.chain_id, _human(raw - locked, spec.decimals),
            pending=_human(pending, spec.decimals), locked=_human(locked, spec.decimals),
            total=_human(raw + pending, spec.decimals), address=address, row_id=_uuid(rng),
            cobo_wallet_id=cobo_wallet_id, user_id=user_id, chain_type=chain_type,
            compatible_chains=_EVM_CHAINS if spec.chain_id in _EVM_CHAINS else [spec.chain_id],
            updated_at=_iso(updated), balance_updated_at=_iso(balance_updated))
        if rng.random() < 0.1:
            result["balance_updated_at"] = None   # not yet synced: readers fall back to updated_at
        return result

    rows, tail = [], []
    for spec in specs:
        address = evm[0] if _CHAIN_TYPE[spec.chain_id] == "EVM" else addresses[spec.chain_id]
        rows.append(row(spec, address, 0 if spec is zero else _raw(rng, spec)))
        if spec is split:
            tail.append(row(spec, evm[1], _raw(rng, spec)))
    return rows + tail


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def scale_balances(dataset: Dataset, factor: Decimal) -> int:
    """Every row's amounts times `factor` (/_control/balances)."""
    rows = dataset.rows()
    for row in rows:
        for name in ("amount", "pending", "locked", "total"):
            if row.get(name) is not None:
                row[name] = str(Decimal(row[name]) * factor)
    return len(rows)
