"""Fuzz a live gateway process with tests/policy/test_fuzz.py's hostile requests.

    .venv/bin/python -m bench.fuzz [--examples 10000] [--seed 1]

The five simulators run in this process (one uvicorn server on a thread); the gateway is
`python -m gateway serve --config <tmp>/gateway.toml` with the default settings (cache,
coalescing, read deadlines, every limit) except a rate limit high enough not to refuse the
fuzzer, and an admin key. Hypothesis generates the requests (`hostile_requests`: lone
surrogates and control characters in every client-supplied field, JSON nested past the
limit, federation representations of every wrong shape and over the cap); each is sent on
one keep-alive connection and its answer classified by `tests.test_fuzz.problems`.

Prints the number of examples, requests whose connection broke before an answer, answers
with status >= 500 (must be 0), answers that are
not GraphQL-shaped JSON (must be 0), INTERNAL_SERVER_ERROR answers, the gateway's ERROR
lines and tracebacks, and the status codes seen. Exit status 0 when all of those are 0.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, Phase, given, seed, settings

from gateway.server.serving import ServerThread, free_port
from gateway.simulation.world import World
from tests.conftest import ADMIN_KEY
from tests.policy.test_fuzz import hostile_requests, problems, send


def start_gateway(world: World, sims_url: str, workdir: Path) -> tuple[subprocess.Popen, str, Path]:
    config = workdir / "gateway.toml"
    config.write_text(world.config_toml(sims_url, auth={"admin_keys": [ADMIN_KEY]},
                                        limits={"rate_limit_per_s": 100_000, "rate_limit_burst": 100_000}))
    port = free_port()
    log = workdir / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OTEL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                             "--log-format", "json"], env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the gateway did not start")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    world = World.generate(2, size=6)
    tally: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[int] = collections.Counter()
    samples: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, ServerThread(world.combined_app()) as sims:
        proc, url, log = start_gateway(world, sims.url, Path(tmp))
        started = time.monotonic()
        try:
            with httpx.Client(base_url=url, timeout=60) as http:
                @seed(args.seed)
                @settings(max_examples=args.examples, deadline=None, database=None, phases=[Phase.generate],
                          suppress_health_check=list(HealthCheck))
                @given(request=hostile_requests())
                def fuzz(request) -> None:
                    tally["examples"] += 1
                    try:
                        response = send(http, request)
                    except httpx.TransportError as exc:   # the connection broke: no answer at all
                        tally["no answer"] += 1
                        samples.setdefault("no answer", f"{request.method} {request.target[:200]} "
                                                        f"{(request.body or b'')[:200]!r} -> {exc!r}")
                        return
                    statuses[response.status_code] += 1
                    for problem in problems(response):
                        kind = "status >= 500" if problem.startswith("status") else \
                            "not GraphQL" if problem.startswith("not GraphQL") else problem
                        tally[kind] += 1
                        samples.setdefault(kind, f"{request.method} {request.target[:200]} "
                                                 f"{(request.body or b'')[:200]!r} -> {response.status_code} "
                                                 f"{response.text[:200]}")
                fuzz()
        finally:
            elapsed = time.monotonic() - started
            proc.terminate()
            proc.wait(timeout=30)
        lines = log.read_text(errors="replace").splitlines()
    logged_errors = sum(1 for line in lines if '"level":"ERROR"' in line)
    tracebacks = sum(1 for line in lines if "Traceback" in line)
    lost = sum(1 for line in lines if "--- Logging error ---" in line)
    unparsable = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            unparsable += 1

    checks = {"requests without an answer": tally["no answer"],
              "responses with status >= 500": tally["status >= 500"],
              "non-GraphQL bodies": tally["not GraphQL"],
              "INTERNAL_SERVER_ERROR answers": tally["internal error"],
              "gateway log lines at ERROR": logged_errors,
              "tracebacks in the gateway log": tracebacks,
              "log records lost / lines not JSON": lost + unparsable}
    print(f"bench.fuzz: {tally['examples']} examples in {elapsed:.0f} s against {url} (seed {args.seed})")
    for name, count in checks.items():
        print(f"  {name:<36} {count:>6}  {'ok' if count == 0 else 'FAIL'}")
    print("  statuses: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print(f"  gateway log: {len(lines)} lines")
    for kind, sample in samples.items():
        print(f"  first {kind}: {sample}")
    return 0 if tally["examples"] >= args.examples and not any(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
