"""Hive Gateway side by side: the harness in bench/hive/, run by bench.perf in the same invocation.

bench/hive/ holds The Guild's Hive Gateway 2.15.1 over a GraphQL Mesh v1 supergraph composed
from OpenAPI descriptions of the five REST APIs (package.json + package-lock.json; node_modules
is installed on demand by `npm ci` and never committed), and stdlib fakes of the five upstreams
(`fake_upstreams_min.py`, one process per source). Every upstream credential comes from the
client's request (mesh.config.ts: `{context.headers.authorization}` for the bearer APIs,
`{context.headers.xuser}` for the key APIs), so a load that sends `user-N` in both headers,
N rotating, gives Hive a different set of upstream credentials on every request; the fakes
accept user-1..user-FAKE_USERS and count the distinct credentials they were sent; FAKE_ROWS
makes each source answer that many rows (bench.perf: as many as its simulators hold per source).

`Hive.start()` returns None and a reason when Node/npm is missing or `npm ci` fails (offline):
bench.perf then reports the comparison as not measured instead of failing.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import Proc
from gateway.server.serving import free_port

HARNESS = Path(__file__).resolve().parent / "hive"
SOURCES = ("calico", "cryptofuse", "onebalance", "cobo", "dalp")
QUERY = (HARNESS / "query.graphql").read_text()
BODY = {"query": QUERY, "operationName": "AllBalances"}
# The header every key also goes in (besides `Authorization: Bearer <key>`), for the key APIs.
USER_HEADER = "xuser"


def user_keys(n: int) -> list[str]:
    return [f"user-{i}" for i in range(1, n + 1)]


def install() -> str | None:
    """None when the harness is ready to run, else why it cannot be (printed, not raised)."""
    if (HARNESS / "node_modules" / ".bin" / "hive-gateway").exists():
        return None
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js and npm are not installed (Node 20 + npm run bench/hive/)"
    print("  installing bench/hive/ (npm ci, once; package-lock.json) ...", flush=True)
    try:
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HARNESS, capture_output=True,
                              text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "`npm ci` in bench/hive/ did not finish within 10 minutes (no registry access?)"
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])[:400]
        return f"`npm ci` in bench/hive/ failed (offline? the npm registry must be reachable once): {tail}"
    return None


class Hive:
    """The five fakes and one Hive Gateway process (default settings: one process, no JIT)."""

    def __init__(self, workdir: Path, users: int, rows: int = 0):
        self.workdir = workdir
        self.users = users
        self.rows = rows   # rows each fake answers (0: the documents' examples alone, 1-5 a source)
        self.fakes: dict[str, Proc] = {}
        self.gateway: Proc | None = None

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    @property
    def pid(self) -> int:
        assert self.gateway is not None
        return self.gateway.pid

    def fake_pids(self) -> dict[str, int]:
        return {f"fake {name}": proc.pid for name, proc in self.fakes.items()}

    def start(self) -> None:
        env = {"FAKE_USERS": str(self.users), "FAKE_ROWS": str(self.rows), "LATENCY_MS": "0"}
        for name in SOURCES:
            self.fakes[name] = _EnvProc(f"hive-fake-{name}", [sys.executable, str(HARNESS / "fake_upstreams_min.py"),
                                                              name, "{port}"], self.workdir, env)
        for proc in self.fakes.values():
            proc.wait_ready("/_bench/credentials", timeout_s=30)
        base = {name: f"http://127.0.0.1:{proc.port}" for name, proc in self.fakes.items()}
        env = {"CALICO_BASE_URL": base["calico"] + "/platform/v1", "CRYPTOFUSE_BASE_URL": base["cryptofuse"],
               "ONEBALANCE_BASE_URL": base["onebalance"] + "/api", "COBO_BASE_URL": base["cobo"],
               "DALP_API_URL": base["dalp"], "NODE_ENV": "production"}
        supergraph = self.workdir / "supergraph.graphql"
        composed = subprocess.run([str(HARNESS / "node_modules" / ".bin" / "mesh-compose"), "-o", str(supergraph)],
                                  cwd=HARNESS, env=os.environ | env, capture_output=True, text=True, timeout=300)
        if composed.returncode != 0:
            raise RuntimeError(f"mesh-compose failed:\n{(composed.stdout + composed.stderr)[-2000:]}")
        self.gateway = _EnvProc("hive-gateway", [str(HARNESS / "node_modules" / ".bin" / "hive-gateway"),
                                                 "supergraph", str(supergraph), "--host", "127.0.0.1",
                                                 "--port", "{port}"], self.workdir, env, cwd=HARNESS)
        self.gateway.wait_ready("/readiness", timeout_s=120)

    def verify(self) -> tuple[bool, str, bytes]:
        """One request as user-1 through verify_response.py: every source answered its values.
        Also returns the response's bytes: every user's must be the same (the fakes answer alike)."""
        response = httpx.post(self.url + "/graphql", json=BODY, timeout=30,
                              headers={"authorization": "Bearer user-1", USER_HEADER: "user-1"})
        saved = self.workdir / "hive-response.json"
        saved.write_bytes(response.content)
        checked = subprocess.run([sys.executable, str(HARNESS / "verify_response.py"), str(saved)],
                                 capture_output=True, text=True, timeout=30)
        ok = response.status_code == 200 and checked.returncode == 0
        return ok, " ".join(checked.stdout.split()), response.content

    def distinct_credentials(self, clear: bool = False) -> dict[str, int]:
        """Distinct credentials each fake accepted since the last clear."""
        query = "?clear=1" if clear else ""
        return {name: httpx.get(f"{proc.url}/_bench/credentials{query}", timeout=10).json()["distinct"]
                for name, proc in self.fakes.items()}

    def stop(self) -> None:
        for proc in [self.gateway, *self.fakes.values()]:
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stop()


class _EnvProc(Proc):
    """A Proc with extra environment variables (and its own working directory)."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str], cwd: Path | None = None):
        self.name = name
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([a.replace("{port}", str(self.port)) for a in argv], cwd=cwd or HARNESS,
                                     env=os.environ | env, stdout=self._log, stderr=subprocess.STDOUT)


if __name__ == "__main__":   # a quick manual check: start, verify, stop
    import tempfile
    reason = install()
    if reason:
        print(reason)
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as tmp:
        hive = Hive(Path(tmp), 200)
        try:
            started = time.monotonic()
            hive.start()
            print(f"started in {time.monotonic() - started:.1f}s at {hive.url}")
            print(hive.verify())
            print(hive.distinct_credentials())
        finally:
            hive.stop()
