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

def config(world: World, sims_url: str, *, cache: bool, redis: bool, redis_url: str = REDIS_URL) -> dict[str, Any]:
    raw = gateway_config(world, sims_url, cache=cache)
    if redis:
        raw["cache"]["redis_url"] = redis_url   # also the rate limiter's and APQ's Redis
    return raw


def measure(gws: list[Gateway], body: dict, keys: list[str], connections: int, seconds: float, warmup: float,
            workdir: Path, sims: Sims, shared: RedisNodes = SINGLE) -> dict[str, Any]:
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

    if warmup > 0:
        all_at_once(warmup)
    sims.calls(clear=True)
    cpu0 = sum(cpu_seconds(gw.pid) for gw in gws)
    sims_cpu0 = cpu_seconds(sims.pid)
    redis0, host0 = shared.stats(), host_busy()
    results = all_at_once(seconds)
    redis1, host1 = shared.stats(), host_busy()
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
            "commands": {c: (n - redis0[2].get(c, 0)) / requests for c, n in redis1[2].items()
                         if requests and (n - redis0[2].get(c, 0)) / requests >= 0.01}}


def sharing_checks(gws: list[Gateway], sims: Sims, keys: list[str], cold: list[str],
                   shared: RedisNodes = SINGLE, topo: str = "2p-redis") -> tuple[list[tuple[bool, str]], float, int, int]:
    """With Redis, the second process reuses what the first cached, and cold reads are shared."""
    checks = []
    shared.flush_bg()
    sims.calls(clear=True)
    r0 = shared.stats()
    warm_cache(gws[0].url, keys)
    first = len(sims.calls(clear=True))
    r1 = shared.stats()
    warm_cache(gws[1].url, keys)
    second = len(sims.calls(clear=True))
    r2 = shared.stats()
    for what, (a, b) in (("A: miss, upstream read, page written", (r0, r1)), ("B: page read from Redis", (r1, r2))):
        per = {c: (n - a[2].get(c, 0)) / len(keys) for c, n in b[2].items() if n - a[2].get(c, 0) >= len(keys) / 100}
        print(f"  {topo} warm-up, deep query, process {what}: Redis CPU {(b[0] - a[0]) / len(keys) * 1000:.3f} "
              f"ms/req, commands/req: {', '.join(f'{c} {v:.2f}' for c, v in sorted(per.items()))}", flush=True)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32, help="total, split over the wrk processes")
    parser.add_argument("--cluster", action="store_true",
                        help="1, 2 and 4 processes over a Redis Cluster (started on loopback unless --cluster-url)")
    parser.add_argument("--cluster-url", help="redis+cluster://127.0.0.1:PORT of a running cluster (implies --cluster)")
    args = parser.parse_args(argv)
    args.cluster = args.cluster or bool(args.cluster_url)
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
        return run(args, shared)


def run(args: argparse.Namespace, shared: RedisNodes) -> int:
    started = time.monotonic()
    world = build_world(args.accounts + 2)   # the last two: cold accounts for the dedup check
    keys = [gateway_key(f"user-{i:04d}") for i in range(1, args.accounts + 1)]
    cold = [gateway_key(f"user-{i:04d}") for i in (args.accounts + 1, args.accounts + 2)]
    queries = {"small, cached": (SMALL, True), "all balances, uncached": (ALL_BALANCES, False)}
    if args.cluster:
        topologies = {"1p-cluster": (1, 1, True), "2p-cluster": (2, 1, True), "4p-cluster": (4, 1, True)}
        sharing_topology = "2p-cluster"
    else:
        topologies = {"1p-mem": (1, 1, False), "1p-redis": (1, 1, True), "1p-2w": (1, 2, True), "2p-redis": (2, 1, True)}
        sharing_topology = "2p-redis"
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
        print(f"Balance Gateway scale-out bench: {os.cpu_count()} cores shared by the simulators, every gateway, "
              f"{where} and wrk\n  wrk -t1, {args.connections} connections in all (split over one wrk per process), "
              f"{args.warmup:g} s warm-up + {args.duration:g} s; keys rotate over {args.accounts} accounts", flush=True)
        for topo, (n_procs, workers, uses_redis) in topologies.items():
            if uses_redis:
                shared.flush_bg()
            gws = {}
            for label, (_, cached) in queries.items():
                gws[label] = [Gateway(f"{topo}-{'c' if cached else 'n'}{i}",
                                      config(world, sims.url, cache=cached, redis=uses_redis, redis_url=shared.url),
                                      workdir, workers) for i in range(n_procs)]
            try:
                for group in gws.values():
                    for gw in group:
                        gw.ready()
                if topo == sharing_topology:
                    more, saved, _, _ = sharing_checks(gws["small, cached"], sims, keys, cold, shared, topo)
                    checks += more
                else:   # every process: each keeps its own kept responses and memo
                    for gw in gws["small, cached"]:
                        warm_cache(gw.url, keys)
                for label, (query, _) in queries.items():
                    m = measure(gws[label], {"query": query}, keys, args.connections, args.duration, args.warmup,
                                workdir, sims, shared)
                    measured[topo, label] = m
                    per_core = m["rps"] / m["gw_cores"] if m["gw_cores"] else float("nan")
                    rows.append([topo, label, f"{m['rps']:.0f}", f"{m['rps'] / n_procs:.0f}", f"{m['p50']:.1f}",
                                 f"{m['p99']:.1f}", m["bad"],
                                 f"{m['gw_ms']:.2f}", f"{m['gw_cores']:.2f}", f"{m['sims_cores']:.2f}", f"{m['host_cores']:.2f}",
                                 f"{m['redis_ms']:.3f}" if uses_redis else "-", f"{m['redis_cmds']:.2f}" if uses_redis else "-",
                                 f"{m['calls_per_req']:.2f}", f"{per_core:.0f}"])
                    checks.append((m["bad"] == 0, f"{topo} {label}: {m['bad']} bad responses of {m['requests']}"))
                    print(f"  {topo:10} {label:24} {m['rps']:6.0f} req/s  p50 {m['p50']:6.1f} ms  "
                          f"{m['gw_ms']:.2f} ms CPU/req"
                          + (f"; Redis commands/req: {', '.join(f'{c} {n:.2f}' for c, n in sorted(m['commands'].items()))}"
                             if uses_redis else ""), flush=True)
            finally:
                for group in gws.values():
                    for gw in group:
                        gw.stop()
        shared.flush_bg()

    print()
    cells = [HEADER] + rows
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(HEADER))]
    for i, r in enumerate(cells):
        print("  " + "  ".join(str(c).ljust(w) if j < 2 else str(c).rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    if args.cluster:
        for label in queries:
            one, four = measured["1p-cluster", label], measured["4p-cluster", label]
            per_core = [m["rps"] / m["gw_cores"] if m["gw_cores"] else float("nan") for m in (one, four)]
            print(f"\n  {label}: 4 processes against 1 on the same {os.cpu_count()} cores: throughput "
                  f"{four['rps'] / one['rps']:.2f}x, req/s per process {one['rps']:.0f} -> {four['rps'] / 4:.0f}, "
                  f"efficiency per gateway core {per_core[1] / per_core[0]:.0%}; "
                  f"Redis per request {one['redis_ms']:.3f} -> {four['redis_ms']:.3f} ms CPU, "
                  f"{one['redis_cmds']:.2f} -> {four['redis_cmds']:.2f} commands", end="")
        print()
    print(f"\n  upstream calls saved by the shared cache across processes: {saved:.0%}")
    print(f"  total bench time {time.monotonic() - started:.0f} s\n\nChecks\n======")
    for ok, what in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
