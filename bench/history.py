"""Value history at scale, on PostgreSQL (127.0.0.1:5432, user postgres, trust auth).

    .venv/bin/python -m bench.history                 # 10,000 accounts x 365 daily points
    .venv/bin/python -m bench.history --accounts 200 --days 30 --samples 50   # a quick run

1. Fills a database of its own (dropped at the end unless --keep) through the real
   migrations, with COPY: one point per account per day, holdings that change weekly
   (consecutive days share their stored holdings, as unchanged snapshots do).
2. Prints the storage per account-day (table and index bytes from PostgreSQL itself).
3. Times `valueHistory(from, to: a year, interval: DAY)`: the store path (query + series)
   and the whole GraphQL request over HTTP through a gateway on that database; p50/p95/max.
4. Shows that snapshot writes never delay the read that triggers them: the same reads
   with history off, with history on (every read writes: snapshot_every_s = 0), and with
   history on while another connection holds a lock that blocks every write — side by side.

Figures from a shared machine are noisy; docs/PERFORMANCE.md keeps the latest.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx

from gateway.config import GatewayConfig
from gateway.history import codec, series
from gateway.history.store import HistoryStore
from gateway.server.app import create_app
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from gateway.store.config import StoreConfig
from gateway.store.engine import create_engine
from gateway.store.schema_version import migrate
from tests.store_db import admin_sql, pg_url

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="   # the bench's own store key (no secrets are stored)
ADMIN = "bench-history-admin"
END = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ms(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1000:7.2f} ms  p95 {_pct(values, 0.95) * 1000:7.2f} ms  "
            f"max {max(values) * 1000:7.2f} ms  (n={len(values)})")


def _payload(rng: random.Random, account: str, week: int) -> bytes:
    """Eight holdings of the account as the codec stores them (zlib JSON)."""
    holdings = [{"id": f"h{account}{i}", "account_id": account, "wallet": "w", "source": "DALP",
                 "token": {"id": f"eip155:1/erc20:0x{i:040x}", "symbol": f"T{i}", "asset_key": f"t{i}", "name": None,
                           "decimals": 18, "chain": ["eip155:1", "Ethereum", False], "address": None, "asset_type": None},
                 "amount": str(Decimal(rng.randrange(1, 10**9)) / 1000), "precision": "EXACT", "amount_raw": None,
                 "available": None, "locked": None, "pending": None, "staked": None, "price": None,
                 "value": [str(Decimal(rng.randrange(1, 10**9)) / 100), "EUR"], "updated_at": None,
                 "base_units": False} for i in range(8)]
    wallets = {"w": {"id": "w", "account_id": account, "source": "DALP", "kind": "CUSTODIAL", "local_id": "0x1",
                     "provider": None, "chain": None, "address": None, "address_hint": None, "label": None}}
    return zlib.compress(json.dumps({"wallets": wallets, "holdings": holdings, "week": week},
                                    separators=(",", ":")).encode(), 6)


async def fill(url: str, accounts: int, days: int) -> float:
    import asyncpg
    conn = await asyncpg.connect(url)
    rng = random.Random(7)
    rates = codec.rates_json([codec.FxRate(base="EUR", quote="USD", rate=Decimal("1.0850"), at=END, source="config")])
    states = codec.states_json({codec.Source.DALP: codec.SourceState.OK, codec.Source.CALICO: codec.SourceState.OK})
    started = time.perf_counter()
    weeks = (days + 6) // 7
    hid = 0
    try:
        for first in range(0, accounts, 500):
            holdings_rows, point_rows = [], []
            for a in range(first, min(accounts, first + 500)):
                account = f"acct-{a:05d}"
                base = hid
                for week in range(weeks):
                    hid += 1
                    holdings_rows.append((hid, account, uuid.uuid4().hex + uuid.uuid4().hex, _payload(rng, account, week)))
                for day in range(days):
                    at = END - timedelta(days=days - 1 - day)
                    eur = Decimal(rng.randrange(10**6, 10**9)) / 100
                    usd = Decimal(rng.randrange(10**6, 10**9)) / 100
                    sums = json.dumps({"CALICO": {"USD": [str(usd), 4]}, "DALP": {"EUR": [str(eur), 4]}},
                                      sort_keys=True, separators=(",", ":"))
                    point_rows.append((account, codec.to_micros(at), sums, states, rates, base + 1 + day // 7))
            await conn.copy_records_to_table("history_holdings", records=holdings_rows,
                                             columns=["id", "account_id", "digest", "payload"])
            await conn.copy_records_to_table("history_points", records=point_rows,
                                             columns=["account_id", "taken_at", "sums", "states", "rates", "holdings_id"])
        await conn.execute("SELECT setval(pg_get_serial_sequence('history_holdings', 'id'), $1)", hid)
        await conn.execute("ANALYZE history_points; ANALYZE history_holdings")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def storage(url: str, account_days: int) -> None:
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        for table in ("history_points", "history_holdings"):
            heap = await conn.fetchval("SELECT pg_table_size($1)", table)
            index = await conn.fetchval("SELECT pg_indexes_size($1)", table)
            print(f"  {table:17s} table {heap / 2**20:9.1f} MiB  indexes {index / 2**20:8.1f} MiB  "
                  f"= {(heap + index) / account_days:7.1f} bytes per account-day")
        total = await conn.fetchval("SELECT pg_total_relation_size('history_points') + "
                                    "pg_total_relation_size('history_holdings')")
        print(f"  all               {total / 2**20:9.1f} MiB  = {total / account_days:7.1f} bytes per account-day")
    finally:
        await conn.close()


async def store_path(url: str, accounts: int, days: int, samples: int) -> list[float]:
    engine = create_engine(StoreConfig(url=url, encryption_keys=[KEY]))
    store = HistoryStore(engine)
    rng = random.Random(11)
    times = []
    start = END - timedelta(days=days - 1)
    try:
        for _ in range(samples):
            account = f"acct-{rng.randrange(accounts):05d}"
            t = time.perf_counter()
            points = series.series(await store.points(account, start, END), "USD", "DAY")
            times.append(time.perf_counter() - t)
            assert len(points) == days, len(points)
    finally:
        await engine.dispose()
    return times


def over_http(url: str, accounts: int, days: int, samples: int) -> list[float]:
    config = GatewayConfig.model_validate({
        "store": {"url": url, "encryption_keys": [KEY]}, "auth": {"admin_keys": [ADMIN]},
        "fx": {"rates": {"EUR/USD": "1.0850"}},
        "limits": {"rate_limit_per_s": 100_000, "rate_limit_burst": 100_000},
        "accounts": [{"id": f"acct-{a:05d}"} for a in range(accounts)]})
    query = ("query($id: ID!, $from: DateTime!, $to: DateTime!) { account(id: $id) { "
             "valueHistory(currency: \"USD\", from: $from, to: $to, interval: DAY) { at value { amount } complete } } }")
    rng = random.Random(13)
    times = []
    with ServerThread(create_app(config)) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:
        variables = {"from": (END - timedelta(days=days - 1)).isoformat(), "to": END.isoformat()}
        for i in range(samples + 5):
            variables["id"] = f"acct-{rng.randrange(accounts):05d}"
            t = time.perf_counter()
            r = client.post("/graphql", json={"query": query, "variables": variables},
                            headers={"authorization": f"Bearer {ADMIN}"})
            elapsed = time.perf_counter() - t
            body = r.json()
            assert "errors" not in body and len(body["data"]["account"]["valueHistory"]) == days, str(body)[:300]
            if i >= 5:   # the first few warm the pool and the caches
                times.append(elapsed)
    return times


def snapshot_delay(url: str, blocked_url: str, reads: int) -> None:
    """The same reads against three gateways side by side, interleaved one read each in turn
    (so machine noise falls on all three alike): history off, history on (every read queues
    a snapshot), and history on while another connection holds a lock that blocks every write."""
    import asyncpg
    world = World.generate(0, size=8)
    cases = ("off", "on", "on, writes blocked")
    query = {"query": "{ viewer { totalValue { value { amount } } } }"}
    headers = {"authorization": "Bearer demo-key"}
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        sims = stack.enter_context(ServerThread(world.combined_app()))
        apps, clients = {}, {}
        for case in cases:
            raw = world.config_dict(sims.url, cache={"enabled": False},
                                    limits={"rate_limit_per_s": 100_000, "rate_limit_burst": 100_000},
                                    history={"snapshot_every_s": 0, "enabled": case != "off"},
                                    store={"url": blocked_url if case == "on, writes blocked" else url,
                                           "encryption_keys": [KEY]})
            apps[case] = create_app(GatewayConfig.model_validate(raw))
            gateway = stack.enter_context(ServerThread(apps[case]))
            clients[case] = stack.enter_context(httpx.Client(base_url=gateway.url, timeout=60))
            clients[case].post("/graphql", json=query, headers=headers)   # warm: connections, first read
        blocked = apps["on, writes blocked"].state.gateway.history.recorder
        on = apps["on"].state.gateway.history.recorder
        deadline = time.monotonic() + 30
        while (on.written < 1 or blocked.written < 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = loop.run_until_complete(asyncpg.connect(blocked_url))
        loop.run_until_complete(holder.execute("BEGIN; LOCK TABLE history_points IN EXCLUSIVE MODE"))
        times: dict[str, list[float]] = {case: [] for case in cases}
        for _ in range(reads):
            for case in cases:
                t = time.perf_counter()
                r = clients[case].post("/graphql", json=query, headers=headers)
                times[case].append(time.perf_counter() - t)
                assert r.status_code == 200 and "errors" not in r.json()
        during = {"on": on.written - 1, "on, writes blocked": blocked.written - 1}
        waiting = {"on": on.queue.qsize(), "on, writes blocked": blocked.queue.qsize()}
        loop.run_until_complete(holder.execute("ROLLBACK"))
        loop.run_until_complete(holder.close())
        loop.close()
        deadline = time.monotonic() + 60
        while (on.written < reads + 1 or blocked.written < reads + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"  {reads} reads of one account per gateway (five simulators, cache off), interleaved:")
        for case in cases:
            extra = ""
            if case != "off":
                recorder = on if case == "on" else blocked
                extra = (f"  snapshots written during the reads {during[case]}, waiting at the end {waiting[case]}, "
                         f"written after {recorder.written - 1}")
            print(f"  history {case:19s} {_ms(times[case])}{extra}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--reads", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    name = f"bench_history_{uuid.uuid4().hex[:8]}"
    url, blocked_url = pg_url(name), pg_url(f"{name}_blocked")   # the second for the blocked writes
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}_blocked"'))
    try:
        async def prepare() -> None:
            for each in (url, blocked_url):
                engine = create_engine(StoreConfig(url=each, encryption_keys=[KEY]))
                await migrate(engine)
                await engine.dispose()
        asyncio.run(prepare())
        if args.accounts == 0:   # only the snapshot-write comparison
            print("snapshot writes and the reads that trigger them (measured on a shared machine):")
            snapshot_delay(url, blocked_url, args.reads)
            return 0
        seconds = asyncio.run(fill(url, args.accounts, args.days))
        account_days = args.accounts * args.days
        print(f"history bench on PostgreSQL, database {name} (measured on a shared machine)")
        print(f"filled {args.accounts} accounts x {args.days} daily points = {account_days} points in {seconds:.1f} s (COPY)")
        print("storage:")
        asyncio.run(storage(url, account_days))
        print(f"valueHistory of {args.days} daily points, random accounts:")
        store_times = asyncio.run(store_path(url, args.accounts, args.days, args.samples))
        print(f"  store path (query + series)  {_ms(store_times)}")
        http_times = over_http(url, args.accounts, args.days, args.samples)
        print(f"  GraphQL over HTTP            {_ms(http_times)}")
        target = _pct(http_times, 0.95) <= 0.100
        print(f"  target p95 <= 100 ms over HTTP: {'ok' if target else 'MISSED'}")
        print("snapshot writes and the reads that trigger them:")
        snapshot_delay(url, blocked_url, args.reads)
        return 0 if target else 1
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}_blocked" WITH (FORCE)'))
        if not args.keep:
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    sys.exit(main())
