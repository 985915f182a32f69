"""Where a gateway process spends its CPU under load: py-spy over a wrk run.

    .venv/bin/pip install py-spy        # a profiler, not a project dependency
    .venv/bin/python -m bench.profile --query small --cached
    .venv/bin/python -m bench.profile --query deep --large --connections 2   # the 10,000-holding account
    .venv/bin/python -m bench.profile --query all-fields --connections 32 --no-coalesce   # many users
    .venv/bin/python -m bench.profile --query all-balances --connections 32 --one-account --no-coalesce

Starts the simulators and one gateway like bench.perf does, loads it with wrk while py-spy
samples it, and prints the functions with the largest share of samples: "self" (the
function's own code) and "total" (with everything it calls). Functions are named
`module:function`, so the table points at the code to change.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench.common import LARGE, Gateway, Sims, build_world, run_wrk, world_digest
from bench.perf import ALL_BALANCES, ALL_FIELDS, DEMO_KEY, DEEP, SMALL, gateway_config, warm_cache
from gateway.simulation.world import gateway_key

QUERIES = {"small": SMALL, "deep": DEEP, "all-balances": ALL_BALANCES, "all-fields": ALL_FIELDS}
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str, root: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", root + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path.removesuffix('.py').replace('/', '.')}:{m.group('func')}"


def summarize(raw: str, root: str, top: int) -> None:
    self_count: collections.Counter = collections.Counter()
    total_count: collections.Counter = collections.Counter()
    package_self: collections.Counter = collections.Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f, root) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        samples += n
        self_count[frames[-1]] += n
        package_self[frames[-1].split(".")[0].split(":")[0]] += n
        for name in set(frames):
            total_count[name] += n
    print(f"\n{samples} samples\n\nself time by top-level package")
    for name, n in package_self.most_common(12):
        print(f"  {n / samples:6.1%}  {name}")
    print(f"\nself time (top {top})")
    for name, n in self_count.most_common(top):
        print(f"  {n / samples:6.1%}  {name}")
    print(f"\ntotal time, gateway/resolvers/schema code and the libraries' entry points (top {top})")
    shown = 0
    for name, n in total_count.most_common():
        if name.startswith(("gateway.", "resolvers.", "schema.", "strawberry.", "graphql.", "pydantic", "starlette.",
                            "httpx", "aiohttp", "orjson", "aiodataloader", "prometheus_client")):
            print(f"  {n / samples:6.1%}  {name}")
            shown += 1
            if shown >= top:
                break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--query", choices=sorted(QUERIES), default="small")
    parser.add_argument("--cached", action="store_true", help="cache on and warmed (default: cache off)")
    parser.add_argument("--large", action="store_true", help=f"every request for the large account `{LARGE}`")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--one-account", action="store_true", help="every request for the demo account")
    parser.add_argument("--no-coalesce", action="store_true", help="[server] coalesce_identical = false")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--raw", help="also keep py-spy's collapsed stacks in this file")
    parser.add_argument("--native", action="store_true", help="include C frames (shows GC, pydantic-core, etc.)")
    args = parser.parse_args(argv)
    if not shutil.which("py-spy", path=str(Path(sys.executable).parent)) and not shutil.which("py-spy"):
        print("needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    world = build_world(args.accounts, large=args.large)
    keys = [gateway_key(LARGE)] if args.large else [gateway_key(f"user-{i:04d}") for i in range(1, args.accounts + 1)]
    if args.one_account:
        keys = [DEMO_KEY]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-profile-")))
        sims = Sims(workdir, args.accounts, large=args.large)
        stack.callback(sims.stop)
        gw = Gateway("profiled", gateway_config(world, sims.url, cache=args.cached,
                                                         coalesce=not args.no_coalesce), workdir)
        stack.callback(gw.stop)
        sims.ready(world_digest(world))
        gw.ready()
        sims.replay(True)
        if args.cached:
            warm_cache(gw.url, keys)
        out = workdir / "profile.txt"
        spy = subprocess.Popen([py_spy, "record", "--pid", str(gw.pid), "--rate", "250", "--format", "raw",
                                "--duration", str(int(args.seconds)), "--output", str(out),
                                *(["--native"] if args.native else ["--nonblocking"])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(r=run_wrk(
            gw.url, {"query": QUERIES[args.query]}, keys, connections=args.connections, seconds=args.seconds,
            workdir=workdir, watch={"gateway": gw.pid, "sims": sims.pid})))
        thread.start()
        thread.join()
        spy.wait(timeout=60)
        r = result["r"]
        print(f"{args.query} query, {'cached' if args.cached else 'uncached'}{', large account' if args.large else ''}: "
              f"{r.rps:.0f} req/s, p50 {r.p50_ms:.1f} ms, gateway CPU {r.cpu['gateway']:.0%}, bad {r.bad}")
        raw = out.read_text() if out.exists() else ""
        if not raw:
            print(spy.stderr.read().decode(errors="replace") if spy.stderr else "py-spy wrote nothing", file=sys.stderr)
            return 1
        if args.raw:
            Path(args.raw).write_text(raw)
        summarize(raw, str(Path(__file__).resolve().parent.parent), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
