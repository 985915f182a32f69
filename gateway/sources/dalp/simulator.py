"""SettleMint DALP simulator: `GET /api/v2/user-asset-balances` (JSON:API collection).

Imitates the documented behaviour the client has to cope with:
- balances are per participant, aggregated over its linked wallets (EOA + smart wallet),
  with a `byWallet` split; `filter[wallet]` still expands to the owner's full wallet set;
- only positive balances are returned; amounts are decimal strings scaled to the
  token's decimals; `valueInBaseCurrency` is a 2-dp string in the org's base currency or null;
- `page[limit]` (default 50, max 200) / `page[offset]`; `links` are `/v2/...` strings
  (not relative to `/api/v2/...`), and `max_page_rows` makes the server return fewer rows
  than asked, while `links.next` still advances by the requested limit;
- a yield denomination that cannot be resolved falls back to symbol UNKNOWN, 18 decimals.

Errors: the doc names UNAUTHORIZED / FORBIDDEN and points to a platform error reference it
does not include, so the body shape `{"code", "status", "message"}` is our assumption.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain import money
from gateway.domain.evm import checksum, is_evm_address
from gateway.simulation.control import ControlledApp, SimControl

PATH = "/api/v2/user-asset-balances"
LINK_PATH = "/v2/user-asset-balances"    # what the documented `links` use
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
ADMIN_KEY = "dalp-admin-key"             # the source-level key source_block() hands out
SORTABLE = ("balance", "tokenAddress", "tokenName", "tokenSymbol")
FILTERS = ("q", "wallet", "tokenAddress", "tokenName", "tokenSymbol", "tokenDecimals")

_ERROR_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                429: "TOO_MANY_REQUESTS", 500: "INTERNAL_SERVER_ERROR", 502: "BAD_GATEWAY",
                503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}
_CENT = Decimal("0.01")


@dataclass
class DalpToken:
    """Token metadata as the platform reports it."""
    address: str                         # contract address (any case; served EIP-55)
    name: str
    symbol: str
    type: str                            # bond | equity | fund | deposit | stablecoin
    decimals: int
    total_supply: str = "1000000"        # whole tokens, as in the doc's example
    is_external: bool = False
    bond_matured: bool | None = None     # set for bonds (the `bond` feature block)
    yield_schedule: str | None = None    # schedule contract address, when the token pays yield
    yield_denomination: dict[str, Any] | None = None   # {"id","symbol","decimals"}; None → UNKNOWN fallback
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class AssetRow:
    """One token a participant holds: balances per linked wallet, in base units."""
    token: DalpToken
    balances: dict[str, tuple[int, int]]  # wallet address -> (balance, frozen) base units
    price: Decimal | None = None          # per whole token in the base currency; None = no price path
    price_reliable: bool = True

    def total(self) -> int:
        return sum(b for b, _ in self.balances.values())


@dataclass
class Participant:
    id: str
    wallets: list[str]                    # linked wallets (EOA, smart wallet); may be empty
    rows: list[AssetRow] = field(default_factory=list)
    org: str | None = None                # organization the participant belongs to


@dataclass
class Dataset:
    """What the simulator serves; tests may add hand-made entries.

    participants: participant id -> Participant (wallets and asset rows)
    keys:         X-Api-Key -> participant id (whose holdings a plain request returns)
    admin_keys:   keys that may use filter[wallet] for any wallet (need no participant)
    org_readers:  X-Api-Key -> organization id, for filter[wallet] within that organization
    max_page_rows: cap on rows per page below page[limit] ("fewer rows than page[limit]")
    bucketable:   metadata key -> display label, the keys `groupBy` accepts
    """
    participants: dict[str, Participant] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    admin_keys: set[str] = field(default_factory=lambda: {ADMIN_KEY})
    org_readers: dict[str, str] = field(default_factory=dict)
    max_page_rows: int | None = None
    bucketable: dict[str, str] = field(default_factory=lambda: {"country": "Country"})

    def owner_of(self, wallet: str) -> Participant | None:
        wallet = wallet.lower()
        return next((p for p in self.participants.values()
                     if any(w.lower() == wallet for w in p.wallets)), None)


# -- data generation ----------------------------------------------------------

USDC = {"id": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "symbol": "USDC", "decimals": 6}
EURDEP = {"id": "0x5c23811AAA83eb5E3d6Ef26be0a90CE22f0505C5", "symbol": "EURDEP", "decimals": 6}

# Tokens the registry knows (gateway/domain/tokens/data/dalp.toml, plus USDC/USDT), trap-bearing first.
# (address, name, symbol, type, decimals, external, yield schedule, denomination, price range EUR)
CATALOG: list[tuple] = [
    ("0xc3e2eDc114B03205d7A72CFECDC3f9d8cFa9A28f", "Acme Green Bond 2029", "ACGB29", "bond", 18, False,
     "0x8ba1f109551bD432803012645Ac136ddd64DBA72", EURDEP, ("96", "103")),
    ("0xdC407211BeD2b2379246DF14876042bCd43C3d5b", "Treasury Bill Q4 2025", "TBL25Q4", "bond", 6, False,
     "0x1f9840a85d5aF5bf1D1762F925BDADdC4201F984", None, ("98", "100")),   # UNKNOWN denomination fallback
    (EURDEP["id"], "Euro Deposit Token", "EURDEP", "deposit", 6, False, None, None, ("1", "1")),
    (USDC["id"], "USD Coin", "USDC", "stablecoin", 6, True, None, None, ("0.91", "0.94")),
    ("0xF9e12eFF8fE656d703e498284521107a9C196Db1", "Solaris Energy AG Shares", "SOLR", "equity", 18, False,
     None, None, ("12", "85")),
    ("0xB0a2E63406E859E85Eed718faa9e8E1276cb3975", "Nordic Infrastructure Bond 2031", "NIB31", "bond", 18,
     False, "0x4E83362442B8d1beC281594cEa3050c8EB01311C", USDC, ("94", "101")),
    ("0x90A5F368759F00e233E065C33618e81Fe259f05C", "US Dollar Deposit Token", "USDDEP", "deposit", 6, False,
     None, None, ("0.91", "0.94")),
    ("0xD4e41745b38CFF090C8c836C1C1E1533CC8C486A", "Harbor Real Estate Fund", "HREF", "fund", 18, False,
     None, None, ("8", "150")),
    ("0x59f2510398aC7584e788C1E42E58fEa6E4B472aa", "Alpine Logistics Equity", "ALPL", "equity", 6, False,
     None, None, ("3", "400")),
    ("0x40A02B65a0eb4Dd2ac24537e3cA423c8ad503078", "Meridian Private Credit Fund", "MPCF", "fund", 18, False,
     None, None, ("9", "120")),
    ("0xdAC17F958D2ee523a2206206994597C13D831ec7", "Tether USD", "USDT", "stablecoin", 6, True,
     None, None, ("0.91", "0.94")),
]
_AMOUNTS = {"bond": (1, 5000), "equity": (1, 20000), "fund": (10, 50000), "deposit": (100, 2_000_000),
            "stablecoin": (50, 500_000)}
_PRICES = {"bond": ("88", "104"), "equity": ("2", "400"), "fund": ("8", "150"), "deposit": ("1", "1")}
_PREFIXES = ["Aurora", "Birch", "Cobalt", "Delta", "Ember", "Fjord", "Granite", "Helix", "Iris", "Juniper",
             "Kite", "Lumen", "Marlin", "Nimbus", "Onyx", "Pioneer", "Quartz", "Riverside", "Sable", "Tundra"]
_KINDS = [("Bond", "bond"), ("Shares", "equity"), ("Fund", "fund"), ("Deposit Token", "deposit")]
_COUNTRIES = ["DE", "FR", "NL", "LU", "CH", "AT"]


def _address(rng: random.Random) -> str:
    return checksum(f"0x{rng.getrandbits(160):040x}")


def _price(rng: random.Random, lo: str, hi: str) -> Decimal:
    # Prices with 4 decimals drawn as integers: no float ever reaches a Decimal.
    lo_i, hi_i = int(Decimal(lo).scaleb(4)), int(Decimal(hi).scaleb(4))
    return Decimal(rng.randint(lo_i, hi_i)).scaleb(-4)


def _balances(rng: random.Random, wallets: list[str], kind: str, decimals: int) -> dict[str, tuple[int, int]]:
    lo, hi = _AMOUNTS[kind]
    draw = rng.random()
    holders = wallets if draw < 0.4 else [wallets[1]] if draw < 0.75 else [wallets[0]]
    result = {}
    for wallet in holders:
        balance = rng.randrange(lo * 10 ** decimals, hi * 10 ** decimals)   # full-precision digits
        frozen = rng.randrange(0, balance // 2 + 1) if rng.random() < 0.15 else 0
        result[wallet] = (balance, frozen)
    return result


def _token_from_catalog(entry: tuple, rng: random.Random) -> tuple[DalpToken, tuple]:
    address, name, symbol, kind, decimals, external, schedule, denomination, prices = entry
    token = DalpToken(address=address, name=name, symbol=symbol, type=kind, decimals=decimals,
                      total_supply=str(rng.randrange(10**5, 10**9)), is_external=external,
                      bond_matured=False if kind == "bond" else None, yield_schedule=schedule,
                      yield_denomination=denomination, metadata={"country": rng.choice(_COUNTRIES)})
    return token, prices


def _generated_token(rng: random.Random, index: int) -> tuple[DalpToken, tuple]:
    prefix = rng.choice(_PREFIXES)
    label, kind = rng.choice(_KINDS)
    decimals = rng.choice([18, 6])
    symbol = f"{prefix[:3].upper()}{label[0]}{index}"
    schedule = _address(rng) if kind == "bond" else None
    token = DalpToken(address=_address(rng), name=f"{prefix} {label} {index}", symbol=symbol, type=kind,
                      decimals=decimals, total_supply=str(rng.randrange(10**4, 10**8)),
                      bond_matured=(rng.random() < 0.1) if kind == "bond" else None,
                      yield_schedule=schedule, yield_denomination=EURDEP if schedule else None,
                      metadata={"country": rng.choice(_COUNTRIES)})
    return token, _PRICES[kind]


def populate(dataset: Dataset, account_id: str, rng: random.Random, size: int) -> dict:
    """One participant with an EOA and a smart wallet holding `size` token rows (plus a zero row)."""
    participant = Participant(id=f"participant-{account_id}", wallets=[_address(rng), _address(rng)],
                              org="org-demo")
    size = max(size, 1)
    n_known = min(len(CATALOG), size - 1 if size >= 6 else size)   # leave room for an unknown token
    entries = [_token_from_catalog(e, rng) for e in CATALOG[:n_known]]
    entries += [_generated_token(rng, i) for i in range(1, size - n_known + 1)]
    for token, (lo, hi) in entries:
        participant.rows.append(AssetRow(token=token, price=_price(rng, lo, hi),
                                         balances=_balances(rng, participant.wallets, token.type, token.decimals)))
    rows = participant.rows
    if size >= 3:   # one token with no price path, one priced over a stale hop
        null_i, stale_i = rng.sample(range(len(rows)), 2)
        rows[null_i].price, rows[null_i].price_reliable = None, False
        rows[stale_i].price_reliable = False
    if size >= 5:   # plus a zero balance, which the server must leave out
        token, (lo, hi) = _generated_token(rng, size - n_known + 1)
        rows.append(AssetRow(token=token, price=_price(rng, lo, hi), balances={participant.wallets[0]: (0, 0)}))
    dataset.participants[participant.id] = participant
    key = f"dalp-key-{account_id}"
    dataset.keys[key] = participant.id
    return {"api_key": key}


def source_block(base_url: str) -> dict:
    return {"base_url": base_url, "api_key": ADMIN_KEY, "chain_id": "eip155:1", "base_currency": "EUR"}


# -- serving ------------------------------------------------------------------

def error_shape(status: int, message: str) -> tuple[str, bytes]:
    code = _ERROR_CODES.get(status, "ERROR")
    return "application/json", json.dumps({"code": code, "status": status, "message": message}).encode()


def _error(status: int, message: str) -> Response:
    ctype, body = error_shape(status, message)
    return Response(body, status_code=status, media_type=ctype)


class _BadRequest(Exception):
    pass


def _scaled(raw: int, decimals: int) -> str:
    """Base units as a decimal string with exactly `decimals` places ("1.000000000000000000")."""
    if decimals == 0:
        return str(raw)
    whole, frac = divmod(raw, 10 ** decimals)
    return f"{whole}.{frac:0{decimals}d}"


def _value(row: AssetRow) -> Decimal | None:
    if row.price is None:
        return None
    amount = money.from_base_units(row.total(), row.token.decimals)
    return money.mul(amount, row.price).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def _token_json(token: DalpToken) -> dict[str, Any]:
    out: dict[str, Any] = {"id": checksum(token.address), "name": token.name, "symbol": token.symbol,
                           "type": token.type, "isExternal": token.is_external, "decimals": token.decimals,
                           "totalSupply": token.total_supply}
    if token.bond_matured is not None:
        out["bond"] = {"isMatured": token.bond_matured}
    if token.yield_schedule:
        denomination = token.yield_denomination or {"id": checksum(token.yield_schedule), "symbol": "UNKNOWN",
                                                    "decimals": 18}
        out["yield"] = {"schedule": {"id": checksum(token.yield_schedule), "denominationAsset": denomination}}
    else:
        out["yield"] = None
    return out


def _row_json(row: AssetRow, group_key: str | None) -> dict[str, Any]:
    d = row.token.decimals
    total = row.total()
    frozen = sum(f for _, f in row.balances.values())
    value = _value(row)
    out: dict[str, Any] = {
        "id": checksum(row.token.address),
        "value": _scaled(total, d), "frozen": _scaled(frozen, d), "available": _scaled(total - frozen, d),
        "valueInBaseCurrency": None if value is None else str(value),
        "priceInBaseCurrencyReliable": bool(row.price is not None and row.price_reliable),
        "token": _token_json(row.token),
        "byWallet": [{"wallet": checksum(w), "value": _scaled(b, d), "frozen": _scaled(f, d),
                      "available": _scaled(b - f, d)} for w, (b, f) in row.balances.items() if b > 0],
    }
    if group_key and group_key in row.token.metadata:
        out["metadataValues"] = {group_key: row.token.metadata[group_key]}
    return out


def _int_param(params: Any, name: str, default: int, lo: int, hi: int | None) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not re.fullmatch(r"\d+", text):
        raise _BadRequest(f"{name} must be a non-negative integer")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        raise _BadRequest(f"{name} must be between {lo} and {hi}" if hi else f"{name} must be at least {lo}")
    return value


def _filtered(rows: list[AssetRow], params: Any) -> list[AssetRow]:
    for name in params:
        m = re.fullmatch(r"filter\[(.+)\]", name)
        if m and m.group(1) not in FILTERS and not m.group(1).startswith("metadata."):
            raise _BadRequest(f"unknown filter {m.group(1)}")
    if (dec := params.get("filter[tokenDecimals]")) is not None and not re.fullmatch(r"\d+", dec):
        raise _BadRequest("filter[tokenDecimals] must be an integer")
    result = []
    for row in rows:
        t = row.token
        checks = {
            "q": lambda q: q.lower() in t.name.lower() or q.lower() in t.symbol.lower(),
            "tokenAddress": lambda v: v.lower() == t.address.lower(),
            "tokenName": lambda v: v.lower() in t.name.lower(),
            "tokenSymbol": lambda v: v.lower() == t.symbol.lower(),
            "tokenDecimals": lambda v: int(v) == t.decimals,
        }
        ok = all(check(params[f"filter[{k}]"]) for k, check in checks.items() if f"filter[{k}]" in params)
        ok = ok and all(t.metadata.get(name[len("filter[metadata."):-1]) == v
                        for name, v in params.items() if name.startswith("filter[metadata."))
        if ok:
            result.append(row)
    return result


def _sorted(rows: list[AssetRow], sort: str) -> list[AssetRow]:
    keys = {"balance": lambda r: money.from_base_units(r.total(), r.token.decimals),
            "tokenAddress": lambda r: r.token.address.lower(),
            "tokenName": lambda r: r.token.name.lower(), "tokenSymbol": lambda r: r.token.symbol.lower()}
    fields = [f.strip() for f in sort.split(",")]
    for f in fields:
        if f.lstrip("-") not in SORTABLE:
            raise _BadRequest(f"cannot sort by {f.lstrip('-')}")
    result = sorted(rows, key=lambda r: r.token.address.lower())   # deterministic ties
    for f in reversed(fields):   # stable sorts, last key first
        result.sort(key=keys[f.lstrip("-")], reverse=f.startswith("-"))
    return result


def _link(limit: int, offset: int | None) -> str | None:
    return None if offset is None else f"{LINK_PATH}?page[limit]={limit}&page[offset]={offset}"


def _groups(rows: list[AssetRow], key: str) -> list[dict[str, Any]]:
    buckets: dict[str, list[AssetRow]] = {}
    for row in rows:
        if key in row.token.metadata:
            buckets.setdefault(row.token.metadata[key], []).append(row)
    out = []
    for name, members in sorted(buckets.items()):
        values = [_value(r) for r in members]
        total = None if any(v is None for v in values) else str(money.dsum(values))  # type: ignore[arg-type]
        out.append({"key": name, "count": len(members), "valueInBaseCurrency": total})
    return out


def _resolve(dataset: Dataset, api_key: str, wallet: str | None) -> Participant | Response:
    """Whose holdings this request reads, or the error response."""
    own_id = dataset.keys.get(api_key)
    known = own_id is not None or api_key in dataset.admin_keys or api_key in dataset.org_readers
    if not api_key or not known:
        return _error(401, "Invalid or missing API key")
    own = dataset.participants.get(own_id) if own_id else None
    if wallet is None:
        if own is None or not own.wallets:
            return _error(401, "The participant has no wallet on file in the active system")
        return own
    if not is_evm_address(wallet):
        return _error(400, "filter[wallet] must be an EVM address")
    owner = dataset.owner_of(wallet)
    if api_key in dataset.admin_keys:
        return owner or Participant(id="unindexed", wallets=[wallet])   # nothing indexed for it
    org = dataset.org_readers.get(api_key)
    if owner is not None and (owner is own or (org is not None and owner.org == org)):
        return owner
    return _error(403, "The caller may not read this wallet")


def create_app(dataset: Dataset, control: SimControl | None = None) -> ControlledApp:
    async def balances(request: Request) -> Response:
        params = request.query_params
        target = _resolve(dataset, request.headers.get("x-api-key", ""), params.get("filter[wallet]"))
        if isinstance(target, Response):
            return target
        try:
            limit = _int_param(params, "page[limit]", DEFAULT_LIMIT, 1, MAX_LIMIT)
            offset = _int_param(params, "page[offset]", 0, 0, None)
            group_key = params.get("groupBy")
            if group_key is not None and group_key not in dataset.bucketable:
                raise _BadRequest("groupBy must name a declared, bucketable metadata key")
            rows = [r for r in target.rows if r.total() > 0]   # only positive balances
            rows = _sorted(_filtered(rows, params), params.get("sort", "-balance"))
        except _BadRequest as exc:
            return _error(400, str(exc))
        total = len(rows)
        served = min(limit, dataset.max_page_rows) if dataset.max_page_rows else limit
        page = rows[offset:offset + served]
        last = ((total - 1) // limit) * limit if total else 0
        meta: dict[str, Any] = {"total": total, "facets": {k: {"label": v} for k, v in dataset.bucketable.items()
                                                          if any(k in r.token.metadata for r in rows)}}
        if group_key:
            meta["groups"] = _groups(rows, group_key)
            meta["groupBy"] = {"key": group_key, "label": dataset.bucketable[group_key]}
        body = {
            "data": [_row_json(r, group_key) for r in page],
            "meta": meta,
            "links": {"self": _link(limit, offset), "first": _link(limit, 0),
                      "prev": _link(limit, max(0, offset - limit) if offset > 0 else None),
                      # advances by the requested limit even when the page was cut short
                      "next": _link(limit, offset + limit if offset + limit < total else None),
                      "last": _link(limit, last)},
        }
        return Response(json.dumps(body).encode(), media_type="application/json")

    app = Starlette(routes=[Route(PATH, balances, methods=["GET"])])
    return ControlledApp(app, control or SimControl(), error_shape, lambda factor: scale_balances(dataset, factor))


def scale_balances(dataset: Dataset, factor: Decimal) -> int:
    """Every wallet balance (and its frozen part) times `factor`, in whole base units
    (/_control/balances)."""
    changed = 0
    for participant in dataset.participants.values():
        for row in participant.rows:
            row.balances = {w: (int(b * factor), int(f * factor)) for w, (b, f) in row.balances.items()}
            changed += 1
    return changed
