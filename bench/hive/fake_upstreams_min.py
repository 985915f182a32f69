#!/usr/bin/env python3
"""Minimal fakes of the five balance upstreams, for the peer (Hive Gateway) comparison.

Stdlib only. One ThreadingHTTPServer per source, each on its own loopback port, so each
source has its own base URL (the path prefix mirrors the real base URL where the
upstream document names one). Each fake serves its documented endpoint(s) with fixed JSON
for one account (the documents' example responses, "<string>" placeholders filled in),
checks the documented auth header, and answers the documented error shape without it.

Env:
  LATENCY_MS  fixed latency added to every request (default 0)
  FAKE_USERS  besides the configured credential, `user-1`..`user-N` are accepted (default 200)
  FAKE_ROWS   rows each source answers, added to the documents' examples (default: those alone)
  BIND        address to bind (default 127.0.0.1)

Usage:
  fake_upstreams_min.py                      # all five, ports from env or 18101..18105
  fake_upstreams_min.py calico 18101         # one source on one port (one process each
                                             # avoids five servers sharing one GIL)
Prints one line per server: "<source> <base_url>".
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LATENCY_S = float(os.environ.get("LATENCY_MS", "0") or 0) / 1000.0
BIND = os.environ.get("BIND", "127.0.0.1")

# Credentials the fakes accept (the gateway under test gets them from its environment).
TOKENS = {
    "calico": os.environ.get("CALICO_TOKEN", "calico-alice-token"),
    "cryptofuse": os.environ.get("CRYPTOFUSE_TOKEN", "cryptofuse-alice-token"),
    "onebalance": os.environ.get("ONEBALANCE_API_KEY", "onebalance-key"),
    "cobo": os.environ.get("COBO_API_KEY", "cobo-key"),
    "dalp": os.environ.get("DALP_API_TOKEN", "dalp-alice-key"),
}

ALICE_EVM = "0xfe52613d747E20F2f62e0A5cC36B0DFAe771C442"
COBO_WALLET = "3c90c3cc-0d44-4b50-8888-8dd25736052a"

CALICO_ASSETS = {
    "data": [
        {
            "asset_symbol": "USDC",
            "asset_holdings": 206.651753,
            "price_in_usd": 206.59355189175383,
            "staked_holdings": 0,
            "time_fetched": "2025-09-26T14:17:39.584Z",
            "crypto_source_id": "ethereum",
            "wallet_address_redacted": "96Fc",
        },
        {
            "asset_symbol": "ETH",
            "asset_holdings": 0.01560091360042268,
            "price_in_usd": 61.016837497724595,
            "staked_holdings": 0,
            "time_fetched": "2025-09-26T14:17:39.584Z",
            "crypto_source_id": "ethereum",
            "wallet_address_redacted": "96Fc",
        },
    ],
    "errors": [],
}

CRYPTOFUSE_BALANCES = {
    "account": {"USDTERC20": "5000.000000", "USDCERC20": "2500.000000", "ETH": "5.123456"},
    "sub_accounts": {"USDTERC20": "1500.000000", "USDCERC20": "800.000000"},
    "statistics": {"total_deposits": 1234, "total_withdrawals": 456},
}

CRYPTOFUSE_HISTORY = {
    "history": [
        {
            "timestamp": "2025-01-15T09:30:00Z",
            "currency": "USDTERC20",
            "type": "deposit",
            "amount": "500.000000",
            "balance_after": "5500.000000",
        },
        {
            "timestamp": "2025-01-14T15:20:00Z",
            "currency": "USDTERC20",
            "type": "withdrawal",
            "amount": "200.000000",
            "balance_after": "5000.000000",
        },
    ],
    "total": 35,
    "limit": 10,
    "offset": 0,
}

ONEBALANCE_AGGREGATED = {
    "accounts": {"evm": ALICE_EVM.lower()},
    "balanceByAggregatedAsset": [
        {
            "aggregatedAssetId": "ob:eth",
            "balance": "26720629499317191152",
            "individualAssetBalances": [
                {"assetType": "eip155:42161/slip44:60", "balance": "43872973277400073", "fiatValue": 77.727114},
                {"assetType": "eip155:8453/slip44:60", "balance": "26488136306212020002", "fiatValue": 46927.441806},
            ],
            "fiatValue": 47005.16892,
        },
        {
            "aggregatedAssetId": "ob:usdc",
            "balance": "843936437",
            "individualAssetBalances": [
                {
                    "assetType": "eip155:42161/erc20:0xaf88d065e77c8cc2239327c5edb3a432268e5831",
                    "balance": "62459466",
                    "fiatValue": 62.456468,
                },
                {
                    "assetType": "eip155:8453/erc20:0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
                    "balance": "774598041",
                    "fiatValue": 774.563184,
                },
            ],
            "fiatValue": 837.019652,
        },
    ],
    "balanceBySpecificAsset": [],
    "totalBalance": {"fiatValue": 47842.188572},
}

COBO_BALANCES = {
    "result": [
        {
            "id": "7d2b4f0e-5a61-4c3e-9b1a-2f8e6c4d9a01",
            "wallet_uuid": COBO_WALLET,
            "cobo_wallet_id": "cw_8f3a21",
            "user_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "address": "0x4E83362442B8d1beC281594CEa3050c8EB01311C",
            "token_id": "SETH_USDC",
            "amount": "125.500000",
            "updated_at": "2023-11-07T05:31:56Z",
            "chain_id": "SETH",
            "chain_type": "EVM",
            "compatible_chains": ["SETH"],
            "total": "125.500000",
            "pending": "0",
            "locked": "0",
            "balance_updated_at": "2023-11-07T05:31:56Z",
        },
        {
            "id": "7d2b4f0e-5a61-4c3e-9b1a-2f8e6c4d9a02",
            "wallet_uuid": COBO_WALLET,
            "cobo_wallet_id": "cw_8f3a21",
            "user_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "address": "0x4E83362442B8d1beC281594CEa3050c8EB01311C",
            "token_id": "BASE_ETH",
            "amount": "0.731",
            "updated_at": "2023-11-07T05:31:56Z",
            "chain_id": "BASE_ETH",
            "chain_type": "EVM",
            "compatible_chains": ["BASE_ETH", "ETH"],
            "total": "0.781",
            "pending": "0.05",
            "locked": "0",
            "balance_updated_at": "2023-11-07T05:31:56Z",
        },
    ],
    "success": True,
    "suggestion": "",
    "message": "",
    "meta": {"total": 2, "offset": 0, "limit": 50, "has_more": False, "after": None, "before": None},
}

DALP_BALANCES = {
    "data": [
        {
            "id": "0x71C7656EC7ab88b098defB751B7401B5f6d8976F",
            "value": "1.000000000000000000",
            "frozen": "0.000000000000000000",
            "available": "1.000000000000000000",
            "valueInBaseCurrency": "1000.00",
            "priceInBaseCurrencyReliable": True,
            "token": {
                "id": "0x71C7656EC7ab88b098defB751B7401B5f6d8976F",
                "name": "Bond Token",
                "symbol": "BOND",
                "type": "bond",
                "isExternal": False,
                "decimals": 18,
                "totalSupply": "1000000",
                "bond": {"isMatured": False},
                "yield": {
                    "schedule": {
                        "id": "0x8ba1f109551bD432803012645Ac136ddd64DBA72",
                        "denominationAsset": {
                            "id": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                            "symbol": "USDC",
                            "decimals": 6,
                        },
                    }
                },
            },
            "byWallet": [
                {
                    "wallet": "0x71C7656EC7ab88b098defB751B7401B5f6d8976F",
                    "value": "1.000000000000000000",
                    "frozen": "0.000000000000000000",
                    "available": "1.000000000000000000",
                }
            ],
        }
    ],
    "meta": {"total": 1, "facets": {}},
    "links": {
        "self": "/v2/user-asset-balances?page[limit]=50&page[offset]=0",
        "first": "/v2/user-asset-balances?page[limit]=50&page[offset]=0",
        "prev": None,
        "next": None,
        "last": "/v2/user-asset-balances?page[limit]=50&page[offset]=0",
    },
}


# Many users: besides the one configured credential, `user-1` .. `user-<FAKE_USERS>` are
# accepted (as a bearer token or an API key), each a credential of its own that answers the
# same account; every credential accepted is counted, so the bench can check that the
# gateway under test really sent a different one per request (GET /_bench/credentials).
FAKE_USERS = int(os.environ.get("FAKE_USERS", "200"))
_SEEN: set[str] = set()
_SEEN_LOCK = threading.Lock()


def _user_credential(value):
    number = value[5:] if value.startswith("user-") else ""
    return number.isdigit() and 1 <= int(number) <= FAKE_USERS


def _accepted(value, configured):
    ok = value == configured or _user_credential(value)
    if ok:
        with _SEEN_LOCK:
            _SEEN.add(value)
    return ok


# Rows per source: the documents' examples are 1-5 rows a source; FAKE_ROWS (default: as many
# as those) adds rows until each source answers that many, so the peer reads as many upstream
# rows per request as the gateway it is compared with (bench.perf passes its simulators' 8).
FAKE_ROWS = int(os.environ.get("FAKE_ROWS", "0"))


def _grow(rows: int) -> None:
    def extra(have):
        return range(have, max(have, rows))
    for i in extra(len(CALICO_ASSETS["data"])):
        CALICO_ASSETS["data"].append(dict(CALICO_ASSETS["data"][0], asset_symbol=f"TK{i}",
                                          asset_holdings=1.5 + i, price_in_usd=2.25 + i))
    held = len(CRYPTOFUSE_BALANCES["account"]) + len(CRYPTOFUSE_BALANCES["sub_accounts"])
    for i in extra(held):
        CRYPTOFUSE_BALANCES["account"][f"TK{i}"] = f"{i}.500000"
    members = [m for a in ONEBALANCE_AGGREGATED["balanceByAggregatedAsset"] for m in a["individualAssetBalances"]]
    usdc = ONEBALANCE_AGGREGATED["balanceByAggregatedAsset"][1]["individualAssetBalances"]
    for i in extra(len(members)):
        usdc.append({"assetType": f"eip155:{10 + i}/erc20:0x{i:040x}", "balance": str(10**6 * i), "fiatValue": 1.25 * i})
    for i in extra(len(COBO_BALANCES["result"])):
        COBO_BALANCES["result"].append(dict(COBO_BALANCES["result"][0], id=f"7d2b4f0e-5a61-4c3e-9b1a-{i:012d}",
                                            token_id=f"SETH_TK{i}", amount=f"{i}.25", total=f"{i}.25"))
    COBO_BALANCES["meta"]["total"] = len(COBO_BALANCES["result"])
    for i in extra(len(DALP_BALANCES["data"])):
        row = json.loads(json.dumps(DALP_BALANCES["data"][0]))
        row["id"] = row["token"]["id"] = f"0x{i:040x}"
        row["token"]["symbol"] = f"TK{i}"
        DALP_BALANCES["data"].append(row)
    DALP_BALANCES["meta"]["total"] = len(DALP_BALANCES["data"])


_grow(FAKE_ROWS)


def _auth_bearer(headers, source):
    got = headers.get("Authorization", "")
    return got.startswith("Bearer ") and _accepted(got[7:], TOKENS[source])


def _auth_key(headers, name, source):
    return _accepted(headers.get(name, ""), TOKENS[source])


# source -> (base path, {endpoint path: handler(query, headers) -> (status, body)})
def _calico(q, h):
    if not _auth_bearer(h, "calico"):
        return 401, {"data": [], "errors": [{"message": "Unauthorized"}]}
    return 200, CALICO_ASSETS


def _cryptofuse_err():
    return 401, {"error": {"code": "authentication_failed",
                           "message": "Invalid or missing authentication token", "details": {}}}


def _cryptofuse(q, h):
    return (200, CRYPTOFUSE_BALANCES) if _auth_bearer(h, "cryptofuse") else _cryptofuse_err()


def _cryptofuse_history(q, h):
    return (200, CRYPTOFUSE_HISTORY) if _auth_bearer(h, "cryptofuse") else _cryptofuse_err()


def _onebalance(q, h):
    if not _auth_key(h, "x-api-key", "onebalance"):
        return 401, {"message": "Unauthorized", "statusCode": 401}
    if "account" not in q or not ({"aggregatedAssetId", "assetId"} & q.keys()):
        return 400, {"message": "account and one of aggregatedAssetId/assetId are required",
                     "statusCode": 400}
    return 200, ONEBALANCE_AGGREGATED


def _cobo(q, h):
    if not _auth_key(h, "X-API-Key", "cobo"):
        return 401, {"success": False, "result": [], "message": "Unauthorized",
                     "suggestion": "Check the X-API-Key header"}
    return 200, COBO_BALANCES


def _dalp(q, h):
    if not _auth_key(h, "X-Api-Key", "dalp"):
        return 401, {"code": "UNAUTHORIZED", "status": 401, "message": "Unauthorized"}
    return 200, DALP_BALANCES


SOURCES = {
    "calico": ("/platform/v1", {"/assets": _calico}),
    "cryptofuse": ("", {"/user/balances/": _cryptofuse, "/user/balances/history/": _cryptofuse_history}),
    "onebalance": ("/api", {"/v3/balances/aggregated-balance": _onebalance}),
    "cobo": ("", {"/api/v1/wallets/balances": _cobo}),
    "dalp": ("", {"/api/v2/user-asset-balances": _dalp}),
}
DEFAULT_PORTS = {"calico": 18101, "cryptofuse": 18102, "onebalance": 18103, "cobo": 18104, "dalp": 18105}


def make_handler(source):
    base, routes = SOURCES[source]
    full = {base + p: fn for p, fn in routes.items()}
    cache: dict = {}  # the fake should cost as little as possible

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real upstream
        # One write per response and no Nagle: with the stdlib defaults (unbuffered headers
        # then body, Nagle on) the client's delayed ACK adds ~40 ms to every response.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def do_GET(self):
            parts = urlsplit(self.path)
            if parts.path == "/_bench/credentials":   # the bench's check, not an upstream endpoint
                with _SEEN_LOCK:
                    seen = len(_SEEN)
                    if parts.query == "clear=1":
                        _SEEN.clear()
                self._write(200, json.dumps({"distinct": seen}).encode())
                return
            fn = full.get(parts.path)
            if LATENCY_S:
                time.sleep(LATENCY_S)
            if fn is None:
                status, body = 404, {"message": "Not Found"}
            else:
                q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                status, body = fn(q, self.headers)
            if status == 200:  # success bodies are module constants: encode each once
                data = cache.get(id(body))
                if data is None:
                    data = cache[id(body)] = json.dumps(body).encode()
            else:
                data = json.dumps(body).encode()
            self._write(status, data)

        def _write(self, status, data):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet
            pass

    return Handler


def serve(source, port):
    srv = ThreadingHTTPServer((BIND, port), make_handler(source))
    srv.daemon_threads = True
    srv.request_queue_size = 1024
    print(f"{source} http://{BIND}:{srv.server_address[1]}{SOURCES[source][0]}", flush=True)
    return srv


def main(argv):
    if len(argv) == 3:
        serve(argv[1], int(argv[2])).serve_forever()
        return
    servers = []
    for name in SOURCES:
        port = int(os.environ.get(f"{name.upper()}_PORT", DEFAULT_PORTS[name]))
        servers.append(serve(name, port))
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main(sys.argv)
