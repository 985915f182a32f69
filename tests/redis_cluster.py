"""A real Redis Cluster on loopback for tests: three masters, each with one replica.

`redis_cluster` (session fixture; import it into a test module) answers a `LocalCluster`:
the one at $BG_TEST_REDIS_CLUSTER_URL when set, else the one this checkout's tests left
on their ports, else six `redis-server --cluster-enabled yes` processes it starts (joined
with `redis-cli --cluster create`) and stops at the end of the session. The ports come
from the checkout's path, so several checkouts on one machine do not meet.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
import zlib
from pathlib import Path
from typing import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.tooling import missing

ROOT = Path(__file__).resolve().parent.parent
NODES = 6            # three masters, three replicas
NODE_TIMEOUT_MS = 1000   # how soon a dead master's replica takes over


def _base_port() -> int:
    # 12000-20990, and the cluster bus on port + 10000: all below the ephemeral range
    # (32768 up), where a client's outgoing connection could hold the port.
    return 12000 + (zlib.crc32(str(ROOT).encode()) % 900) * 10


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))


def _answers(port: int) -> bool:
    try:
        return bool(_node(port).ping())
    except redis.RedisError:
        return False


class LocalCluster:
    def __init__(self, ports: list[int], workdir: Path | None = None):
        self.ports = ports
        self.workdir = workdir            # set when this session runs the processes
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def owned(self) -> bool:
        return self.workdir is not None

    def node(self, port: int) -> redis.Redis:
        return _node(port)

    def live_port(self) -> int:
        return next(p for p in self.ports if _answers(p))

    # ---- layout

    def roles(self) -> dict[int, str]:
        """port -> 'master' / 'slave' for every node that answers, as the node says itself."""
        out = {}
        for port in self.ports:
            with contextlib.suppress(redis.RedisError):
                out[port] = _node(port).execute_command("ROLE")[0].decode()
        return out

    def masters(self) -> list[int]:
        return sorted(p for p, role in self.roles().items() if role == "master")

    def replica_of(self, master: int) -> int:
        """The port of the replica that follows `master` and is in sync with it."""
        for port in self.ports:
            with contextlib.suppress(redis.RedisError):
                role = _node(port).execute_command("ROLE")
                if role[0] == b"slave" and int(role[2]) == master and role[3] == b"connected":
                    return port
        raise AssertionError(f"no replica follows the master on {master}")

    def master_of_key(self, key: str) -> int:
        slot = key_slot(key.encode())
        for start, end, master, *_ in _node(self.live_port()).execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"slot {slot} is served by no node")

    def healthy(self) -> bool:
        """Every node answers, agrees the cluster is ok, and three masters have an in-sync replica each."""
        try:
            for port in self.ports:
                info = _node(port).cluster("INFO")
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != NODES:
                    return False
            masters = self.masters()
            return len(masters) == 3 and all(self.replica_of(m) for m in masters)
        except (redis.RedisError, AssertionError):
            return False

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline:
                raise AssertionError(f"the Redis Cluster on {self.ports} did not become healthy: {self.roles()}")
            time.sleep(0.2)

    def flush(self) -> None:
        for port in self.masters():
            _node(port).flushall()

    # ---- faults

    def kill(self, port: int) -> None:
        """SIGKILL one node (only a cluster this session runs)."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a killed node again; it rejoins from its nodes.conf (a master comes back as a replica)."""
        self.procs[port] = self._spawn(port)

    # ---- processes

    def _spawn(self, port: int) -> subprocess.Popen:
        assert self.workdir is not None
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             # a replica may take over however long its master has been gone
             "--cluster-replica-validity-factor", "0",
             "--save", "", "--appendonly", "no", "--dir", str(node_dir), "--daemonize", "no",
             "--loglevel", "warning", "--logfile", str(node_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                said = (node_dir / "redis.log").read_text()[-1500:] if (node_dir / "redis.log").exists() else ""
                raise RuntimeError(f"redis-server on port {port} did not start: {said}")
            time.sleep(0.05)
        return proc

    def start(self) -> None:
        for port in self.ports:
            self.procs[port] = self._spawn(port)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        self.wait_healthy()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def open_cluster() -> Iterator[LocalCluster]:
    """The cluster for this session (see the module's docstring); bench.scaleout uses it too."""
    given = os.environ.get("BG_TEST_REDIS_CLUSTER_URL")
    if given:
        from gateway.upstream.redis_client import parse_redis_url
        ports = [port for _, port in parse_redis_url(given).nodes]
        cluster = LocalCluster(ports)
        # the given cluster's own node list: its ports, whichever seed was named
        nodes = _node(ports[0]).execute_command("CLUSTER NODES")   # {"host:port": {...}}
        cluster.ports = sorted(int(address.rsplit(":", 1)[1]) for address in nodes)
        yield cluster
        return
    base = _base_port()
    ports = list(range(base, base + NODES))
    with open(f"/tmp/bg-test-redis-cluster-{base}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # one session of this checkout starts it at a time
        cluster = LocalCluster(ports)
        if all(_answers(p) for p in ports):
            cluster.wait_healthy(30)          # left by a session that is still running
            fcntl.flock(lock, fcntl.LOCK_UN)
            yield cluster
            return
        if any(_answers(p) for p in ports):
            missing(f"some of ports {ports} answer but not as this checkout's Redis Cluster")
        if not (shutil.which("redis-server") and shutil.which("redis-cli")):
            missing("the Redis Cluster tests need redis-server and redis-cli (Debian: redis-server, redis-tools)")
        workdir = Path(f"/tmp/bg-test-redis-cluster-{base}")
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir()
        cluster.workdir = workdir
        try:
            cluster.start()
        except Exception:
            cluster.stop()
            raise
        fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    with open_cluster() as cluster:
        yield cluster
