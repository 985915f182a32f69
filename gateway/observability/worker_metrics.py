"""One metrics view over the worker processes of `serve --workers N`.

prometheus-client's multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set before the
library is imported, every counter and histogram of every worker lives in a memory-mapped
file in that directory, and a scrape answered by any worker merges them all (counters
and histograms summed over workers). `shared_metrics_dir` makes that directory for the
CLI (a fresh temporary one, removed when the server stops) before the workers start.

State read from live objects (breakers, upstream calls in flight or queued, the engine's
fallback count) cannot be merged from another worker's memory: each worker publishes it
into the directory once a second (`publish_every`) and right before it answers a scrape.
The gauges keep one series per worker, labelled with its `pid`; a worker that stops
takes its series away, and the series of one that died are swept at the next scrape.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Iterator

ENV = "PROMETHEUS_MULTIPROC_DIR"
PUBLISH_INTERVAL_S = 1.0
_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


def enabled() -> bool:
    """True in a process whose metrics are shared with its sibling workers."""
    return bool(os.environ.get(ENV))


@contextlib.contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """Point worker processes started inside the block at one metrics directory: the
    operator's own PROMETHEUS_MULTIPROC_DIR (kept), else a temporary one (removed after)."""
    given = os.environ.get(ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    path = tempfile.mkdtemp(prefix="balance-gateway-metrics-")
    os.environ[ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead_workers() -> None:
    """Drop the live-state series of workers that are gone (crashed, or replaced)."""
    from prometheus_client import multiprocess
    path = os.environ[ENV]
    dead = {int(m.group(1)) for f in glob.glob(os.path.join(path, "gauge_live*.db"))
            if (m := _LIVE_FILE.search(os.path.basename(f))) and not _alive(int(m.group(1)))}
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)


def merged_registry() -> Any:
    """A registry that reads every worker's files (built per scrape, as the library advises)."""
    from prometheus_client import CollectorRegistry, multiprocess
    sweep_dead_workers()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def worker_stopping() -> None:
    """This worker's live-state series go away with it."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(os.getpid(), os.environ[ENV])


async def publish_every(publish: Callable[[], None], interval_s: float = PUBLISH_INTERVAL_S) -> None:
    """Run `publish` now and then every `interval_s` until cancelled."""
    while True:
        publish()
        await asyncio.sleep(interval_s)
