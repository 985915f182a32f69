"""Resilience bench: in-flight de-duplication, degraded-source latency and cache hit/miss latency.

    .venv/bin/python -m bench.resilience            # from the repo root; about a minute on 2 cores

Topology (printed with the results):
  * the five upstream simulators run in THIS process, in one uvicorn server on a thread
    (`ServerThread(world.combined_app())`), so the bench steers them directly through
    `world.controls[source]` (latency, faults, request counters);
  * every gateway configuration runs in its OWN OS process (`python -m gateway serve --config
    <tmp>/<name>.toml`), so the load generator and the gateway never share a GIL and the
    latencies measured are the gateway's, not the client's. All gateways start in parallel
    at the beginning; a fresh process per configuration also means a fresh circuit breaker.

The phases run one after another because they share the simulators and their counters.
The exit status is 0 when every expectation printed under "Checks" holds, 1 otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import Gateway
from gateway.sources.catalog import Source
from gateway.server.serving import ServerThread
from gateway.simulation.control import Fault
from gateway.simulation.world import DEMO_KEY, World

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin"

# The same deep selection for `viewer` and `account(id:)`: aliases and nesting that a naive
# resolver would turn into many upstream reads; the gateway must still read each identity
# and page once. `sources` tells us, per request, what each source cost and how it answered.
DEEP_FRAGMENT = """
fragment Deep on Account {
  id
  totalValue { value { amount currency } complete unpricedHoldings failedSources }
  usd: totalValue(currency: "USD") { value { amount } }
  sources { source state upstreamCalls fromCache breaker error { code message } }
  wallets {
    id source kind label
    holdings(first: 200) { totalCount nodes { id amount token { id symbol asset { key } } } }
    totalValue { value { amount } }
  }
  holdings(first: 200) {
    totalCount
    edges { cursor node { id source amount amountRaw precision value { amount currency }
            price { unit currency reliability source } token { id decimals chain { id isTestnet } }
            wallet { id source } } }
  }
  again: holdings(first: 5, orderBy: {field: AMOUNT, direction: ASC}) { nodes { id } }
}
"""
VIEWER_QUERY = "query Deep { viewer { ...Deep } }\n" + DEEP_FRAGMENT
ACCOUNT_QUERY = "query Account($id: ID!) { account(id: $id) { ...Deep } }\n" + DEEP_FRAGMENT


# --------------------------------------------------------------------------- config files

def gateway_raw_config(world: World, sims_url: str, *, cache: bool, deadline_s: float = 10.0,
                       admin: bool = False, **source_options: Any) -> dict[str, Any]:
    """The world's config with the bench's knobs; `source_options` apply to every source."""
    raw = world.config_dict(sims_url, server={"request_deadline_s": deadline_s},
                            cache={"enabled": cache}, auth={"admin_keys": [ADMIN_KEY] if admin else []},
                            # one bench client sends bursts no real client should: lift the per-key limit
                            limits={"rate_limit_per_s": 100_000, "rate_limit_burst": 100_000})
    for block in raw["sources"].values():
        block.update(source_options)
    return raw


class GatewayProcess(Gateway):
    """A gateway process (bench.common.Gateway) that can also report its breakers."""

    def breakers(self) -> dict[str, str]:
        """Breaker state per source in this gateway process (GET /health?ready)."""
        body = httpx.get(self.url + "/health?ready", timeout=5).json()
        return {name: b["state"] for name, b in body.get("breakers", {}).items()}


# --------------------------------------------------------------------------- measuring

@dataclass
class Sample:
    ms: float
    body: dict[str, Any]
    cobo_calls: int | None = None   # requests the Cobo simulator received during this one

    @property
    def called_cobo(self) -> bool:
        return bool(self.cobo_calls)

    def source(self, source: Source) -> dict[str, Any]:
        account = next(iter((self.body.get("data") or {}).values()), None) or {}
        return next((s for s in account.get("sources", []) if s["source"] == source.value), {})


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 1]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = math.floor(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def post(client: httpx.Client, query: str, key: str, variables: dict[str, Any] | None = None) -> Sample:
    started = time.perf_counter()
    response = client.post("/graphql", json={"query": query, "variables": variables or {}},
                           headers={"authorization": f"Bearer {key}"})
    ms = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return Sample(ms, response.json())


def sequential(url: str, n: int, query: str = VIEWER_QUERY, key: str = DEMO_KEY,
               world: World | None = None) -> list[Sample]:
    """`n` requests one after another; with `world`, each notes how often it made the gateway call Cobo."""
    samples = []
    # One keep-alive connection: we measure the gateway, not TCP handshakes.
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(n):
            before = world.controls[Source.COBO].requests if world else 0
            sample = post(client, query, key)
            if world:
                sample.cobo_calls = world.controls[Source.COBO].requests - before
            samples.append(sample)
    return samples


async def burst(url: str, n: int) -> tuple[list[Sample], float]:
    """`n` identical requests released together; returns them and the wall time."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one() -> Sample:
            started = time.perf_counter()
            response = await client.post("/graphql", json={"query": VIEWER_QUERY},
                                         headers={"authorization": f"Bearer {DEMO_KEY}"})
            response.raise_for_status()
            return Sample((time.perf_counter() - started) * 1000, response.json())
        started = time.perf_counter()
        samples = await asyncio.gather(*(one() for _ in range(n)))
        return list(samples), time.perf_counter() - started


# --------------------------------------------------------------------------- output

class Report:
    def __init__(self) -> None:
        self.checks: list[tuple[bool, str]] = []

    @staticmethod
    def heading(title: str, params: str) -> None:
        print(f"\n{title}\n{'=' * len(title)}\n{params}\n")

    @staticmethod
    def table(header: list[str], rows: list[list[Any]]) -> None:
        cells = [header] + [[_fmt(c) for c in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        for i, row in enumerate(cells):
            print("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
            if i == 0:
                print("  " + "  ".join("-" * w for w in widths))

    def check(self, ok: bool, what: str) -> None:
        self.checks.append((ok, what))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.1f}"
    return str(value)


def latency_row(label: str, samples: list[Sample], *extra: Any) -> list[Any]:
    ms = [s.ms for s in samples]
    return [label, len(ms), percentile(ms, 0.5), percentile(ms, 0.99), max(ms, default=float("nan")), *extra]


# --------------------------------------------------------------------------- the phases

@dataclass
class Params:
    burst: int
    requests: int
    hang_requests: int
    accounts: int
    burst_latency_s: float = 0.2
    latency_s: float = 0.02
    timeout_s: float = 0.5
    deadline_s: float = 1.0
    hang_s: float = 10.0          # far beyond every timeout and the deadline
    cache_ttl_s: float = 3600.0
    gateways: dict[str, GatewayProcess] = field(default_factory=dict)


def set_simulators(world: World, latency_s: float) -> None:
    """No faults, zeroed counters, the same latency on every simulator."""
    for control in world.controls.values():
        control.reset()
        control.latency_s = latency_s


def counters(world: World) -> dict[Source, int]:
    return {source: control.requests for source, control in world.controls.items()}


def phase_dedup(world: World, p: Params, report: Report) -> None:
    gw = p.gateways["dedup"]
    set_simulators(world, p.burst_latency_s)
    # What one request needs: its own accounting, cross-checked with the simulators' counters.
    cold = sequential(gw.url, 1)[0]
    need = {s: cold.source(s).get("upstreamCalls", 0) for s in Source}
    cold_counted = counters(world)
    set_simulators(world, p.burst_latency_s)
    samples, wall_s = asyncio.run(burst(gw.url, p.burst))
    made = counters(world)
    with_errors = sum(1 for s in samples if "errors" in s.body)

    report.heading("1. In-flight de-duplication",
                   f"{p.burst} concurrent identical deep `viewer` queries (demo account), cache disabled, "
                   f"{p.burst_latency_s * 1000:.0f} ms latency on every simulator.\n"
                   f"ratio = upstream calls for the whole burst / calls one request needs "
                   f"(1.0 = fully shared; {p.burst}.0 = no sharing).")
    rows = [[s.value, need[s], cold_counted[s], made[s], made[s] / need[s] if need[s] else float("nan")]
            for s in Source]
    report.table(["source", "calls/request", "(simulator saw)", f"calls for {p.burst} requests", "ratio"], rows)
    ms = [s.ms for s in samples]
    print(f"\n  burst wall time {wall_s * 1000:.0f} ms; per-request p50 {percentile(ms, 0.5):.0f} ms, "
          f"max {max(ms):.0f} ms; responses with errors: {with_errors}")
    worst = max((made[s] / need[s] for s in Source if need[s]), default=float("inf"))
    report.check(all(need[s] >= 1 for s in Source) and need == cold_counted,
                 "dedup: one cold request's upstreamCalls match the simulators' counters")
    report.check(worst < 2 and with_errors == 0,
                 f"dedup: burst of {p.burst} made < 2x one request's upstream calls per source (worst {worst:.2f}x)")


def phase_degraded(world: World, p: Params, report: Report) -> None:
    n = p.requests
    rows: list[list[Any]] = []

    def breaker_split(label: str, samples: list[Sample]) -> list[list[Any]]:
        # Requests are sequential, so the simulator's counter says exactly which ones reached
        # Cobo (and paid for its retries or timeout) and which the open breaker answered at once.
        # (The gateway's own `upstreamCalls` is 0 for a fetch that ended in an exception.)
        paid = [s for s in samples if s.called_cobo]
        refused = [s for s in samples if not s.called_cobo]
        return [latency_row(f"  {label}: requests that called Cobo", paid, sum(s.cobo_calls or 0 for s in paid), ""),
                latency_row(f"  {label}: breaker open, Cobo skipped", refused, 0, "")]

    # A: all up.
    gw = p.gateways["degraded-ab"]
    set_simulators(world, p.latency_s)
    a = sequential(gw.url, n, world=world)
    a_errors = sum(1 for s in a if "errors" in s.body)
    rows.append(latency_row("A  all sources up", a, world.controls[Source.COBO].requests,
                            gw.breakers().get("COBO", "?")))

    # B: Cobo answers 503 to everything (retried, then the breaker opens and stays open:
    # its 30 s cooldown is longer than the case).
    set_simulators(world, p.latency_s)
    world.controls[Source.COBO].add_fault(Fault(kind="status", status=503))
    b = sequential(gw.url, n, world=world)
    b_breaker = gw.breakers().get("COBO", "?")
    rows.append(latency_row("B  Cobo 503 always", b, world.controls[Source.COBO].requests, b_breaker))
    rows += breaker_split("B", b)

    # C: Cobo accepts the connection and never answers in time; timeout_s bounds each call.
    gw = p.gateways["degraded-c"]
    set_simulators(world, p.latency_s)
    world.controls[Source.COBO].add_fault(Fault(kind="delay", delay_s=p.hang_s))
    c = sequential(gw.url, n, world=world)
    c_breaker = gw.breakers().get("COBO", "?")
    rows.append(latency_row(f"C  Cobo hangs ({p.hang_s:g} s)", c, world.controls[Source.COBO].requests, c_breaker))
    rows += breaker_split("C", c)

    # C2: same hang, but a per-call timeout longer than the deadline and no breaker, so
    # every request waits for Cobo and only request_deadline_s cuts it short.
    gw = p.gateways["deadline-c2"]
    set_simulators(world, p.latency_s)
    world.controls[Source.COBO].add_fault(Fault(kind="delay", delay_s=p.hang_s))
    c2 = sequential(gw.url, p.hang_requests, world=world)
    rows.append(latency_row("C2 Cobo hangs, timeout_s=5, no breaker", c2, world.controls[Source.COBO].requests,
                            gw.breakers().get("COBO", "?")))
    for control in world.controls.values():
        control.faults.clear()

    report.heading("2. Latency with one source down vs all up",
                   f"Deep `viewer` query, {n} sequential requests per case (C2: {p.hang_requests}), cache disabled, "
                   f"{p.latency_s * 1000:.0f} ms latency on every simulator.\n"
                   f"A/B/C: timeout_s={p.timeout_s:g}, request_deadline_s={p.deadline_s:g}, max_retries=2, "
                   f"breaker_failures=5, breaker_cooldown_s=30 (defaults); one fresh gateway for A+B, one for C.\n"
                   f"C2: timeout_s=5 (> deadline), breaker disabled, request_deadline_s={p.deadline_s:g}: "
                   f"shows the deadline alone bounding a request.")
    report.table(["case", "n", "p50 ms", "p99 ms", "max ms", "Cobo calls", "Cobo breaker at end"], rows)

    def cobo_failed_only(samples: list[Sample]) -> bool:
        return all([e.get("extensions", {}).get("source") for e in s.body.get("errors", [])] == ["COBO"]
                   for s in samples)
    deadline_ms = p.deadline_s * 1000
    c_ms, c2_ms = [s.ms for s in c], [s.ms for s in c2]
    b_open = [s.ms for s in b if not s.called_cobo]
    b_paid = [s.ms for s in b if s.called_cobo]
    report.check(a_errors == 0, "A: no errors with every source up")
    report.check(b_breaker == "OPEN" and cobo_failed_only(b) and bool(b_open) and bool(b_paid)
                 and percentile(b_open, 0.5) < percentile(b_paid, 0.5),
                 "B: only Cobo fails, its breaker ends OPEN, and p50 drops once it is open")
    report.check(cobo_failed_only(c) and percentile(c_ms, 0.5) < deadline_ms and percentile(c_ms, 0.99) < deadline_ms,
                 f"C: only Cobo fails, p50 and p99 stay below the {deadline_ms:.0f} ms deadline")
    # The deadline bounds the wait for upstreams; building the response comes on top of it.
    report.check(cobo_failed_only(c2) and max(c2_ms) < deadline_ms * 1.25,
                 "C2: every request answers within the deadline plus 25% for the response itself")


def phase_cache(world: World, p: Params, report: Report) -> None:
    gw = p.gateways["cache"]
    ids = [a for a in world.accounts if a != "demo"][: p.accounts]
    set_simulators(world, p.latency_s)
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        miss = [post(client, ACCOUNT_QUERY, ADMIN_KEY, {"id": i}) for i in ids]
        miss_calls = sum(counters(world).values())
        set_simulators(world, p.latency_s)
        hit = [post(client, ACCOUNT_QUERY, ADMIN_KEY, {"id": i}) for i in ids]
        hit_calls = sum(counters(world).values())
    all_cached = all(s.source(src).get("fromCache") for s in hit for src in Source)
    errors = sum(1 for s in miss + hit if "errors" in s.body)

    report.heading("3. Cache hit vs miss",
                   f"Deep `account(id:)` query via an admin key, {len(ids)} distinct accounts, in-memory cache, "
                   f"cache_ttl_s={p.cache_ttl_s:g}, {p.latency_s * 1000:.0f} ms latency on every simulator.\n"
                   f"miss = first request per account; hit = the same accounts again, in the same order.")
    report.table(["pass", "n", "p50 ms", "p99 ms", "max ms", "upstream calls"],
                 [latency_row("miss", miss, miss_calls), latency_row("hit", hit, hit_calls)])
    miss_p50, hit_p50 = percentile([s.ms for s in miss], 0.5), percentile([s.ms for s in hit], 0.5)
    miss_p99, hit_p99 = percentile([s.ms for s in miss], 0.99), percentile([s.ms for s in hit], 0.99)
    print(f"\n  hit/miss: p50 {hit_p50 / miss_p50:.2f} ({miss_p50 / hit_p50:.1f}x faster), "
          f"p99 {hit_p99 / miss_p99:.2f}; responses with errors: {errors}")
    report.check(hit_calls == 0 and all_cached and errors == 0,
                 "cache: the hit pass made no upstream calls and every source said fromCache")
    report.check(hit_p50 < miss_p50, "cache: hit p50 below miss p50")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resilience", description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=50, help="concurrent requests in the dedup burst")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per latency case")
    parser.add_argument("--hang-requests", type=int, default=15, help="requests in case C2 (each waits ~1 s)")
    parser.add_argument("--accounts", type=int, default=200, help="accounts for the cache phase")
    args = parser.parse_args(argv)
    p = Params(burst=args.burst, requests=args.requests, hang_requests=args.hang_requests, accounts=args.accounts)

    started = time.monotonic()
    world = World.generate(n_accounts=p.accounts)
    report = Report()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-resilience-")))
        # Short graceful shutdown: hung simulator handlers (phase C) must not hold up the exit.
        sims = stack.enter_context(ServerThread(world.combined_app(), timeout_graceful_shutdown=1))
        degraded = dict(cache=False, deadline_s=p.deadline_s, timeout_s=p.timeout_s)
        configs = {
            "dedup": gateway_raw_config(world, sims.url, cache=False),
            "degraded-ab": gateway_raw_config(world, sims.url, **degraded),
            "degraded-c": gateway_raw_config(world, sims.url, **degraded),
            "deadline-c2": gateway_raw_config(world, sims.url, cache=False, deadline_s=p.deadline_s,
                                              timeout_s=5.0, breaker_failures=1_000_000),
            "cache": gateway_raw_config(world, sims.url, cache=True, admin=True, cache_ttl_s=p.cache_ttl_s),
        }
        for name, raw in configs.items():   # start them all, then wait: startups overlap
            p.gateways[name] = gw = GatewayProcess(name, raw, workdir)
            stack.callback(gw.stop)
        for gw in p.gateways.values():
            gw.ready()

        print("Balance Gateway resilience bench")
        print(f"  simulators: one uvicorn server on a thread of the bench process at {sims.url}")
        print(f"  gateways:   {len(p.gateways)} separate processes, `python -m gateway serve --config <tmp>/<name>.toml` "
              f"({', '.join(p.gateways)}), so client and gateway do not share a GIL")
        print("  client:     httpx (sync, one keep-alive connection; async for the burst)")
        print(f"  world:      demo + {p.accounts} generated accounts (seed {world.seed}); "
              f"latencies are client-side wall times in ms")

        phase_dedup(world, p, report)
        phase_degraded(world, p, report)
        phase_cache(world, p, report)

    print("\nChecks\n======")
    for ok, what in report.checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    print(f"\ntotal bench time {time.monotonic() - started:.0f} s")
    return 0 if all(ok for ok, _ in report.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
