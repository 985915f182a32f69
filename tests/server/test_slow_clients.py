"""Slow and greedy connections, over real sockets on loopback: a request's head and body must
arrive in time, a head has a size limit, idle connections close, and the connection cap
answers 503 (gateway/server/connection_guard.py, [server] in docs/CONFIG.md).

Every wait is bounded: deadlines here are 0.5-1 s and each assertion allows 10 s or more, so
a loaded machine makes a test slower, not wrong.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import httpx
import pytest

from gateway.server.app import create_app
from gateway.config import GatewayConfig
from gateway.server.connection_guard import GuardedHttpToolsProtocol, uvicorn_options
from gateway.server.serving import ServerThread, free_port
from gateway.simulation.world import World

IMPLS = ["h11"] + (["httptools"] if GuardedHttpToolsProtocol is not None else [])
QUERY = b'{"query": "{ viewer { id } }"}'
BOUND_S = 15


@contextlib.contextmanager
def gateway(impl: str, **server: object) -> Iterator[ServerThread]:
    world = World.generate(0, size=2)
    with ServerThread(world.combined_app()) as sims:
        raw = world.config_dict(sims.url, server=server, limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000})
        config = GatewayConfig.model_validate(raw)
        with ServerThread(create_app(config), **uvicorn_options(config.server, impl)) as gw:
            yield gw


def connect(gw: ServerThread) -> socket.socket:
    return socket.create_connection((gw.host, gw.port), timeout=BOUND_S)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket timeout bounds the wait)."""
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


def head(length: int | None = None) -> bytes:
    lines = [b"POST /graphql HTTP/1.1", b"host: gw", b"authorization: Bearer demo-key", b"content-type: application/json"]
    if length is not None:
        lines.append(b"content-length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def post(gw: ServerThread) -> httpx.Response:
    return httpx.post(gw.url + "/graphql", content=QUERY, timeout=BOUND_S,
                      headers={"authorization": "Bearer demo-key", "content-type": "application/json"})


@pytest.mark.parametrize("impl", IMPLS)
def test_slow_header_senders_are_cut_off_and_others_are_served(impl, caplog):
    caplog.set_level(logging.WARNING)
    with gateway(impl, header_timeout_s=1.0) as gw:
        trickling = [connect(gw) for _ in range(40)]
        for sock in trickling:
            sock.sendall(b"POST /graphql HTTP/1.1\r\nhost: gw\r\n")
        started = time.monotonic()
        closed: set[int] = set()
        while len(closed) < len(trickling) and time.monotonic() - started < BOUND_S:
            for i, sock in enumerate(trickling):   # one header line every 0.2 s, as the probe did
                if i not in closed:
                    try:
                        sock.sendall(b"x-slow-%d: 1\r\n" % i)
                    except OSError:
                        closed.add(i)
            assert post(gw).json()["data"]["viewer"]["id"] == "demo"   # meanwhile, others are served
            time.sleep(0.2)
        assert len(closed) == len(trickling), f"{len(trickling) - len(closed)} slow connections still open"
        answers = [read_until_closed(sock) for sock in trickling]
        assert all(a.startswith(b"HTTP/1.1 408 ") and b'"REQUEST_TIMEOUT"' in a for a in answers if a), answers[:3]
        for sock in trickling:
            sock.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("impl", IMPLS)
def test_a_connection_that_never_sends_is_closed_without_an_answer(impl):
    with gateway(impl, header_timeout_s=0.5) as gw, connect(gw) as sock:
        assert read_until_closed(sock) == b""


@pytest.mark.parametrize("impl", IMPLS)
def test_a_slow_body_is_answered_408_and_the_request_never_runs(impl, caplog):
    caplog.set_level(logging.WARNING)
    with gateway(impl, body_timeout_s=0.5, coalesce_identical=False) as gw, connect(gw) as sock:
        sock.sendall(head(len(QUERY)) + QUERY[:10])
        answer = read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"the request body did not arrive" in answer
    with gateway(impl, body_timeout_s=0.5) as gw, connect(gw) as sock:   # the gate reads the body itself
        sock.sendall(head(len(QUERY)) + QUERY[:10])
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("impl", IMPLS)
def test_a_body_in_pieces_within_the_deadline_is_served(impl):
    with gateway(impl, body_timeout_s=5.0, header_timeout_s=5.0) as gw, connect(gw) as sock:
        sock.sendall(head(len(QUERY))[:20])
        time.sleep(0.1)
        sock.sendall(head(len(QUERY))[20:])
        for i in range(0, len(QUERY), 10):
            sock.sendall(QUERY[i:i + 10])
            time.sleep(0.05)
        reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 ") and b'"demo"' in reply


@pytest.mark.parametrize("impl", IMPLS)
def test_an_oversized_request_head_is_refused(impl):
    with gateway(impl, max_header_bytes=4096) as gw, connect(gw) as sock:
        with contextlib.suppress(OSError):   # the server may close while this is still sending
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: gw\r\n")
            for i in range(20):
                sock.sendall(b"x-pad-%d: %s\r\n" % (i, b"a" * 1000))
        answer = read_until_closed(sock)
        # httptools has no limit of its own: the guard answers 431; h11's limit answers 400 first.
        expected = b"HTTP/1.1 431 " if impl == "httptools" else b"HTTP/1.1 400 "
        assert answer.startswith(expected), answer[:100]
        # a normal head is fine
        assert httpx.get(gw.url + "/health", timeout=BOUND_S).status_code == 200


@pytest.mark.parametrize("impl", IMPLS)
def test_idle_keep_alive_connections_close_after_the_timeout(impl):
    with gateway(impl, keep_alive_timeout_s=0.5) as gw, connect(gw) as sock:
        sock.sendall(head(len(QUERY)) + QUERY)
        first = read_until_closed(sock)   # answered, then closed once idle
        assert first.startswith(b"HTTP/1.1 200 ") and first.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize("impl", IMPLS)
def test_beyond_max_connections_new_requests_get_503_until_some_close(impl):
    with gateway(impl, max_connections=4, header_timeout_s=60) as gw:
        hogs = [connect(gw) for _ in range(4)]
        for sock in hogs:
            sock.sendall(b"GET /health HTTP/1.1\r\n")   # half a head: they hold their connections
        time.sleep(0.2)
        assert post(gw).status_code == 503
        for sock in hogs:
            sock.close()
        deadline = time.monotonic() + BOUND_S
        while post(gw).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert post(gw).status_code == 200


def test_serve_applies_the_server_limits_in_every_worker(tmp_path):
    """`serve --workers 2` hands the guarded protocol to worker processes (it must pickle)."""
    world = World.generate(0, size=2)
    with ServerThread(world.combined_app()) as sims:
        config = tmp_path / "gateway.toml"
        config.write_text(world.config_toml(sims.url, server={"header_timeout_s": 0.5}))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CONFIG"}
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                                 "--workers", "2", "--log-level", "warning"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stdout.read().decode()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.1)
            for _ in range(4):   # connections land on either worker
                with socket.create_connection(("127.0.0.1", port), timeout=BOUND_S) as sock:
                    sock.sendall(b"GET /health HTTP/1.1\r\nhost: gw\r\n")
                    assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=20)
