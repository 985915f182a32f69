"""The history of one gateway process: the store on the `[store]` database, the recorder,
and the background compaction (retention and downsampling, [history])."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import GatewayConfig, HistoryConfig
from gateway.history.recorder import SnapshotRecorder
from gateway.history.store import HistoryStore

log = logging.getLogger("gateway.history")


class History:
    def __init__(self, engine: AsyncEngine, config: HistoryConfig, *, owns_engine: bool = True):
        self.engine = engine
        self.config = config
        self.store = HistoryStore(engine)
        self.recorder = SnapshotRecorder(self.store, config.snapshot_every_s, config.max_pending_writes)
        self.owns_engine = owns_engine
        self.tasks: list[asyncio.Task] = []

    @classmethod
    def from_config(cls, config: GatewayConfig) -> "History | None":
        if config.store is None or not config.history.enabled:
            return None
        from gateway.store.engine import create_engine
        return cls(create_engine(config.store), config.history)

    async def compact_once(self, now: datetime | None = None) -> int:
        c = self.config
        return await self.store.compact(now or datetime.now(timezone.utc), c.raw_for_hours * 3600,
                                        c.hourly_for_days * 86_400, c.daily_for_days * 86_400)

    def start(self) -> None:
        """Background work for the app's lifespan: compaction every compact_every_s."""
        self.tasks.append(asyncio.get_running_loop().create_task(self._compact_forever(), name="history-compact"))

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.compact_every_s)
            try:
                deleted = await self.compact_once()
                if deleted:
                    log.info("history: compaction removed %d points", deleted)
            except Exception as exc:   # the next round tries again
                log.error("history: compaction failed (%s)", type(exc).__name__)

    async def close(self, drain_s: float = 2.0) -> None:
        for task in self.tasks:
            task.cancel()
        try:   # snapshots already queued are written, unless the database is too slow for shutdown
            await asyncio.wait_for(self.recorder.drain(), drain_s)
        except (asyncio.TimeoutError, Exception):
            pending = self.recorder.queue.qsize() if self.recorder.queue is not None else 0
            if pending:
                log.warning("history: %d snapshots not written at shutdown", pending)
        await self.recorder.close()
        if self.owns_engine:
            await self.engine.dispose()
