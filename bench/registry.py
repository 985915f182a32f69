"""The account registry at scale, on a fresh PostgreSQL database (127.0.0.1:5432):

- start-up: what a process does before it serves (reads where the feed stands; N accounts,
  each with a sealed Calico token and a gateway key, are not loaded);
- a request's first look-up of a key it has not seen (one indexed query, the account loaded),
  and every later one (memory only);
- propagation: a change made through one process's registry, seen by another's directory
  polling the feed (two engines, as two processes would have).

    .venv/bin/python -m bench.registry --accounts 1000 10000 100000

Figures from a shared machine are noisy; they go in docs/PERFORMANCE.md, not in code.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time

import sqlalchemy as sa

from gateway.accounts import tables as t
from gateway.accounts.admin import Registry
from gateway.accounts.crypto import SecretBox
from gateway.accounts.directory import AccountDirectory
from gateway.accounts.links import LinkInput
from gateway.accounts.store import now, seal_context
from gateway.config import GatewayConfig
from gateway.simulation.world import World
from gateway.store.config import StoreConfig
from gateway.store.engine import create_engine
from gateway.store.schema_version import migrate
from tests.store_db import fresh_postgres, new_encryption_key

CHUNK = 5_000


async def populate(engine, box: SecretBox, n: int) -> None:
    created = now()
    async with engine.begin() as conn:
        for start in range(0, n, CHUNK):
            ids = [f"bench-{i:07d}" for i in range(start, min(n, start + CHUNK))]
            await conn.execute(sa.insert(t.accounts), [{"id": i, "created_at": created, "cache_epoch": 0} for i in ids])
            await conn.execute(sa.insert(t.links), [
                {"account_id": i, "source": "CALICO", "identity": "token", "hint": "oken", "created_at": created,
                 "secret": box.seal(f"calico-token-{i}", seal_context(i, "CALICO", "token"))} for i in ids])
            await conn.execute(sa.insert(t.api_keys), [
                {"key_id": f"key_{i}", "account_id": i, "digest": hashlib.sha256(f"key-{i}".encode()).hexdigest(),
                 "label": None, "created_at": created} for i in ids])


async def measure(n: int) -> dict[str, float]:
    with fresh_postgres() as url:
        store = StoreConfig.model_validate({"url": url, "encryption_keys": [new_encryption_key()]})
        box = SecretBox(store.keys)
        engine = create_engine(store)
        await migrate(engine)
        await populate(engine, box, n)
        started = time.perf_counter()
        directory = AccountDirectory(engine, box, backend="postgresql")
        await directory.sync()          # what start-up does: nothing is loaded up front
        start_s = time.perf_counter() - started
        firsts, laters = [], []
        for i in range(0, n, max(1, n // 200)):   # 200 accounts spread over the registry
            digest = hashlib.sha256(f"key-bench-{i:07d}".encode()).digest()
            t0 = time.perf_counter()
            await directory.ensure_key(digest)    # a request with a key this process has not seen
            owner = directory.owner_of(digest)
            assert owner == f"bench-{i:07d}" and directory.account(owner) is not None
            firsts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await directory.ensure_key(digest)    # every later request of that account
            directory.account(directory.owner_of(digest))
            laters.append(time.perf_counter() - t0)
        # propagation: a second "process" (own engine) polling the feed
        other_engine = create_engine(store)
        other = AccountDirectory(other_engine, box, backend="postgresql")
        await other.sync()
        watching = asyncio.create_task(other.run())
        world = World(seed=1)
        config = GatewayConfig.model_validate({**world.config_dict("http://127.0.0.1:9"), "accounts": [], "store": {
            "url": url, "encryption_keys": [k.get_secret_value() for k in store.encryption_keys]}})
        registry = Registry(engine, box, directory, config)
        seen = []
        for i in range(10):
            account_id = f"late-{i}"
            await registry.create_account("bench", account_id)
            await other.ensure_account(account_id)   # the other process holds it (it has served it)
            await registry.link("bench", account_id, LinkInput(source="CALICO", token=f"late-token-{i}"))
            committed = time.perf_counter()
            while other.account(account_id) is None or other.account(account_id).calico is None:
                await asyncio.sleep(0.005)
            seen.append(time.perf_counter() - committed)
        watching.cancel()
        await other_engine.dispose()
        await engine.dispose()
        return {"start_ms": start_s * 1000, "first_ms": statistics.median(firsts) * 1000,
                "first_max_ms": max(firsts) * 1000, "later_us": statistics.median(laters) * 1e6,
                "seen_median_ms": statistics.median(seen) * 1000, "seen_max_ms": max(seen) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args()
    print("account registry on PostgreSQL (measured on a shared machine)")
    print(f"{'accounts':>9} {'start-up':>9} {'first request (median, max)':>28} {'later':>8} "
          f"{'change seen by another process':>32}")
    for n in args.accounts:
        r = asyncio.run(measure(n))
        print(f"{n:>9} {r['start_ms']:>6.1f} ms {r['first_ms']:>10.2f} ms, {r['first_max_ms']:>6.2f} ms max "
              f"{r['later_us']:>5.1f} µs {r['seen_median_ms']:>14.0f} ms median, {r['seen_max_ms']:.0f} ms max")


if __name__ == "__main__":
    main()
