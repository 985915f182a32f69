"""Versions of the gateway side by side: bench.perf's throughput rows, interleaved.

    git worktree add /tmp/before <rev> && (cd /tmp/before && python3.11 -m venv .venv &&
        .venv/bin/pip install -q -e .)
    .venv/bin/python -m bench.ab /tmp/before .          # every row, 4 rounds of 5 s
    .venv/bin/python -m bench.ab /tmp/before . --rows deep-cached,memo --rounds 6
    .venv/bin/python -m bench.ab /tmp/r1 /tmp/r2 /tmp/r3 .   # a chain: which step cost it

Each tree serves from its own `.venv` (`python -m gateway serve`) against one simulator
process (this tree's `bench.sims`, replaying bodies) with bench.perf's gateway settings. For
each row the gateways take turns (A B C, C B A, A B C, ...), so a change in the machine's
speed during the run falls on all; the figures are the median of the rounds, and each
ratio the median of the rounds' X/A. This is how a claim such as "no figure got worse" is checked
on a machine whose speed moves by ±20% between runs (docs/PERFORMANCE.md).

The queries are this tree's (bench/perf.py): a row whose query an older tree cannot answer
shows its error count, and its figures mean nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Gateway, Sims, WrkResult, build_world, run_wrk, world_digest
from bench.perf import ALL_FIELDS, DEEP, SMALL, gateway_config, warm_cache
from gateway.simulation.world import gateway_key


@dataclass(frozen=True)
class Row:
    query: str
    cache: bool
    keep: bool       # whole responses kept for identical requests
    coalesce: bool
    connections: int


ROWS = {
    "small-cached": Row(SMALL, cache=True, keep=True, coalesce=True, connections=16),
    "deep-cached": Row(DEEP, cache=True, keep=True, coalesce=True, connections=16),
    "memo": Row(DEEP, cache=True, keep=False, coalesce=True, connections=16),
    "deep-uncached": Row(DEEP, cache=False, keep=True, coalesce=True, connections=16),
    # bench.perf's many-users row against Hive Gateway (ours only): nothing shared.
    "many-users": Row(ALL_FIELDS, cache=False, keep=True, coalesce=False, connections=32),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("trees", type=Path, nargs="+", help="checkouts, each with its own .venv; the first is A, "
                        "the one the others are compared with")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma list of: {', '.join(ROWS)}")
    parser.add_argument("--rounds", type=int, default=4, help="runs per side and row")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--accounts", type=int, default=200, help="accounts the keys rotate over")
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    if unknown := [r for r in rows if r not in ROWS]:
        parser.error(f"unknown rows: {', '.join(unknown)}")
    if len(args.trees) < 2 or len(args.trees) > 26:
        parser.error("name 2 to 26 checkouts")
    trees = {chr(ord("A") + i): tree.resolve() for i, tree in enumerate(args.trees)}
    for tree in trees.values():
        if not (tree / ".venv/bin/python").exists():
            parser.error(f"{tree} has no .venv (python3.11 -m venv .venv && .venv/bin/pip install -e .)")

    world = build_world(args.accounts)
    keys = [gateway_key(f"user-{i:04d}") for i in range(1, args.accounts + 1)]
    results: dict[tuple[str, str], list[WrkResult]] = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ab-")))
        sims = Sims(workdir, args.accounts, large=False)
        stack.callback(sims.stop)
        gateways: dict[tuple[str, str], Gateway] = {}
        for name in rows:
            row = ROWS[name]
            raw = gateway_config(world, sims.url, cache=row.cache, keep=row.keep, coalesce=row.coalesce)
            for side, tree in trees.items():
                gateways[(name, side)] = gw = Gateway(f"{name}-{side}", raw, workdir, tree=tree)
                stack.callback(gw.stop)
        sims.ready(world_digest(world))
        sims.latency(0.0)
        sims.replay(True)
        for (name, _), gw in gateways.items():
            gw.ready()
            if ROWS[name].cache:
                warm_cache(gw.url, keys, ROWS[name].query)
        print("".join(f"{side} = {tree}\n" for side, tree in trees.items())
              + f"{args.rounds} rounds of {args.seconds:g} s per side and row, "
              f"wrk -t1, keys rotating over {args.accounts} accounts\n")
        for name in rows:
            row = ROWS[name]
            for turn in range(args.rounds):
                for side in list(trees) if turn % 2 == 0 else list(trees)[::-1]:
                    gw = gateways[(name, side)]
                    r = run_wrk(gw.url, {"query": row.query}, keys, connections=row.connections,
                                seconds=args.seconds, workdir=workdir, watch={"gateway": gw.pid})
                    results.setdefault((name, side), []).append(r)
                    print(f"  {name:14} {side} round {turn + 1}: {r.rps:8.0f} req/s, "
                          f"{cpu_ms(r):.3f} ms CPU/request, {r.bad} bad", flush=True)

    sides = list(trees)
    print(f"\n{'row':14} " + " ".join(f"{side + ' req/s':>9}" for side in sides)
          + " " + " ".join(f"{side + '/A':>6}" for side in sides[1:])
          + " " + " ".join(f"{side + ' CPU ms':>9}" for side in sides) + "  bad")
    for name in rows:
        runs = {side: results[(name, side)] for side in sides}
        ratios = [statistics.median(rx.rps / ra.rps for ra, rx in zip(runs["A"], runs[side]) if ra.rps)
                  for side in sides[1:]]
        print(f"{name:14} " + " ".join(f"{median(runs[side], lambda r: r.rps):9.0f}" for side in sides)
              + " " + " ".join(f"{ratio:6.3f}" for ratio in ratios)
              + " " + " ".join(f"{median(runs[side], cpu_ms):9.3f}" for side in sides)
              + "  " + "/".join(str(sum(r.bad for r in runs[side])) for side in sides))
    return 0


def cpu_ms(r: WrkResult) -> float:
    return r.cpu["gateway"] * 1000 / r.rps if r.rps else 0.0


def median(runs: list[WrkResult], figure: Any) -> float:
    return statistics.median(figure(r) for r in runs)


if __name__ == "__main__":
    sys.exit(main())
