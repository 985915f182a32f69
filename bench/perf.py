"""Performance bench: upstream calls per request, fan-out latency, gateway overhead, throughput
(vs a bare endpoint and vs Hive Gateway, side by side in the same run), and a 10,000-holding account.

    .venv/bin/python -m bench.perf          # from the repo root; about 7 minutes on 2 cores
    .venv/bin/python -m bench.perf --quick  # a smoke run (~2 minutes), figures only indicative

Topology (all on loopback, each in its own OS process, so no two share a GIL):
  * simulators: `python -m bench.sims` (the five upstream simulators in one uvicorn server,
    steered over HTTP: latency, call log with monotonic timestamps, counters);
  * gateways: `python -m gateway serve --config <tmp>/<name>.toml` (cache off / cache on /
    the large account; `--workers 2` variants when the CLI has that option);
  * ceiling: `python -m bench.ceiling`, a bare Starlette endpoint returning the same JSON;
  * Hive Gateway and its five fakes (bench/hive/, bench/hive_gateway.py), for phase 5 only;
  * load: `wrk` (Debian package) with a generated Lua script for the POST body and keys;
    latency phases use httpx from this process, one request at a time.
The machine has 2 cores: during throughput runs the gateway, the simulators and wrk share
them; each run prints how much CPU each process used.

Exit status: 0 when the correctness checks hold (one upstream call per source, identity
and page; no errors in measured responses); performance targets are reported, not enforced.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from bench.common import (LARGE, LARGE_SIZES, Call, Gateway, Proc, RawHTTP, Sims, WrkResult, build_world, histogram_buckets,
                          histogram_quantile, memory_kib, percentile, run_wrk, supports_workers, upstream_histogram,
                          world_digest, wrk_available)
from bench import hive_gateway
from gateway.sources.catalog import Source
from gateway.simulation.world import DEMO_KEY, World, gateway_key

ADMIN_KEY = "bench-admin"
OVERHEAD_METRIC = "balance_gateway_overhead_seconds"

SMALL = "query Small { viewer { id totalValue { value { amount currency } complete } } }"
SHALLOW = ("query Shallow { viewer { id totalValue { value { amount currency } complete } "
           "sources { source state upstreamCalls } } }")
# wallets -> holdings -> token, positions, totals, sources: everything a naive resolver
# would turn into a call per field; the gateway must still read each page once.
DEEP_FRAGMENT = """
fragment Deep on Account {
  id
  totalValue { value { amount currency } complete unpricedHoldings failedSources }
  sources { source state upstreamCalls fromCache }
  wallets {
    id source kind label
    totalValue { value { amount currency } }
    holdings(first: 200) { totalCount nodes { id amount precision value { amount }
                                              token { id symbol decimals chain { id } asset { key } } } }
  }
  holdings(first: 200) {
    totalCount
    edges { cursor node { id source amount amountRaw value { amount currency } price { unit reliability }
                          token { id symbol } wallet { id } } }
  }
  positions(groupBy: ASSET, first: 50) { totalCount nodes { key amount share value { amount currency }
                                                           holdings { id } } }
  bySource: positions(groupBy: SOURCE) { nodes { key value { amount } } }
}
"""
DEEP = "query Deep { viewer { ...Deep } }\n" + DEEP_FRAGMENT
ACCOUNT_DEEP = "query AccountDeep($id: ID!) { account(id: $id) { ...Deep } }\n" + DEEP_FRAGMENT
ACCOUNTS_DEEP = "query AccountsDeep($ids: [ID!]!) { accounts(ids: $ids) { ...Deep } }\n" + DEEP_FRAGMENT
# "All balances of one account from all five upstreams in one request" (the Hive comparison).
ALL_BALANCES = ("query AllBalances { viewer { id sources { source state } holdings(first: 200) "
                "{ totalCount nodes { source amount token { id symbol } wallet { id } } } } }")
# Every field of all five sources in one request, the shape of Hive Gateway's query
# (bench/hive/query.graphql): every field of every holding, its token and wallet, every status.
ALL_FIELDS_NAME = "AllFields"
SIMULATED_ROWS = 8   # holdings a source of each simulated account has (World.generate's size)
ALL_FIELDS = """query AllFields { viewer { id
  sources { source state fetchedAt fromCache upstreamCalls breaker error { code message } warnings { code message } }
  holdings(first: 200) { totalCount nodes {
    id source amount amountRaw precision available locked pending staked updatedAt
    price { unit currency reliability source } value { amount currency }
    asset { key symbol name }
    token { id assetType symbol name decimals address chain { id name isTestnet } }
    wallet { id source kind provider address addressHint label chain { id name isTestnet } } } } } }"""


# --------------------------------------------------------------------------- results

@dataclass
class Row:
    figure: str
    target: str
    measured: str
    status: str   # met / MISSED / info / n/a


@dataclass
class Bench:
    args: argparse.Namespace
    world: World
    workdir: Path
    sims: Sims
    gateways: dict[str, Gateway]
    rows: list[Row] = field(default_factory=list)
    checks: list[tuple[bool, str]] = field(default_factory=list)
    hive_ratio: float | None = None   # ours / Hive Gateway req/s, many users (phase 5)

    def row(self, figure: str, target: str, measured: str, met: bool | None) -> None:
        status = "info" if met is None else ("met" if met else "MISSED")
        self.rows.append(Row(figure, target, measured, status))

    def check(self, ok: bool, what: str) -> None:
        self.checks.append((ok, what))
        if not ok:
            print(f"  !! check failed: {what}")


def heading(title: str, params: str) -> None:
    print(f"\n{title}\n{'=' * len(title)}\n{params}\n", flush=True)


def table(header: list[str], rows: list[list[Any]], *, text: bool = False) -> None:
    """Numbers right-aligned; `text`: every column left-aligned."""
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) if j == 0 or text else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.1f}"
    return str(value)


# --------------------------------------------------------------------------- requests

def post(client: httpx.Client, query: str, key: str, variables: dict[str, Any] | None = None) -> tuple[float, float, dict]:
    """(monotonic start, end, body) of one request; raises on a non-200."""
    started = time.monotonic()
    response = client.post("/graphql", json={"query": query, "variables": variables or {}},
                           headers={"authorization": f"Bearer {key}"})
    ended = time.monotonic()
    response.raise_for_status()
    return started, ended, response.json()


def accounts_of(body: dict) -> list[dict]:
    data = body.get("data") or {}
    value = next(iter(data.values()), None)
    if isinstance(value, list):
        return [a for a in value if a]
    return [value] if value else []


def status_calls(body: dict) -> dict[str, int]:
    """Upstream calls per source as the response's own `sources { upstreamCalls }` says."""
    calls = {s.value: 0 for s in Source}
    for account in accounts_of(body):
        for status in account.get("sources", []):
            calls[status["source"]] += status["upstreamCalls"]
    return calls


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals: the time at least one upstream was busy."""
    total, end = 0.0, -math.inf
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


# --------------------------------------------------------------------------- 1. N+1

def phase_n_plus_one(b: Bench) -> None:
    gw, sims = b.gateways["nocache"], b.sims
    sims.reset()
    sims.replay(False)
    ids = [f"user-{i:04d}" for i in range(1, 11)]
    cases: list[tuple[str, str, str, dict | None]] = [
        ("shallow viewer", SHALLOW, DEMO_KEY, None),
        ("deep viewer", DEEP, DEMO_KEY, None),
        ("deep accounts(10 ids)", ACCOUNTS_DEEP, ADMIN_KEY, {"ids": ids}),
    ]
    results: dict[str, tuple[dict, list[Call]]] = {}
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        for label, query, key, variables in cases:
            sims.calls(clear=True)
            _, _, body = post(client, query, key, variables)
            results[label] = (body, sims.calls(clear=True))
        # Each of the ten accounts alone: the batch must cost exactly their sum.
        alone_total = 0
        for account_id in ids:
            _, _, body = post(client, ACCOUNT_DEEP, ADMIN_KEY, {"id": account_id})
            alone_total += len(sims.calls(clear=True))

    heading("1. Upstream calls per request (N+1)",
            "Cache off, no latency. `calls` = requests the simulators served during the one GraphQL request; "
            "`distinct` = distinct (source, page, identity) among them;\n`statuses` = the response's own "
            "sources { upstreamCalls }. One call per (source, identity, page) means calls = distinct = statuses.")
    rows = []
    for label, (body, calls) in results.items():
        by_source = status_calls(body)
        for source in Source:
            mine = [c for c in calls if c.source == source.key]
            rows.append([label, source.value, len(mine), len({c.key for c in mine}), by_source[source.value]])
    table(["query", "source", "calls", "distinct", "statuses"], rows)

    for label, (body, calls) in results.items():
        errors = body.get("errors")
        distinct = len({c.key for c in calls})
        statuses = sum(status_calls(body).values())
        ok = not errors and len(calls) == distinct == statuses and distinct > 0
        extra = ""
        if label.startswith("deep accounts"):
            ok = ok and len(calls) == alone_total
            extra = f"; = sum of the 10 accounts alone ({alone_total})"
        if label == "deep viewer":
            ok = ok and len(calls) == len(results["shallow viewer"][1])
            extra = "; = shallow"
        b.check(ok, f"N+1 {label}: {len(calls)} calls, {distinct} distinct, statuses say {statuses}"
                    f"{extra}{', errors: ' + str(errors) if errors else ''}")
        b.row(f"N+1: {label}, upstream calls", "1 per (source, identity, page)",
              f"{len(calls)} calls, {len(calls) - distinct} repeated, statuses {statuses}{extra}", ok)


# --------------------------------------------------------------------------- 2. fan-out and overhead

def phase_fanout(b: Bench) -> None:
    gw, sims = b.gateways["nocache"], b.sims
    latency = b.args.latency_ms / 1000
    n = b.args.fanout_requests
    sims.replay(False)
    samples: dict[float, list[tuple[float, float]]] = {}
    with RawHTTP(gw.url) as client:
        request = client.post_bytes("/graphql", json.dumps({"query": DEEP, "variables": {}}).encode(),
                                    {"authorization": f"Bearer {DEMO_KEY}"})

        def send() -> tuple[float, float, dict[str, Any]]:
            t0, t1, status, raw = client.roundtrip(request)
            if status != 200:
                raise RuntimeError(f"fan-out: HTTP {status}: {raw[:200]!r}")
            return t0, t1, json.loads(raw)
        for lat in (0.0, latency):
            sims.latency(lat)
            for _ in range(3):                 # warm connections to the simulators
                send()
            sims.calls(clear=True)
            text = gw.metrics_text()
            before, overhead_before = upstream_histogram(text), histogram_buckets(text, OVERHEAD_METRIC)
            runs = []
            for _ in range(n):
                t0, t1, body = send()
                if body.get("errors"):
                    b.check(False, f"fan-out: errors in a response: {body['errors'][:1]}")
                runs.append((t0, t1))
            text = gw.metrics_text()
            after = upstream_histogram(text)
            samples[lat] = runs
            if lat == latency:
                calls = sims.calls(clear=True)
                loaded = (after[0] - before[0], after[1] - before[1])
                apollo = [histogram_quantile(overhead_before, histogram_buckets(text, OVERHEAD_METRIC), q) * 1000
                          for q in (0.5, 0.99)]
    sims.latency(0.0)

    total_ms = [(t1 - t0) * 1000 for t0, t1 in samples[latency]]
    base_ms = [(t1 - t0) * 1000 for t0, t1 in samples[0.0]]
    overhead_ms, longest_ms, per_request, before_ms, after_ms = [], [], [], [], []
    for t0, t1 in samples[latency]:
        mine = [c for c in calls if t0 <= c.start <= t1]
        per_request.append(len(mine))
        busy = union_seconds([(c.start, c.end) for c in mine])
        overhead_ms.append((t1 - t0 - busy) * 1000)
        longest_ms.append(max((c.end - c.start for c in mine), default=0.0) * 1000)
        if mine:   # where the overhead sits: before the first upstream call, after the last answer
            before_ms.append((min(c.start for c in mine) - t0) * 1000)
            after_ms.append((t1 - max(c.end for c in mine)) * 1000)
    sim_side_ms = sum(c.end - c.start for c in calls) / len(calls) * 1000 if calls else float("nan")
    gw_side_ms = loaded[0] / loaded[1] * 1000 if loaded[1] else float("nan")

    heading("2. Fan-out latency and gateway overhead",
            f"Deep `viewer` query (demo account), cache off, {n} sequential requests on one keep-alive connection.\n"
            f"Every simulator adds the same latency L; the gateway calls them in parallel, so the ideal is ~L.\n"
            f"overhead = request time - time during which at least one upstream was busy serving it (the union of the\n"
            f"simulators' own handling intervals, monotonic clock shared across processes; Apollo Router's\n"
            f"apollo.router.overhead definition). The gateway's HTTP client and loopback count as overhead.")
    p50, p99 = percentile(total_ms, 0.5), percentile(total_ms, 0.99)
    table(["case", "n", "p50 ms", "p99 ms", "max ms"],
          [["deep, L = 0", len(base_ms), percentile(base_ms, 0.5), percentile(base_ms, 0.99), max(base_ms)],
           [f"deep, L = {b.args.latency_ms:g} ms", len(total_ms), p50, p99, max(total_ms)],
           ["  longest single upstream call", len(longest_ms), percentile(longest_ms, 0.5),
            percentile(longest_ms, 0.99), max(longest_ms)],
           ["  overhead (total - upstream busy)", len(overhead_ms), percentile(overhead_ms, 0.5),
            percentile(overhead_ms, 0.99), max(overhead_ms)],
           ["    of which before the first upstream call", len(before_ms), percentile(before_ms, 0.5),
            percentile(before_ms, 0.99), max(before_ms, default=float("nan"))],
           ["    of which after the last upstream answer", len(after_ms), percentile(after_ms, 0.5),
            percentile(after_ms, 0.99), max(after_ms, default=float("nan"))],
           ["  overhead as the gateway measures it (/metrics)", n, apollo[0], apollo[1], float("nan")]])
    print(f"\n  upstream calls per request: {min(per_request)}..{max(per_request)}; one upstream call lasts "
          f"{sim_side_ms:.1f} ms inside the simulator, {gw_side_ms:.1f} ms as the gateway times it (/metrics)\n"
          f"  -> {gw_side_ms - sim_side_ms:.1f} ms per call for the gateway's HTTP client + loopback + simulator's HTTP layer\n"
          f"  The gateway's own figure ({OVERHEAD_METRIC}, interpolated in its buckets) counts its HTTP client as\n"
          f"  upstream wait, as Apollo Router does, and starts at its gate (not at the bench's socket): it is lower.")
    target = b.args.latency_ms + 10
    b.row(f"Fan-out: deep query p50, all upstreams L={b.args.latency_ms:g} ms", f"p50 <= {target:g} ms",
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (L=0: p50 {percentile(base_ms, 0.5):.1f})", p50 <= target)
    ov50, ov99 = percentile(overhead_ms, 0.5), percentile(overhead_ms, 0.99)
    b.row("Gateway overhead (total - upstream busy), deep", "p50 <= 10 ms (the L+10 budget)",
          f"p50 {ov50:.1f} ms, p99 {ov99:.1f} ms (the gateway's /metrics: p50 {apollo[0]:.1f}, p99 {apollo[1]:.1f})",
          ov50 <= 10)


# --------------------------------------------------------------------------- 3. large account

def large_run(b: Bench, gw: Gateway, *, cached: bool = True) -> dict[str, Any]:
    """One deep query that reads the upstreams, then sequential ones (from the cache when `cached`)."""
    sims, key = b.sims, gateway_key(LARGE)
    rss_start = memory_kib(gw.pid, "VmRSS")
    hits: list[float] = []
    with httpx.Client(base_url=gw.url, timeout=120) as client:
        sims.calls(clear=True)
        t0, t1, body = post(client, DEEP, key)
        miss_ms = (t1 - t0) * 1000
        miss_calls = len(sims.calls(clear=True))
        rss_first = memory_kib(gw.pid, "VmRSS")
        deadline = time.monotonic() + b.args.large_seconds
        hit_cached = True
        while len(hits) < b.args.large_requests and time.monotonic() < deadline:
            t0, t1, hit = post(client, DEEP, key)
            hits.append((t1 - t0) * 1000)
            if hit.get("errors"):
                b.check(False, f"large account ({gw.name}): errors {hit['errors'][:1]}")
            hit_cached &= all(s["fromCache"] for s in accounts_of(hit)[0]["sources"] if s["state"] != "NOT_CONFIGURED")
        hit_calls = len(sims.calls(clear=True))
    if cached:
        b.check(hit_calls == 0 and hit_cached, f"large account ({gw.name}): cached requests made {hit_calls} upstream calls")
    else:
        b.check(hit_calls == miss_calls * len(hits),
                f"large account ({gw.name}): {hit_calls} upstream calls for {len(hits)} uncached requests "
                f"of {miss_calls} each")
    return {"body": body, "miss_ms": miss_ms, "miss_calls": miss_calls, "hits": hits, "rss_start": rss_start,
            "rss_first": rss_first, "rss_end": memory_kib(gw.pid, "VmRSS"), "hwm": memory_kib(gw.pid, "VmHWM")}


def phase_large(b: Bench) -> None:
    b.sims.latency(0.0)
    b.sims.replay(False)
    runs = {name: large_run(b, b.gateways[name], cached=name != "large-nocache")
            for name in ("large", "large-memo", "large-nocache")}
    kept, memo, fresh = runs["large"], runs["large-memo"], runs["large-nocache"]
    account = accounts_of(kept["body"])[0]
    holdings = account["holdings"]["totalCount"]
    wallets = len(account["wallets"])
    size_kib = len(json.dumps(kept["body"])) / 1024
    states = {s["source"]: s["state"] for s in account["sources"]}
    b.check(all(v in ("OK", "PARTIAL") for v in states.values()), f"large account: source states {states}")
    for name in ("large-memo", "large-nocache"):
        b.check(accounts_of(runs[name]["body"])[0]["holdings"] == account["holdings"],
                f"large account: {name} answers the same holdings as large")
    sizes = ", ".join(f"{s.display} {n}" for s, n in LARGE_SIZES.items())

    heading("3. Large account",
            f"Account `{LARGE}`: {holdings} holdings in {wallets} wallets (sizes asked of the simulators: {sizes}; "
            f"Calico's 100 is its one-call maximum,\nDALP's are token rows, most split over two wallets). Deep "
            f"`viewer` query, holdings(first: 200); response {size_kib:.0f} KiB.\nEach gateway: one request that "
            f"reads the upstreams ({kept['miss_calls']} calls), then up to {b.args.large_requests} sequential "
            f"identical ones.\n`large` (default config) answers them with its kept response "
            f"(gateway/policy/kept_responses.py); `large-memo` has kept responses off, so it executes each\none "
            f"from its memo of normalized reads (valuing, GraphQL execution and serializing every time); "
            f"`large-nocache` has the cache off:\nevery request reads and normalizes every page again. "
            f"Memory: each gateway process's RSS (VmRSS / VmHWM).")
    rows = []
    for name, run in runs.items():
        hits = run["hits"]
        rows.append([f"{name}: first (upstreams read)", 1, run["miss_ms"], run["miss_ms"], run["miss_ms"]])
        rows.append([f"{name}: {'from cache' if name != 'large-nocache' else 'each read again'}", len(hits),
                     percentile(hits, 0.5), percentile(hits, 0.99), max(hits)])
    table(["case", "n", "p50 ms", "p99 ms", "max ms"], rows)
    print(f"\n  source states: {states}")
    for name, run in runs.items():
        print(f"  {name}: RSS at start {run['rss_start'] / 1024:.0f} MiB, after the first request "
              f"{run['rss_first'] / 1024:.0f} MiB, at the end {run['rss_end'] / 1024:.0f} MiB, peak {run['hwm'] / 1024:.0f} MiB")
    p50, p99 = percentile(kept["hits"], 0.5), percentile(kept["hits"], 0.99)
    m50, m99 = percentile(memo["hits"], 0.5), percentile(memo["hits"], 0.99)
    f50, f99 = percentile(fresh["hits"], 0.5), percentile(fresh["hits"], 0.99)
    b.row(f"Large account ({holdings} holdings), deep query executed (no kept response)",
          "p50 <= 200 ms, peak RSS <= 300 MiB",
          f"from the memo: p50 {m50:.0f} ms, p99 {m99:.0f} ms, peak RSS {memo['hwm'] / 1024:.0f} MiB",
          m50 <= 200 and memo["hwm"] <= 300 * 1024)
    b.row("  the same, every page read again (cache off)", "report",
          f"p50 {f50:.0f} ms, p99 {f99:.0f} ms, peak RSS {fresh['hwm'] / 1024:.0f} MiB "
          f"(RSS {fresh['rss_first'] / 1024:.0f} MiB after the first request, {fresh['rss_end'] / 1024:.0f} at the end)",
          None)
    b.row("  the same, kept response (default config)", "report",
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (first {kept['miss_ms']:.0f} ms), peak RSS {kept['hwm'] / 1024:.0f} MiB",
          None)


# --------------------------------------------------------------------------- 4. throughput

def warm_cache(url: str, keys: list[str], query: str = DEEP) -> None:
    """Every caller's upstream answers into the gateway's cache (the deep query reads them all)."""
    async def run() -> None:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            sem = asyncio.Semaphore(8)

            async def one(key: str) -> None:
                async with sem:
                    r = await client.post("/graphql", json={"query": query}, headers={"authorization": f"Bearer {key}"})
                    r.raise_for_status()
            await asyncio.gather(*(one(k) for k in keys))
    asyncio.run(run())


def load(b: Bench, label: str, proc: Proc, query: str, keys: list[str], connections: int,
         watch: dict[str, int] | None = None) -> WrkResult:
    body = {"query": query}
    watch = watch or {"gateway": proc.pid, "sims": b.sims.pid}
    if b.args.warmup > 0:
        run_wrk(proc.url, body, keys, connections=connections, seconds=b.args.warmup, workdir=b.workdir, watch=watch)
    result = run_wrk(proc.url, body, keys, connections=connections, seconds=b.args.duration,
                     workdir=b.workdir, watch=watch)
    b.check(result.bad == 0 and result.socket_errors == 0,
            f"throughput {label}: {result.bad} bad responses, {result.socket_errors} socket errors")
    return result


THROUGHPUT_HEADER = ["run", "req/s", "p50 ms", "p99 ms", "requests", "bad", "gateway CPU ms/req",
                     "gateway CPU", "sims CPU", "wrk CPU"]


def throughput_cpu_ms(r: WrkResult) -> float:
    return r.cpu.get("gateway", 0) * r.seconds / r.requests * 1000 if r.requests else float("nan")


def throughput_row(label: str, r: WrkResult) -> list[Any]:
    # CPU per request is the steadiest figure on a noisy machine: it does not depend on how
    # much CPU the other processes happened to leave the gateway.
    cpu_ms = r.cpu.get("gateway", 0) * r.seconds / r.requests * 1000 if r.requests else float("nan")
    return [label, f"{r.rps:.0f}", r.p50_ms, r.p99_ms, r.requests, r.bad + r.socket_errors, f"{cpu_ms:.2f}",
            f"{r.cpu.get('gateway', 0) * 100:.0f}%", f"{r.cpu.get('sims', 0) * 100:.0f}%", f"{r.cpu.get('wrk', 0) * 100:.0f}%"]


def phase_throughput(b: Bench) -> None:
    keys = [gateway_key(f"user-{i:04d}") for i in range(1, b.args.accounts + 1)]
    c = b.args.connections
    b.sims.latency(0.0)
    b.sims.replay(not b.args.no_replay)
    workers = [1] + ([2] if "cache-w2" in b.gateways else [])
    for w in workers:
        warm_cache(b.gateways["cache" if w == 1 else "cache-w2"].url, keys)
    warm_cache(b.gateways["cache-memo"].url, keys)

    # The ceiling answers with the small query's own response body.
    with httpx.Client(base_url=b.gateways["cache"].url, timeout=30) as client:
        _, _, small_body = post(client, SMALL, keys[0])
    body_file = b.workdir / "small-response.json"
    body_file.write_bytes(json.dumps(small_body).encode())
    ceiling = Proc("ceiling", [sys.executable, "-m", "bench.ceiling", "--port", "{port}", "--body-file", str(body_file)],
                   b.workdir)
    try:
        ceiling.wait_ready("/health")
        results: dict[str, WrkResult] = {}
        results["ceiling"] = load(b, "ceiling", ceiling, SMALL, keys, c)   # right before its comparison
        for w in workers:
            suffix = "" if w == 1 else "-w2"
            for query_name, query in (("small", SMALL), ("deep", DEEP)):
                for cached in (True, False):
                    gw = b.gateways[("cache" if cached else "nocache") + suffix]
                    label = f"{query_name}, {'cached' if cached else 'uncached'}, {w} worker{'s' * (w > 1)}"
                    results[label] = load(b, label, gw, query, keys, c)
                if w == 1:
                    label = f"{query_name}, cached, memo only, 1 worker"
                    results[label] = load(b, label, b.gateways["cache-memo"], query, keys, c)
    finally:
        ceiling.stop()

    heading("4. Throughput",
            f"wrk -t1 -c{c} -d{b.args.duration:g}s (after a {b.args.warmup:g} s warm-up run), POST /graphql, "
            f"keys rotating over {len(keys)} accounts (so uncached requests share no upstream read).\n"
            f"cached: upstream answers in the gateway's cache (TTL 1 h, warmed first), identical requests answered with "
            f"the kept response;\nmemo only: the same with kept responses off (every request executed from the memo of "
            f"normalized reads); uncached: cache off, "
            f"simulators answer at once{' (replaying memoized bodies: their CPU is not ours in production)' if not b.args.no_replay else ''}.\n"
            f"ceiling: bare Starlette endpoint returning the small query's response, same uvicorn settings.\n"
            f"CPU columns: CPU time the gateway process(es) spent per request, and the share of one core each\n"
            f"process used during the run (2 cores in all).")
    table(THROUGHPUT_HEADER, [throughput_row(k, v) for k, v in results.items()])
    if len(workers) == 1:
        print("\n  2 workers: not measured (`gateway serve` has no --workers option yet)")

    ceiling_rps = results["ceiling"].rps
    small_cached = results["small, cached, 1 worker"].rps
    share = small_cached / ceiling_rps if ceiling_rps else 0.0
    b.row("Throughput: ceiling (bare Starlette, same JSON)", "report", f"{ceiling_rps:.0f} req/s", None)
    for label, r in results.items():
        if label == "ceiling":
            continue
        if label == "small, cached, 1 worker":
            memo = results["small, cached, memo only, 1 worker"].rps
            b.row(f"Throughput: {label}", ">= 20% of ceiling",
                  f"{r.rps:.0f} req/s = {share:.0%} of ceiling (memo only: {memo:.0f} = "
                  f"{memo / ceiling_rps if ceiling_rps else 0:.0%})", share >= 0.2)
        else:
            b.row(f"Throughput: {label}", "report", f"{r.rps:.0f} req/s (p50 {r.p50_ms:.0f} ms)", None)
    if len(workers) == 1:
        b.row("Throughput: 2 workers", "report", "not measured: no `serve --workers` yet", None)


# --------------------------------------------------------------------------- 5. against Hive Gateway

def phase_alternative(b: Bench) -> None:
    """Both gateways in this run, on the same query shape, interleaved: ours, Hive, ours, Hive."""
    b.sims.latency(0.0)
    b.sims.replay(not b.args.no_replay)
    title = "5. Against Hive Gateway, side by side in this run"
    reason = hive_gateway.install()
    hive = None
    if reason is None:
        hive = hive_gateway.Hive(b.workdir, b.args.accounts, b.args.hive_rows)
        try:
            hive.start()
        except Exception as exc:   # noqa: BLE001 - a peer that does not start is reported, not fatal
            reason = f"Hive Gateway did not start: {exc}"[:600]
            hive.stop()
            hive = None
    if hive is None:
        heading(title, f"not measured: {reason}")
        b.row("vs Hive Gateway", "many users >= 1.0x", f"not measured: {reason}", None)
        return
    try:
        verified, detail, expected = hive.verify()
        b.check(verified, f"Hive Gateway answers every source's values ({detail})")
        ours_gw = b.gateways["nocache-solo"]
        ours_keys = [gateway_key(f"user-{i:04d}") for i in range(1, b.args.accounts + 1)]
        hive_keys = hive_gateway.user_keys(b.args.accounts)
        hive_watch = {"gateway": hive.pid} | hive.fake_pids()
        ours_watch = {"gateway": ours_gw.pid, "sims": b.sims.pid}
        c = 32
        # Hive's JIT and our caches of parsed documents warm up before anything is measured.
        run_wrk(hive.url, hive_gateway.BODY, hive_keys, connections=c, seconds=max(3.0, b.args.warmup),
                workdir=b.workdir, watch=hive_watch, also_header=hive_gateway.USER_HEADER)
        run_wrk(ours_gw.url, {"query": ALL_FIELDS}, ours_keys, connections=c, seconds=max(3.0, b.args.warmup),
                workdir=b.workdir, watch=ours_watch)
        hive.distinct_credentials(clear=True)
        workloads = {"many users": (ours_keys, hive_keys), "same account": ([DEMO_KEY], hive_keys[:1])}
        results: dict[tuple[str, str], list[WrkResult]] = {}
        for _ in range(b.args.rounds):
            for workload, (ours, theirs) in workloads.items():
                results.setdefault(("ours", workload), []).append(
                    load(b, f"ours, {workload}", ours_gw, ALL_FIELDS, ours, c, watch=ours_watch))
                results.setdefault(("hive", workload), []).append(
                    load_body(b, f"Hive Gateway, {workload}", hive.url, hive_gateway.BODY, theirs, c, hive_watch,
                              expected))
        credentials = hive.distinct_credentials()
        b.check(min(credentials.values()) >= len(hive_keys),
                f"Hive Gateway sent each fake {min(credentials.values())}..{max(credentials.values())} distinct "
                f"credentials ({len(hive_keys)} users)")
    finally:
        hive.stop()

    heading(title,
            f"Every field of all five sources in one request (ours: {ALL_FIELDS_NAME}, every field of every holding, "
            f"its token and wallet, and every source's status;\nHive: bench/hive/query.graphql, every field of each "
            f"source's response). One process each, wrk -t1 -c{c}, {b.args.rounds} alternating runs of "
            f"{b.args.duration:g} s per row\n(ours, Hive, ours, Hive ...; the table sums them; the ratio is the median of the rounds' ratios). Ours: no response "
            f"cache, no upstream cache, no coalescing (nocache-solo); Hive Gateway 2.15.1: default settings.\n"
            f"many users: a different account on every request, {b.args.accounts} in turn: ours with each account's "
            f"own upstream credentials from its config,\nHive with `user-N` in Authorization and xuser forwarded into "
            f"the upstream calls ({{context.headers.*}} in bench/hive/mesh.config.ts).\n"
            f"same account: every request the same account (upstream reads in flight shared on both sides).\n"
            f"Upstreams answer at once: our simulators (~8 holdings a source, ~40 an account; replayed bodies), "
            f"Hive's stdlib fakes ({b.args.hive_rows or 'the documents examples, 1-5'} rows a source, the same for every user).")
    rows, rps = [], {}
    for (side, workload), runs in results.items():
        merged = merge(runs)
        rps[side, workload] = merged.rps
        rows.append(throughput_row(f"{'ours' if side == 'ours' else 'Hive Gateway'}, {workload}", merged))
    table(THROUGHPUT_HEADER, rows)
    # The ratio of a run: the median of the rounds' ratios, each of two runs next to each other
    # (the load other processes put on the shared cores changes from one minute to the next).
    print()
    ratios = {}
    for workload in workloads:
        pairs = [o.rps / h.rps for o, h in zip(results["ours", workload], results["hive", workload]) if h.rps]
        ratios[workload] = statistics.median(pairs) if pairs else float("nan")
        cpu = [throughput_cpu_ms(merge(results[side, workload])) for side in ("ours", "hive")]
        print(f"  {workload}: ours / Hive req/s per round {' '.join(f'{r:.2f}' for r in pairs)} -> median "
              f"{ratios[workload]:.2f}x; CPU per request ours {cpu[0]:.2f} ms, Hive {cpu[1]:.2f} ms "
              f"(Hive / ours {cpu[1] / cpu[0] if cpu[0] else float('nan'):.2f}x)")
        b.row(f"vs Hive Gateway, {workload} (c=32, nothing cached or coalesced)",
              ">= 1.0x (goal 2x)" if workload == "many users" else "report",
              f"{rps['ours', workload]:.0f} / {rps['hive', workload]:.0f} req/s; median of {len(pairs)} rounds "
              f"{ratios[workload]:.2f}x; CPU ms/req {cpu[0]:.2f} / {cpu[1]:.2f}",
              ratios[workload] >= 1.0 if workload == "many users" else None)
    b.hive_ratio = ratios["many users"]


def load_body(b: Bench, label: str, url: str, body: dict[str, Any], keys: list[str], connections: int,
              watch: dict[str, int], expected: bytes) -> WrkResult:
    """`load` for the peer: its own body, the key also in the harness's user header, and every
    response byte-identical to the verified one (its fakes answer every user alike)."""
    if b.args.warmup > 0:
        run_wrk(url, body, keys, connections=connections, seconds=b.args.warmup, workdir=b.workdir, watch=watch,
                also_header=hive_gateway.USER_HEADER, expected=expected)
    result = run_wrk(url, body, keys, connections=connections, seconds=b.args.duration, workdir=b.workdir,
                     watch=watch, also_header=hive_gateway.USER_HEADER, expected=expected)
    result.cpu["sims"] = sum(v for k, v in result.cpu.items() if k.startswith("fake "))   # the five fakes
    b.check(result.bad == 0 and result.socket_errors == 0,
            f"throughput {label}: {result.bad} bad responses, {result.socket_errors} socket errors")
    return result


def merge(runs: list[WrkResult]) -> WrkResult:
    """Several runs of one row as one: requests and seconds summed, latencies and CPU shares
    weighted by duration (the p50/p99 so merged approximate the runs' own)."""
    seconds = sum(r.seconds for r in runs)
    weigh = lambda get: sum(get(r) * r.seconds for r in runs) / seconds   # noqa: E731
    labels = {k for r in runs for k in r.cpu}
    return WrkResult(requests=sum(r.requests for r in runs), seconds=seconds, p50_ms=weigh(lambda r: r.p50_ms),
                     p99_ms=weigh(lambda r: r.p99_ms), max_ms=max(r.max_ms for r in runs),
                     bad=sum(r.bad for r in runs), socket_errors=sum(r.socket_errors for r in runs),
                     cpu={k: weigh(lambda r: r.cpu.get(k, 0.0)) for k in labels})


# --------------------------------------------------------------------------- main

def gateway_config(world: World, sims_url: str, *, cache: bool, keep: bool = True, coalesce: bool = True) -> dict[str, Any]:
    """`keep`: whole responses kept for identical requests (gateway/policy/kept_responses.py); off, a cached
    request is still answered from the memo of normalized reads but executed every time.
    `coalesce`: identical requests in flight together execute once (gateway/policy/response_reuse.py)."""
    raw = world.config_dict(
        sims_url, server={"request_deadline_s": 10.0, "coalesce_identical": coalesce},
        cache={"enabled": cache, "responses": keep},
        auth={"admin_keys": [ADMIN_KEY]},
        # The bench is one client at thousands of requests/s: the per-key limit would answer 429.
        limits={"rate_limit_per_s": 1_000_000.0, "rate_limit_burst": 1_000_000})
    if cache:
        for block in raw["sources"].values():
            block["cache_ttl_s"] = 3600.0   # nothing expires during the bench
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test, figures only indicative")
    parser.add_argument("--accounts", type=int, default=200, help="accounts the load rotates over")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured wrk before each run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections for the throughput runs")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added upstream latency L for fan-out")
    parser.add_argument("--fanout-requests", type=int, default=60)
    parser.add_argument("--large-requests", type=int, default=30)
    parser.add_argument("--large-seconds", type=float, default=40.0, help="time bound for the large-account loop")
    parser.add_argument("--workers", choices=["auto", "1"], default="auto",
                        help="auto: also measure 2 workers when `gateway serve --workers` exists")
    parser.add_argument("--no-replay", action="store_true", help="simulators build every body (costs gateway CPU)")
    parser.add_argument("--hive-rows", type=int, default=SIMULATED_ROWS,
                        help="rows each of Hive's fakes answers (default: as many as our simulators hold a source; "
                             "0: the documents' examples, 1-5 a source)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="vs Hive Gateway: alternating runs per row (ours, Hive, ours, Hive ...)")
    parser.add_argument("--skip", default="", help="comma list of phases to skip: n1,fanout,large,throughput,alt")
    args = parser.parse_args(argv)
    if args.latency_ms <= 0:
        parser.error("--latency-ms must be positive (the L = 0 case is always measured beside it)")
    if args.quick:
        args.duration, args.warmup, args.fanout_requests, args.large_requests = 3.0, 1.0, 20, 10
    if not wrk_available():
        print("bench.perf needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    skip = set(filter(None, args.skip.split(",")))

    started = time.monotonic()
    large = "large" not in skip   # the large account's world takes a while to build
    world = build_world(args.accounts, large=large)
    two_workers = args.workers == "auto" and supports_workers()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-perf-")))
        sims = Sims(workdir, args.accounts, large=large)
        stack.callback(sims.stop)
        # name: (cache, workers, keep responses, coalesce identical requests)
        configs = {"nocache": (False, 1, True, True), "nocache-solo": (False, 1, True, False),
                   "cache": (True, 1, True, True), "cache-memo": (True, 1, False, True),
                   "large": (True, 1, True, True), "large-memo": (True, 1, False, True),
                   "large-nocache": (False, 1, True, True)}
        if two_workers:
            configs |= {"nocache-w2": (False, 2, True, True), "cache-w2": (True, 2, True, True)}
        # Only the gateways the phases run use (each is a process on the shared cores).
        needs = {"n1": {"nocache"}, "fanout": {"nocache"}, "large": {"large", "large-memo", "large-nocache"},
                 "throughput": {"nocache", "cache", "cache-memo", "nocache-w2", "cache-w2"}, "alt": {"nocache-solo"}}
        wanted = set().union(*(names for phase, names in needs.items() if phase not in skip))
        configs = {name: c for name, c in configs.items() if name in wanted}
        gateways: dict[str, Gateway] = {}
        for name, (cache, workers, keep, coalesce) in configs.items():   # start all, then wait: startups overlap
            config = gateway_config(world, sims.url, cache=cache, keep=keep, coalesce=coalesce)
            gateways[name] = gw = Gateway(name, config, workdir, workers)
            stack.callback(gw.stop)
        sims.ready(world_digest(world))
        for gw in gateways.values():
            gw.ready()
        b = Bench(args, world, workdir, sims, gateways)

        print("Balance Gateway performance bench")
        print(f"  simulators: `python -m bench.sims` (own process, pid {sims.pid}) at {sims.url}")
        names = ", ".join(f"{n} ({g.workers} worker{'s' * (g.workers > 1)})" for n, g in gateways.items())
        print(f"  gateways:   {names} — each `python -m gateway serve --config <tmp>/<name>.toml`")
        print("  load:       wrk (throughput); httpx, one request at a time (latency)")
        print(f"  world:      demo + {args.accounts} accounts of ~40 holdings + `{LARGE}` (~10,000); seed {world.seed}")
        print(f"  machine:    {os.cpu_count()} cores shared by every process above; figures are wall-clock on "
              f"loopback; python {platform.python_version()}, uvicorn {version('uvicorn')}, "
              f"strawberry {version('strawberry-graphql')}, graphql-core {version('graphql-core')}")

        phases = [("n1", phase_n_plus_one), ("fanout", phase_fanout), ("large", phase_large),
                  ("throughput", phase_throughput), ("alt", phase_alternative)]
        for name, phase in phases:
            if name not in skip:
                phase(b)

    heading("Summary", f"total bench time {time.monotonic() - started:.0f} s")
    table(["figure", "target", "measured", "result"], [[r.figure, r.target, r.measured, r.status] for r in b.rows], text=True)
    print("\nChecks\n======")
    for ok, what in b.checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if "alt" not in skip:
        ratio = "not measured" if b.hive_ratio is None else f"{b.hive_ratio:.2f}x"
        print(f"\nvs Hive Gateway, many users: {ratio} (OURS / HIVE req/s)")
    return 0 if all(ok for ok, _ in b.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
