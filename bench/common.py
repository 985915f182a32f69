"""What the performance bench's processes share: the world, process handles, /proc readings, wrk.

The bench process and the simulators' process (`bench.sims`) both build the world with
`build_world`; it is deterministic (seeded per account and source), and `world_digest`
lets the bench check that both sides built the same one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.sources.catalog import Source
from gateway.server.serving import free_port
from gateway.simulation.world import World, simulator_module, to_toml

ROOT = Path(__file__).resolve().parent.parent
LARGE = "whale"
# ~10,000 holdings in all. Calico serves at most 100 rows per call and has no cursor, so it
# gets 100; the other four share the rest. `size` is a holding count for each simulator but
# DALP, where it is token rows, most of them split over the participant's two wallets
# (1,830 rows -> ~2,520 holdings).
LARGE_SIZES = {Source.CALICO: 100, Source.CRYPTOFUSE: 2501, Source.ONEBALANCE: 2500,
               Source.COBO: 2500, Source.DALP: 1830}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def build_world(n_accounts: int, *, large: bool = False) -> World:
    """demo + user-0001..N (8 holdings per source), and the large account when asked."""
    world = World.generate(n_accounts=n_accounts)
    if large:
        # World.add_account has one size for every source; the large account needs one per source.
        blocks = {}
        for source, size in LARGE_SIZES.items():
            rng = random.Random(f"{world.seed}:{LARGE}:{source.key}")
            blocks[source.key] = simulator_module(source).populate(world.datasets[source], LARGE, rng, size)
        world.accounts[LARGE] = blocks
    return world


def world_digest(world: World) -> str:
    return hashlib.sha256(json.dumps(world.config_dict("http://x"), sort_keys=True, default=str).encode()).hexdigest()[:16]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 1]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- /proc

def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (a multi-worker gateway is a parent and its workers)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process tree so far."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime, stime
    return total


def memory_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status field (VmRSS now, VmHWM peak) summed over the process tree."""
    total = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            m = re.search(rf"^{field}:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text(), re.M)
            total += int(m.group(1)) if m else 0
    return total


# --------------------------------------------------------------------------- a lean latency client

class RawHTTP:
    """One keep-alive HTTP/1.1 connection sending prebuilt request bytes: a latency client
    that spends microseconds per request, so a latency figure is the gateway's time, not
    also httpx's building the request and reading a 55 KB body in Python (~0.5 ms)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host = f"{parts.hostname}:{parts.port}"
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawHTTP":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def post_bytes(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}", "content-type: application/json",
                 f"content-length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def roundtrip(self, request: bytes) -> tuple[float, float, int, bytes]:
        """(monotonic start, end, status, body): end is when the body's last byte arrived."""
        started = time.monotonic()
        self.sock.sendall(request)
        head = self._until(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        if b"content-length" not in fields:
            raise RuntimeError("RawHTTP reads responses with a content-length only")
        body = self._exactly(int(fields[b"content-length"]))
        return started, time.monotonic(), status, body

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.pending:
            self._receive()
        head, self.pending = self.pending.split(marker, 1)
        return head

    def _exactly(self, size: int) -> bytes:
        while len(self.pending) < size:
            self._receive()
        body, self.pending = self.pending[:size], self.pending[size:]
        return body

    def _receive(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.pending += chunk


# --------------------------------------------------------------------------- processes

class Proc:
    """A child process on a free loopback port, its output in a log file."""

    def __init__(self, name: str, argv: list[str], workdir: Path, port: int | None = None, cwd: Path = ROOT):
        self.name = name
        self.port = port or free_port()
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([a.replace("{port}", str(self.port)) for a in argv], cwd=cwd,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, path: str, timeout_s: float = 90.0) -> httpx.Response:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(self.url + path, timeout=2)
                if response.status_code == 200:
                    return response
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name!r} did not become ready; its output:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Sims(Proc):
    """`python -m bench.sims`: the five simulators, steered over HTTP (see bench/sims.py)."""

    def __init__(self, workdir: Path, n_accounts: int, large: bool):
        argv = [sys.executable, "-m", "bench.sims", "--port", "{port}", "--accounts", str(n_accounts)]
        super().__init__("sims", argv + (["--large"] if large else []), workdir)

    def ready(self, expected_digest: str) -> None:
        digest = self.wait_ready("/_bench/ready").json()["digest"]
        if digest != expected_digest:
            raise RuntimeError("the simulators' world differs from the bench's (non-deterministic generation?)")

    def latency(self, seconds: float) -> None:
        httpx.put(self.url + "/_bench/latency", json={"seconds": seconds}).raise_for_status()

    def replay(self, on: bool) -> None:
        httpx.put(self.url + "/_bench/replay", json={"on": on}).raise_for_status()

    def reset(self) -> None:
        httpx.post(self.url + "/_bench/reset").raise_for_status()

    def calls(self, clear: bool = True) -> list["Call"]:
        body = httpx.get(self.url + "/_bench/log", params={"clear": "1"} if clear else {}, timeout=30).json()
        return [Call(*c) for c in body["calls"]]


@dataclass(frozen=True)
class Call:
    """One request a simulator served (see bench/sims.py)."""
    start: float
    end: float
    source: str
    path: str
    query: str
    credential: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes a read distinct: source, page (path + query) and identity (credential)."""
        return self.source, self.path, self.query, self.credential


class Gateway(Proc):
    """`python -m gateway serve --config FILE [--workers N]`; `tree`: another checkout of the
    gateway, served from that checkout with its own `.venv` (bench/ab.py)."""

    def __init__(self, name: str, raw: dict[str, Any], workdir: Path, workers: int = 1, tree: Path | None = None):
        text = to_toml(raw)
        if tomllib.loads(text) != raw:
            raise RuntimeError(f"{name}: generated TOML does not round-trip")
        config = workdir / f"{name}.toml"
        config.write_text(text)
        python = sys.executable if tree is None else str(tree / ".venv/bin/python")
        argv = [python, "-m", "gateway", "serve", "--config", str(config), "--host", "127.0.0.1",
                "--port", "{port}", "--log-level", "warning"]
        self.workers = workers
        super().__init__(name, argv + (["--workers", str(workers)] if workers > 1 else []), workdir,
                         cwd=ROOT if tree is None else tree)

    def ready(self) -> None:
        self.wait_ready("/health")

    def metrics_text(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=10).text


def supports_workers() -> bool:
    """Whether `gateway serve` has --workers yet (it is being added)."""
    out = subprocess.run([sys.executable, "-m", "gateway", "serve", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    return "--workers" in out


def upstream_histogram(metrics_text: str) -> tuple[float, float]:
    """(sum of seconds, count) of every upstream call the gateway timed, all sources."""
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("balance_gateway_upstream_request_duration_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("balance_gateway_upstream_request_duration_seconds_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def histogram_buckets(metrics_text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count) of one unlabelled histogram."""
    buckets: dict[float, float] = {}
    prefix = name + '_bucket{le="'
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            bound, value = line[len(prefix):].split('"', 1)[0], line.rsplit(" ", 1)[1]
            buckets[float(bound)] = float(value)
    return buckets


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The q-quantile of what was observed between two scrapes, interpolated linearly inside
    its bucket (Prometheus' histogram_quantile)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return float("nan")
    rank, lower, below = q * counts[-1], 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below) if count > below else bound
        lower, below = bound, count
    return float("nan")


# --------------------------------------------------------------------------- wrk

WRK_SCRIPT = """
-- Generated by bench/perf.py: POST one GraphQL body, rotating over the callers' keys.
local body = %(body)s
local keys = {%(keys)s}
local requests_by_key = {}
local n = 0
bad = 0

function init(args)
  for i, key in ipairs(keys) do
    local headers = {["Host"] = wrk.host, ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
    %(also)s
    requests_by_key[i] = wrk.format("POST", "%(path)s", headers, body)
  end
end

function request()
  n = n + 1
  return requests_by_key[(n %% #keys) + 1]
end

local expected = %(expected)s

function response(status, headers, body)
  -- a GraphQL error in a 200 counts as bad too: a fast wrong answer is not throughput
  -- (with an expected body, anything but exactly those bytes is bad)
  if status ~= 200 or (expected and body ~= expected)
     or (not expected and string.find(body, '"errors"', 1, true)) then bad = bad + 1 end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local bad_total = 0
  for _, t in ipairs(threads) do bad_total = bad_total + t:get("bad") end
  io.write(string.format(
    '\\nBENCH_JSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"bad": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    bad_total, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def lua_string(text: str) -> str:
    # Lua long brackets need no escaping; pick a level the text does not contain.
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    bad: int
    socket_errors: int
    cpu: dict[str, float]   # share of one core, per process, during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, body: dict[str, Any], keys: list[str], *, connections: int, seconds: float,
            workdir: Path, watch: dict[str, int], path: str = "/graphql", also_header: str | None = None,
            expected: bytes | None = None) -> WrkResult:
    """wrk (1 thread) against `url`; `watch` maps a label to a pid whose CPU use is reported.
    Each request carries `Authorization: Bearer <key>`, the keys in turn; `also_header`: the key
    goes in that header too (Hive Gateway's harness forwards it to the API-key upstreams).
    `expected`: every response must be exactly these bytes (else: no GraphQL `errors` in any)."""
    script = workdir / "wrk.lua"
    also = f'headers[{json.dumps(also_header)}] = key' if also_header else ""
    script.write_text(WRK_SCRIPT % {"body": lua_string(json.dumps(body)), "path": path, "also": also,
                                    "expected": lua_string(expected.decode()) if expected else "nil",
                                    "keys": ", ".join(lua_string(k) for k in keys)})
    before = {label: cpu_seconds(pid) for label, pid in watch.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                          "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60)
    wall = time.monotonic() - started
    cpu = {label: (cpu_seconds(pid) - before[label]) / wall for label, pid in watch.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)   # wrk, once it has been waited for
    cpu["wrk"] = (children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime) / wall
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    r = json.loads(line.split(" ", 1)[1])
    return WrkResult(requests=r["requests"], seconds=r["duration_us"] / 1e6, p50_ms=r["p50_us"] / 1000,
                     p99_ms=r["p99_us"] / 1000, max_ms=r["max_us"] / 1000, bad=r["bad"],
                     socket_errors=r["socket_errors"], cpu=cpu)
