"""Scale-out bench: one process, one process with 2 workers, two processes sharing Redis;
or, with `--cluster`, 1, 2 and 4 processes sharing a three-master Redis Cluster.

    .venv/bin/python -m bench.scaleout             # from the repo root; about 2 minutes on 2 cores
    .venv/bin/python -m bench.scaleout --cluster   # starts a cluster on loopback unless --cluster-url

Same bodies as bench/perf.py: the small cached query (`viewer { id totalValue }`) and the
all-balances uncached query. Topologies, each started, measured and stopped in turn:

  1p-mem    one process, in-memory cache (the default deployment)
  1p-redis  one process, cache / rate limits / APQ in Redis db 13
  1p-2w     one process with `--workers 2`, sharing Redis db 13
  2p-redis  two gateway processes on two ports sharing Redis db 13; the load is split by
            running one wrk per port at the same time, and their req/s are summed

Before each Redis topology the `bg:*` keys of db 13 are deleted. Redis CPU and commands
come from `INFO cpu` / `INFO commandstats` before and after each run (the Redis server is
a separate process on the same 2 cores). Two sharing checks on 2p-redis, from the
simulators' call log: after process A warmed the cache, process B warming the same
accounts must make no upstream call; and a cold request sent to both processes at once
must cost the upstream calls of one (the cross-process fill lock).

With `--cluster` the topologies are 1p-cluster, 2p-cluster and 4p-cluster (the sharing
checks run on 2p-cluster); Redis CPU and commands are summed over every node of the
cluster (replicas too: they apply every write). The summary gives req/s per process and
two efficiencies of 4 processes against 1 on the same cores: throughput (req/s of 4 over
req/s of 1) and per gateway core (req/s per gateway CPU core, 4 over 1: what running
more processes costs in gateway CPU per request).

With `--registry` (the default with `--cluster`; `--no-registry` turns it off) the accounts
are not in the config file but in the account registry: a PostgreSQL database this run
creates on 127.0.0.1:5432 (user postgres, trust auth) and drops at the end, holding the
same accounts, links and keys (bench/registry_load.py). Each row then also gives the
database's load per request: transactions, rows returned and fetched, and its backends'
CPU (and calls per statement when the server loads pg_stat_statements). Every process
has looked up every key once before it is measured (the first look-up of a key is one
query; later ones are memory), so a measured row shows what the steady state costs: the
feed poll each process makes every 0.2 s. The warm-up lines of the sharing checks show
the first look-ups. PostgreSQL publishes a backend's counters up to 10 s late when it
went idle: with the registry every row waits that long after the look-ups before it
starts (the bench takes about a minute longer). `--quick` is a smoke test: 20 accounts, 2 s runs, the 1- and
2-process topologies only; its figures are only indicative.

Exit status 0 when no run had a bad response and both sharing checks hold.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import redis

from bench.common import CLK_TCK, Gateway, Sims, WrkResult, build_world, cpu_seconds, run_wrk, world_digest, wrk_available
from bench.perf import ALL_BALANCES, DEEP, SMALL, gateway_config, warm_cache
from bench.registry_load import NoPostgres, PgStats, RegistryDatabase, per_request, registry_database
from gateway.simulation.world import World, gateway_key

REDIS_URL = "redis://127.0.0.1:6379/13"


# --------------------------------------------------------------------------- redis

class RedisNodes:
    """The Redis the gateways share, as the bench measures it: one server's database, or
    every node of a cluster (keys of a cluster live on its masters)."""

    def __init__(self, url: str, nodes: list[tuple[int, int]]):
        self.url = url          # what the gateways are given
        self.nodes = nodes      # (port, db) of every server to measure

    def node(self, port: int, db: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, db=db, socket_timeout=30)

    def flush_bg(self) -> int:
        """Delete every `bg:*` key (ours only; other keys are left alone)."""
        deleted = 0
        for port, db in self.nodes:
            node = self.node(port, db)
            if node.info("replication")["role"] != "master":
                continue
            pipe = node.pipeline(transaction=False)   # one key per DEL: a cluster node's keys span slots
            for key in node.scan_iter(match="bg:*", count=1000):
                pipe.delete(key)
                deleted += 1
            pipe.execute()
        return deleted

    def stats(self) -> tuple[float, int, dict[str, int]]:
        """(CPU seconds of the Redis servers so far, commands processed so far, calls per command), summed."""
        cpu, commands, by_command = 0.0, 0, {}
        for port, db in self.nodes:
            info = self.node(port, db).info("all")
            cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
            commands += int(info["total_commands_processed"])
            for k, v in info.items():
                if k.startswith("cmdstat_"):
                    name = k.removeprefix("cmdstat_")
                    by_command[name] = by_command.get(name, 0) + int(v["calls"])
        return cpu, commands, by_command

    def available(self) -> bool:
        with contextlib.suppress(Exception):
            return all(self.node(port, db).ping() for port, db in self.nodes)
        return False


SINGLE = RedisNodes(REDIS_URL, [(6379, 13)])


def host_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far: shows what else took the cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


# --------------------------------------------------------------------------- runs

def config(world: World, sims_url: str, *, cache: bool, redis: bool, redis_url: str = REDIS_URL,
           store: dict[str, Any] | None = None) -> dict[str, Any]:
    """`store`: the accounts are the registry's in that `[store]`, none in the file."""
    raw = gateway_config(world, sims_url, cache=cache)
    if redis:
        raw["cache"]["redis_url"] = redis_url   # also the rate limiter's and APQ's Redis
    if store is not None:
        del raw["accounts"]
        raw["store"] = store
    return raw


SMALL_LABEL = "small, cached"
# PostgreSQL 15 publishes a busy backend's counters about once a second, and a backend that
# went idle within that second holds them until its idle timer (10 s, PGSTAT_IDLE_INTERVAL):
# what the key look-ups before a run did would otherwise land in the run's figures.
PG_BUSY_FLUSH_S = 1.5
PG_IDLE_FLUSH_S = 10.5


def pg_snapshot(pg: RegistryDatabase | None, settle_s: float = 0.0) -> PgStats | None:
    if pg is None:
        return None
    time.sleep(settle_s)
    return pg.stats()


def look_up_keys(url: str, keys: list[str]) -> None:
    """One request with each key: the process has looked it up in the registry."""
    with httpx.Client(timeout=30) as client:
        for key in keys:
            client.post(url + "/graphql", json={"query": "{ __typename }"}, headers={"authorization": f"Bearer {key}"})


def pg_text(load: dict[str, Any]) -> str:
    text = (f"xacts {load['xacts']:.3f}, rows returned {load['returned']:.1f}, fetched {load['fetched']:.2f}, "
            f"written {load['written']:.3f}, backend CPU {load['cpu_ms']:.3f} ms, connections opened {load['opened']}")
    if load["statements"]:
        top = sorted(load["statements"].items(), key=lambda kv: -kv[1])[:3]
        text += "; calls/req: " + "; ".join(f"{n:.3f} x {q[:60]}" for q, n in top)
    return text


def measure(gws: list[Gateway], body: dict, keys: list[str], connections: int, seconds: float, warmup: float,
            workdir: Path, sims: Sims, shared: RedisNodes = SINGLE, pg: RegistryDatabase | None = None) -> dict[str, Any]:
    """One wrk per gateway at once (connections split between them); summed req/s."""
    per = max(1, connections // len(gws))
    dirs = []
    for i in range(len(gws)):   # own directory each: run_wrk writes its Lua script there
        (d := workdir / f"wrk{i}").mkdir(exist_ok=True)
        dirs.append(d)

    def all_at_once(duration: float) -> list[WrkResult]:
        with concurrent.futures.ThreadPoolExecutor(len(gws)) as pool:
            futures = [pool.submit(run_wrk, gw.url, body, keys, connections=per, seconds=duration,
                                   workdir=d, watch={}) for gw, d in zip(gws, dirs)]
            return [f.result() for f in futures]

    if pg is not None:   # the key look-ups just made reach the statistics before the window opens
        time.sleep(max(0.0, PG_IDLE_FLUSH_S - warmup))
    if warmup > 0:
        all_at_once(warmup)
    sims.calls(clear=True)
    cpu0 = sum(cpu_seconds(gw.pid) for gw in gws)
    sims_cpu0 = cpu_seconds(sims.pid)
    redis0, host0, pg0 = shared.stats(), host_busy(), pg_snapshot(pg)
    results = all_at_once(seconds)
    redis1, host1, pg1 = shared.stats(), host_busy(), pg_snapshot(pg)
    gw_cpu = sum(cpu_seconds(gw.pid) for gw in gws) - cpu0
    sims_cpu = cpu_seconds(sims.pid) - sims_cpu0
    calls = len(sims.calls(clear=True))
    requests = sum(r.requests for r in results)
    wall = max(r.seconds for r in results)
    return {"rps": sum(r.rps for r in results), "p50": sum(r.p50_ms for r in results) / len(results),
            "p99": max(r.p99_ms for r in results), "requests": requests,
            "bad": sum(r.bad + r.socket_errors for r in results),
            "gw_ms": gw_cpu / requests * 1000 if requests else float("nan"), "gw_cores": gw_cpu / wall,
            "sims_cores": sims_cpu / wall, "host_cores": (host1[0] - host0[0]) / wall,
            "redis_ms": (redis1[0] - redis0[0]) / requests * 1000 if requests else float("nan"),
            "redis_cores": (redis1[0] - redis0[0]) / wall,
            "redis_cmds": (redis1[1] - redis0[1]) / requests if requests else float("nan"),
            "calls_per_req": calls / requests if requests else float("nan"),
            "pg": per_request(pg0, pg1, requests) if pg0 is not None and pg1 is not None else None,
            "commands": {c: (n - redis0[2].get(c, 0)) / requests for c, n in redis1[2].items()
                         if requests and (n - redis0[2].get(c, 0)) / requests >= 0.01}}


def sharing_checks(gws: list[Gateway], sims: Sims, keys: list[str], cold: list[str],
                   shared: RedisNodes = SINGLE, topo: str = "2p-redis",
                   pg: RegistryDatabase | None = None) -> tuple[list[tuple[bool, str]], float, int, int]:
    """With Redis, the second process reuses what the first cached, and cold reads are shared."""
    checks = []
    shared.flush_bg()
    sims.calls(clear=True)
    r0, p0 = shared.stats(), pg_snapshot(pg, PG_BUSY_FLUSH_S)   # only feed polls since start-up
    warm_cache(gws[0].url, keys)
    first = len(sims.calls(clear=True))
    r1, p1 = shared.stats(), pg_snapshot(pg, PG_IDLE_FLUSH_S)
    warm_cache(gws[1].url, keys)
    second = len(sims.calls(clear=True))
    r2, p2 = shared.stats(), pg_snapshot(pg, PG_IDLE_FLUSH_S)
    for what, (a, b), (pa, pb) in (("A: miss, upstream read, page written", (r0, r1), (p0, p1)),
                                   ("B: page read from Redis", (r1, r2), (p1, p2))):
        per = {c: (n - a[2].get(c, 0)) / len(keys) for c, n in b[2].items() if n - a[2].get(c, 0) >= len(keys) / 100}
        print(f"  {topo} warm-up, deep query, process {what}: Redis CPU {(b[0] - a[0]) / len(keys) * 1000:.3f} "
              f"ms/req, commands/req: {', '.join(f'{c} {v:.2f}' for c, v in sorted(per.items()))}", flush=True)
        if pa is not None and pb is not None:   # the first look-up of each key, and the feed polls meanwhile
            print(f"    PostgreSQL per request (first look-up of each key): {pg_text(per_request(pa, pb, len(keys)))}",
                  flush=True)
    saved = 1 - second / first if first else float("nan")
    checks.append((first > 0 and second == 0,
                   f"shared cache: process A warmed {len(keys)} accounts with {first} upstream calls; process B "
                   f"then made {second} for the same accounts ({saved:.0%} of its calls saved)"))

    # A cold account (neither process has seen it) asked of both processes at the same
    # instant: one fetch, the others wait for it. Reference: another cold account, alone.
    sims.calls(clear=True)
    with httpx.Client(timeout=30) as client:
        client.post(gws[0].url + "/graphql", json={"query": DEEP}, headers={"authorization": f"Bearer {cold[0]}"})
    alone = len(sims.calls(clear=True))
    key = cold[1]
    sims.latency(0.2)   # long enough for the two requests to overlap
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            def one(gw: Gateway) -> int:
                return httpx.post(gw.url + "/graphql", json={"query": DEEP}, timeout=30,
                                  headers={"authorization": f"Bearer {key}"}).status_code
            statuses = list(pool.map(one, [gws[0], gws[1]] * 4))
    finally:
        sims.latency(0.0)
    together = len(sims.calls(clear=True))
    checks.append((together == alone > 0 and all(s == 200 for s in statuses),
                   f"cross-process in-flight dedup: 8 identical cold requests over 2 processes made {together} "
                   f"upstream calls (one request alone: {alone})"))
    return checks, saved, first, second


HEADER = ["topology", "query", "req/s", "req/s per process", "p50 ms", "p99 ms", "bad", "gw CPU ms/req", "gw cores",
          "sims cores", "host busy cores", "redis CPU ms/req", "redis cmds/req", "upstream calls/req", "req/s per gw core"]
PG_HEADER = ["pg xacts/req", "pg rows returned/req", "pg rows fetched/req", "pg CPU ms/req"]


def cluster_nodes(cluster_url: str) -> RedisNodes:
    """Every node of the cluster a seed URL names (the bench measures them all)."""
    from gateway.upstream.redis_client import parse_redis_url
    host, port = parse_redis_url(cluster_url).nodes[0]
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit("bench.scaleout measures Redis nodes on loopback only")
    nodes = redis.Redis(host="127.0.0.1", port=port).execute_command("CLUSTER NODES")   # {"host:port": {...}}
    ports = sorted(int(address.rsplit(":", 1)[1]) for address in nodes)
    return RedisNodes(cluster_url, [(p, 0) for p in ports])


@contextlib.contextmanager
def shared_redis(args: argparse.Namespace) -> Iterator[RedisNodes]:
    if not args.cluster:
        yield SINGLE
    elif args.cluster_url:
        yield cluster_nodes(args.cluster_url)
    else:
        from tests.redis_cluster import open_cluster   # six redis-server processes on loopback
        with open_cluster() as cluster:
            yield cluster_nodes(cluster.url)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32, help="total, split over the wrk processes")
    parser.add_argument("--cluster", action="store_true",
                        help="1, 2 and 4 processes over a Redis Cluster (started on loopback unless --cluster-url)")
    parser.add_argument("--cluster-url", help="redis+cluster://127.0.0.1:PORT of a running cluster (implies --cluster)")
    parser.add_argument("--registry", action=argparse.BooleanOptionalAction, default=None,
                        help="accounts in the account registry on PostgreSQL at 127.0.0.1:5432 "
                             "(default: on with --cluster)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 20 accounts, 2 s runs, 1 and 2 processes only; figures only indicative")
    args = parser.parse_args(argv)
    args.cluster = args.cluster or bool(args.cluster_url)
    if args.registry is None:
        args.registry = args.cluster
    if args.quick:
        args.accounts, args.duration, args.warmup, args.connections = 20, 2.0, 1.0, 8   # wrk takes whole seconds
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not wrk_available():
        print("bench.scaleout needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.cluster and not args.cluster_url and not (shutil.which("redis-server") and shutil.which("redis-cli")):
        print("bench.scaleout --cluster needs redis-server and redis-cli (Debian: redis-server, redis-tools)",
              file=sys.stderr)
        return 2
    with shared_redis(args) as shared:
        if not shared.available():
            print(f"bench.scaleout needs a Redis server at {REDIS_URL}", file=sys.stderr)
            return 2
        if not args.registry:
            return run(args, shared)[0]
        try:
            with registry_database() as pg:
                return run(args, shared, pg)[0]
        except NoPostgres as exc:
            print(f"bench.scaleout --registry needs PostgreSQL with trust auth ({exc})", file=sys.stderr)
            return 2


def run(args: argparse.Namespace, shared: RedisNodes,
        pg: RegistryDatabase | None = None) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
    """(exit status, the figures of each (topology, query))."""
    started = time.monotonic()
    world = build_world(args.accounts + 2)   # the last two: cold accounts for the dedup check
    keys = [gateway_key(f"user-{i:04d}") for i in range(1, args.accounts + 1)]
    cold = [gateway_key(f"user-{i:04d}") for i in (args.accounts + 1, args.accounts + 2)]
    queries = {SMALL_LABEL: (SMALL, True), "all balances, uncached": (ALL_BALANCES, False)}
    if args.cluster:
        topologies = {"1p-cluster": (1, 1, True), "2p-cluster": (2, 1, True), "4p-cluster": (4, 1, True)}
        sharing_topology = "2p-cluster"
    else:
        topologies = {"1p-mem": (1, 1, False), "1p-redis": (1, 1, True), "1p-2w": (1, 2, True), "2p-redis": (2, 1, True)}
        sharing_topology = "2p-redis"
    if args.quick:   # the 1- and 2-process rows, the sharing checks with them
        topologies = {t: v for t, v in topologies.items() if t in ("1p-redis", "2p-redis", "1p-cluster", "2p-cluster")}
    store = None
    if pg is not None:
        pg.populate(config(world, "http://127.0.0.1:1", cache=True, redis=False))
        store = pg.store_block()
    rows: list[list[Any]] = []
    measured: dict[tuple[str, str], dict[str, Any]] = {}
    checks: list[tuple[bool, str]] = []
    saved = float("nan")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scaleout-")))
        sims = Sims(workdir, args.accounts + 2, large=False)
        stack.callback(sims.stop)
        sims.ready(world_digest(world))
        sims.latency(0.0)
        sims.replay(True)   # uncached: the simulators replay memoized bodies (their CPU is not ours)
        where = f"a Redis Cluster of {len(shared.nodes)} nodes" if args.cluster else "Redis"
        if pg is not None:
            where += ", PostgreSQL (the account registry" + (
                ", with pg_stat_statements)" if pg.statements_loaded
                else "; pg_stat_statements is not in its shared_preload_libraries: no per-statement calls)")
        print(f"Balance Gateway scale-out bench: {os.cpu_count()} cores shared by the simulators, every gateway, "
              f"{where} and wrk\n  wrk -t1, {args.connections} connections in all (split over one wrk per process), "
              f"{args.warmup:g} s warm-up + {args.duration:g} s; keys rotate over {args.accounts} accounts", flush=True)
        for topo, (n_procs, workers, uses_redis) in topologies.items():
            if uses_redis:
                shared.flush_bg()
            # One query's processes at a time: the other's would add their CPU and feed polls.
            for label, (query, cached) in queries.items():
                group = [Gateway(f"{topo}-{'c' if cached else 'n'}{i}",
                                 config(world, sims.url, cache=cached, redis=uses_redis, redis_url=shared.url,
                                        store=store), workdir, workers) for i in range(n_procs)]
                try:
                    for gw in group:
                        gw.ready()
                    if cached and topo == sharing_topology:
                        more, saved, _, _ = sharing_checks(group, sims, keys, cold, shared, topo, pg)
                        checks += more
                    elif cached:   # every process: each keeps its own kept responses and memo
                        for gw in group:
                            warm_cache(gw.url, keys)
                    elif pg is not None:   # every process has looked each key up once, as the cached ones have
                        for gw in group:
                            look_up_keys(gw.url, keys)
                    m = measure(group, {"query": query}, keys, args.connections, args.duration, args.warmup,
                                workdir, sims, shared, pg)
                    measured[topo, label] = m
                    per_core = m["rps"] / m["gw_cores"] if m["gw_cores"] else float("nan")
                    row = [topo, label, f"{m['rps']:.0f}", f"{m['rps'] / n_procs:.0f}", f"{m['p50']:.1f}",
                           f"{m['p99']:.1f}", m["bad"],
                           f"{m['gw_ms']:.2f}", f"{m['gw_cores']:.2f}", f"{m['sims_cores']:.2f}", f"{m['host_cores']:.2f}",
                           f"{m['redis_ms']:.3f}" if uses_redis else "-", f"{m['redis_cmds']:.2f}" if uses_redis else "-",
                           f"{m['calls_per_req']:.2f}", f"{per_core:.0f}"]
                    if pg is not None:
                        load = m["pg"]
                        row += [f"{load['xacts']:.3f}", f"{load['returned']:.1f}", f"{load['fetched']:.2f}",
                                f"{load['cpu_ms']:.3f}"]
                    rows.append(row)
                    checks.append((m["bad"] == 0, f"{topo} {label}: {m['bad']} bad responses of {m['requests']}"))
                    print(f"  {topo:10} {label:24} {m['rps']:6.0f} req/s  p50 {m['p50']:6.1f} ms  "
                          f"{m['gw_ms']:.2f} ms CPU/req"
                          + (f"; Redis commands/req: {', '.join(f'{c} {n:.2f}' for c, n in sorted(m['commands'].items()))}"
                             if uses_redis else "")
                          + (f"\n    PostgreSQL per request: {pg_text(m['pg'])}" if pg is not None else ""), flush=True)
                finally:
                    for gw in group:
                        gw.stop()
        shared.flush_bg()

    print()
    header = HEADER + (PG_HEADER if pg is not None else [])
    cells = [header] + rows
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    for i, r in enumerate(cells):
        print("  " + "  ".join(str(c).ljust(w) if j < 2 else str(c).rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    if args.cluster and ("4p-cluster", SMALL_LABEL) in measured:
        for label in queries:
            one, four = measured["1p-cluster", label], measured["4p-cluster", label]
            per_core = [m["rps"] / m["gw_cores"] if m["gw_cores"] else float("nan") for m in (one, four)]
            print(f"\n  {label}: 4 processes against 1 on the same {os.cpu_count()} cores: throughput "
                  f"{four['rps'] / one['rps']:.2f}x, req/s per process {one['rps']:.0f} -> {four['rps'] / 4:.0f}, "
                  f"efficiency per gateway core {per_core[1] / per_core[0]:.0%}; "
                  f"Redis per request {one['redis_ms']:.3f} -> {four['redis_ms']:.3f} ms CPU, "
                  f"{one['redis_cmds']:.2f} -> {four['redis_cmds']:.2f} commands"
                  + (f"; PostgreSQL per request {one['pg']['xacts']:.3f} -> {four['pg']['xacts']:.3f} transactions"
                     if pg is not None else ""), end="")
        print()
    print(f"\n  upstream calls saved by the shared cache across processes: {saved:.0%}")
    print(f"  total bench time {time.monotonic() - started:.0f} s\n\nChecks\n======")
    for ok, what in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    return (0 if all(ok for ok, _ in checks) else 1), measured


if __name__ == "__main__":
    sys.exit(main())
