"""The gateway's background duties: keep-alive sweeps, decision-log flushes, checkpoints.

Once per `interval_s` the sweeper flushes the decision log and asks the scheduler which idle
pods expired (the keep-alive policy is the scheduler's, with time passed in); the pool stops
them. Once per `checkpoint_interval_s` it writes the models that changed (DESIGN 4.3
durability), and in between those that learned a lot since their last write
(`Checkpoints.due`).

No error ends the loop: a duty that raises (a full disk under the decision log, a backend
that cannot stop a pod) is logged (once when it starts failing, once when it recovers),
counted in `shabari_background_errors{loop}`, and tried again next round. While a duty keeps
failing, `degraded` names it and `/readyz` answers 503, so an operator sees the problem
instead of a gateway that silently stopped expiring pods or writing what it learned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shabari.gateway.checkpoints import Checkpoints
from shabari.gateway.decisionlog import DecisionLog
from shabari.gateway.metrics import GatewayMetrics
from shabari.gateway.pool import PodPool

log = logging.getLogger(__name__)


class KeepAliveSweeper:
    def __init__(self, pool: PodPool, decisions: DecisionLog, now: Callable[[], float],
                 interval_s: float, *, checkpoints: Checkpoints | None = None,
                 checkpoint_interval_s: float = 30.0,
                 metrics: GatewayMetrics | None = None,
                 settle: Callable[[], None] | None = None) -> None:
        """`settle` applies learning still queued behind responses (before a checkpoint)."""
        self._pool = pool
        self._decisions = decisions
        self._now = now
        self._interval_s = interval_s
        self._checkpoints = checkpoints
        self._checkpoint_interval_s = checkpoint_interval_s
        self._metrics = metrics
        self._settle = settle
        self._dropped_seen = 0
        self._task: asyncio.Task[None] | None = None
        #: duty -> its last error, while it keeps failing
        self.failing: dict[str, str] = {}

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

    @property
    def degraded(self) -> dict[str, str]:
        """What keeps failing now (duty -> error): empty when all is well."""
        out = dict(self.failing)
        if not self._decisions.healthy:
            out["decision_log"] = self._decisions.last_error or "write failed"
        if self._checkpoints is not None and not self._checkpoints.healthy:
            out["checkpoints"] = self._checkpoints.last_error or "write failed"
        return out

    async def sweep(self) -> None:
        await self._duty("decision_log", self._flush)
        await self._duty("sweep", lambda: self._pool.expire(self._now()))

    async def checkpoint(self, only: list[str] | None = None) -> None:
        if self._checkpoints is not None:
            await self._duty("checkpoint", lambda: self._write_checkpoints(only))

    async def _flush(self) -> None:
        ok = await self._decisions.flush()
        if self._metrics is None:
            return
        if not ok:
            self._metrics.background_errors.labels("decision_log").inc()
        dropped = self._decisions.dropped - self._dropped_seen
        if dropped > 0:
            self._metrics.decision_log_dropped.inc(dropped)
            self._dropped_seen += dropped

    async def _write_checkpoints(self, only: list[str] | None = None) -> None:
        assert self._checkpoints is not None
        if self._settle is not None:
            self._settle()
        errors = self._checkpoints.errors
        written = await self._checkpoints.write_all(force=False, only=only)
        if self._metrics is not None:
            if written:
                self._metrics.checkpoints.labels("ok").inc(len(written))
            if self._checkpoints.errors > errors:
                self._metrics.checkpoints.labels("error").inc()

    async def _duty(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.background_errors.labels(name).inc()
            if name not in self.failing:
                log.exception("background duty %r failed; retrying every round", name)
            self.failing[name] = f"{type(exc).__name__}: {exc}"
            return
        if self.failing.pop(name, None) is not None:
            log.info("background duty %r works again", name)
        self._report()

    def _report(self) -> None:
        if self._metrics is None:
            return
        degraded = self.degraded
        for reason in ("decision_log", "checkpoints", "sweep"):
            self._metrics.degraded.labels(reason).set(1 if reason in degraded else 0)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + self._checkpoint_interval_s
        while True:
            await asyncio.sleep(self._interval_s)
            await self.sweep()
            if loop.time() >= next_checkpoint:
                next_checkpoint = loop.time() + self._checkpoint_interval_s
                await self.checkpoint()
            elif self._checkpoints is not None and self._checkpoints.healthy and \
                    (due := self._checkpoints.due()):
                await self.checkpoint(due)
            self._report()
