"""Taking snapshots when accounts are read, without ever delaying the read.

`offer` is called with a freshly built account view: it only checks, in memory, whether the
account's period has passed, and queues the snapshot (a bounded queue: when full, the
snapshot is dropped and logged, never waited for). One background task writes the queue
to the store; a write that fails is logged (its exception type, never a URL or a value)
and the next read of that account tries again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Callable

from gateway.history.codec import Snapshot
from gateway.history.store import HistoryStore

log = logging.getLogger("gateway.history")


class SnapshotRecorder:
    def __init__(self, store: HistoryStore, every_s: float, max_pending: int,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.every_s = every_s
        self.clock = clock
        self.queue: asyncio.Queue[Callable[[], Snapshot]] | None = None
        self.max_pending = max_pending
        self.last: dict[str, float] = {}       # account id -> when its last snapshot was queued (this process)
        self.checked: set[str] = set()         # accounts whose last stored snapshot time was read once
        self.pending: dict[str, int] = {}     # account id -> its snapshots queued, not yet written
        self.worker: asyncio.Task | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def due(self, account_id: str) -> bool:
        last = self.last.get(account_id)
        return last is None or self.clock() - last >= self.every_s

    def offer(self, account_id: str, make: Callable[[], Snapshot]) -> bool:
        """Queue a snapshot of the account if its period has passed; `make` builds it later,
        in the writer. Returns whether it was queued. Never blocks, never raises."""
        if not self.due(account_id):
            return False
        if self.queue is None:
            self.queue = asyncio.Queue(self.max_pending)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._write_forever(), name="history-writer")
        try:
            self.queue.put_nowait((account_id, make))   # type: ignore[arg-type]
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("history: snapshot of an account dropped, %d writes pending", self.max_pending)
            return False
        self.last[account_id] = self.clock()
        self.pending[account_id] = self.pending.get(account_id, 0) + 1
        return True

    async def settled(self, account_id: str, timeout_s: float = 1.0) -> None:
        """Wait (briefly) until the account's queued snapshots are written: a history read
        right after a live read then sees it. Only history reads wait; never a live one."""
        deadline = self.clock() + timeout_s
        while self.pending.get(account_id) and self.clock() < deadline:
            await asyncio.sleep(0.005)

    async def _write_forever(self) -> None:
        assert self.queue is not None
        while True:
            account_id, make = await self.queue.get()   # type: ignore[misc]
            try:
                await self._write(account_id, make)
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # the driver's errors have no common base; the next read retries
                self.failed += 1
                self.last.pop(account_id, None)
                log.error("history: snapshot write failed (%s)", type(exc).__name__)
            finally:
                left = self.pending.get(account_id, 1) - 1
                if left > 0:
                    self.pending[account_id] = left
                else:
                    self.pending.pop(account_id, None)
                self.queue.task_done()

    async def _write(self, account_id: str, make: Callable[[], Snapshot]) -> None:
        if account_id not in self.checked and self.every_s > 0:
            # Once per account per process: another process (or this one before a restart)
            # may have taken its snapshot for this period already.
            last = await self.store.last_taken_at(account_id)
            self.checked.add(account_id)
            if last is not None and (datetime.now(timezone.utc) - last).total_seconds() < self.every_s:
                return
        await self.store.write(make())
        self.written += 1

    async def drain(self) -> None:
        """Wait until every queued snapshot is written (tests, shutdown)."""
        if self.queue is not None:
            await self.queue.join()

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            try:
                await self.worker
            except (asyncio.CancelledError, Exception):
                pass
