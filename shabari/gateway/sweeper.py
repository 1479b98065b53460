"""The keep-alive sweeper: a background task that stops pods idle past their window.

Once per `interval_s` it flushes the decision log and asks the scheduler which idle pods
expired (the keep-alive policy is the scheduler's, with time passed in); the pool stops them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shabari.gateway.decisionlog import DecisionLog
from shabari.gateway.pool import PodPool


class KeepAliveSweeper:
    def __init__(self, pool: PodPool, decisions: DecisionLog, now: Callable[[], float],
                 interval_s: float) -> None:
        self._pool = pool
        self._decisions = decisions
        self._now = now
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="shabari-keepalive")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def sweep(self) -> None:
        await self._decisions.flush()
        await self._pool.expire(self._now())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.sweep()
