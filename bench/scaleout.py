"""Scale-out bench: one process, one process with 2 workers, two processes sharing Redis.

    .venv/bin/python -m bench.scaleout      # from the repo root; about 2 minutes on 2 cores

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

Exit status 0 when no run had a bad response and both sharing checks hold.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import CLK_TCK, Gateway, Sims, WrkResult, build_world, cpu_seconds, run_wrk, world_digest, wrk_available
from bench.perf import ALL_BALANCES, DEEP, SMALL, gateway_config, warm_cache
from gateway.simulation.world import World, gateway_key

REDIS_URL = "redis://127.0.0.1:6379/13"


# --------------------------------------------------------------------------- redis

def redis_cli(*args: str) -> str:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-n", "13", *args],
                          capture_output=True, text=True, timeout=30, check=True).stdout


def redis_flush_bg() -> int:
    """Delete every `bg:*` key of db 13 (ours only; other keys are left alone)."""
    keys = [k for k in redis_cli("--scan", "--pattern", "bg:*").split() if k]
    for i in range(0, len(keys), 500):
        redis_cli("del", *keys[i:i + 500])
    return len(keys)


def redis_stats() -> tuple[float, int, dict[str, int]]:
    """(CPU seconds of the Redis server so far, commands processed so far, calls per command)."""
    info = dict(l.split(":", 1) for l in redis_cli("info", "all").splitlines() if ":" in l and not l.startswith("#"))
    cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    by_command = {k.removeprefix("cmdstat_"): int(v.split("calls=", 1)[1].split(",", 1)[0])
                  for k, v in info.items() if k.startswith("cmdstat_")}
    return cpu, int(info["total_commands_processed"]), by_command


def host_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far: shows what else took the cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle + iowait
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def redis_available() -> bool:
    with contextlib.suppress(Exception):
        return redis_cli("ping").strip() == "PONG"
    return False


# --------------------------------------------------------------------------- runs

def config(world: World, sims_url: str, *, cache: bool, redis: bool) -> dict[str, Any]:
    raw = gateway_config(world, sims_url, cache=cache)
    if redis:
        raw["cache"]["redis_url"] = REDIS_URL   # also the rate limiter's and APQ's Redis
    return raw


def measure(gws: list[Gateway], body: dict, keys: list[str], connections: int, seconds: float, warmup: float,
            workdir: Path, sims: Sims) -> dict[str, Any]:
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
    redis0, host0 = redis_stats(), host_busy()
    results = all_at_once(seconds)
    redis1, host1 = redis_stats(), host_busy()
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


def sharing_checks(gws: list[Gateway], sims: Sims, keys: list[str], cold: list[str]) -> tuple[list[tuple[bool, str]], float, int, int]:
    """With Redis, the second process reuses what the first cached, and cold reads are shared."""
    checks = []
    redis_flush_bg()
    sims.calls(clear=True)
    r0 = redis_stats()
    warm_cache(gws[0].url, keys)
    first = len(sims.calls(clear=True))
    r1 = redis_stats()
    warm_cache(gws[1].url, keys)
    second = len(sims.calls(clear=True))
    r2 = redis_stats()
    for what, (a, b) in (("A: miss, upstream read, page written", (r0, r1)), ("B: page read from Redis", (r1, r2))):
        per = {c: (n - a[2].get(c, 0)) / len(keys) for c, n in b[2].items() if n - a[2].get(c, 0) >= len(keys) / 100}
        print(f"  2p-redis warm-up, deep query, process {what}: Redis CPU {(b[0] - a[0]) / len(keys) * 1000:.3f} "
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


HEADER = ["topology", "query", "req/s", "p50 ms", "p99 ms", "bad", "gw CPU ms/req", "gw cores",
          "sims cores", "host busy cores", "redis CPU ms/req", "redis cmds/req", "upstream calls/req", "req/s per gw core"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32, help="total, split over the wrk processes")
    args = parser.parse_args(argv)
    if not wrk_available():
        print("bench.scaleout needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    if not redis_available():
        print(f"bench.scaleout needs a Redis server at {REDIS_URL}", file=sys.stderr)
        return 2

    started = time.monotonic()
    world = build_world(args.accounts + 2)   # the last two: cold accounts for the dedup check
    keys = [gateway_key(f"user-{i:04d}") for i in range(1, args.accounts + 1)]
    cold = [gateway_key(f"user-{i:04d}") for i in (args.accounts + 1, args.accounts + 2)]
    queries = {"small, cached": (SMALL, True), "all balances, uncached": (ALL_BALANCES, False)}
    topologies = {"1p-mem": (1, 1, False), "1p-redis": (1, 1, True), "1p-2w": (1, 2, True), "2p-redis": (2, 1, True)}
    rows: list[list[Any]] = []
    checks: list[tuple[bool, str]] = []
    saved = float("nan")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scaleout-")))
        sims = Sims(workdir, args.accounts + 2, large=False)
        stack.callback(sims.stop)
        sims.ready(world_digest(world))
        sims.latency(0.0)
        sims.replay(True)   # uncached: the simulators replay memoized bodies (their CPU is not ours)
        print(f"Balance Gateway scale-out bench: {os.cpu_count()} cores shared by the simulators, every gateway, "
              f"Redis and wrk\n  wrk -t1, {args.connections} connections in all (split over one wrk per process), "
              f"{args.warmup:g} s warm-up + {args.duration:g} s; keys rotate over {args.accounts} accounts", flush=True)
        for topo, (n_procs, workers, redis) in topologies.items():
            if redis:
                redis_flush_bg()
            gws = {}
            for label, (_, cached) in queries.items():
                gws[label] = [Gateway(f"{topo}-{'c' if cached else 'n'}{i}", config(world, sims.url, cache=cached, redis=redis),
                                      workdir, workers) for i in range(n_procs)]
            try:
                for group in gws.values():
                    for gw in group:
                        gw.ready()
                if topo == "2p-redis":
                    more, saved, _, _ = sharing_checks(gws["small, cached"], sims, keys, cold)
                    checks += more
                else:
                    warm_cache(gws["small, cached"][0].url, keys)
                for label, (query, _) in queries.items():
                    m = measure(gws[label], {"query": query}, keys, args.connections, args.duration, args.warmup,
                                workdir, sims)
                    per_core = m["rps"] / m["gw_cores"] if m["gw_cores"] else float("nan")
                    rows.append([topo, label, f"{m['rps']:.0f}", f"{m['p50']:.1f}", f"{m['p99']:.1f}", m["bad"],
                                 f"{m['gw_ms']:.2f}", f"{m['gw_cores']:.2f}", f"{m['sims_cores']:.2f}", f"{m['host_cores']:.2f}",
                                 f"{m['redis_ms']:.3f}" if redis else "-", f"{m['redis_cmds']:.2f}" if redis else "-",
                                 f"{m['calls_per_req']:.2f}", f"{per_core:.0f}"])
                    checks.append((m["bad"] == 0, f"{topo} {label}: {m['bad']} bad responses of {m['requests']}"))
                    print(f"  {topo:9} {label:24} {m['rps']:6.0f} req/s  p50 {m['p50']:6.1f} ms  "
                          f"{m['gw_ms']:.2f} ms CPU/req"
                          + (f"; Redis commands/req: {', '.join(f'{c} {n:.2f}' for c, n in sorted(m['commands'].items()))}"
                             if redis else ""), flush=True)
            finally:
                for group in gws.values():
                    for gw in group:
                        gw.stop()
        redis_flush_bg()

    print()
    cells = [HEADER] + rows
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(HEADER))]
    for i, r in enumerate(cells):
        print("  " + "  ".join(str(c).ljust(w) if j < 2 else str(c).rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print(f"\n  upstream calls saved by the shared cache across processes: {saved:.0%}")
    print(f"  total bench time {time.monotonic() - started:.0f} s\n\nChecks\n======")
    for ok, what in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
