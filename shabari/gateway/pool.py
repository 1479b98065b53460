"""The gateway's pods: the scheduler's pool model, the ledger and the backend kept in step.

Every change of a pod's state goes through here, so the scheduler (which decides placements),
the `PoolLedger` (busy/idle integrals and pod gauges) and the backend (which runs the pods)
never disagree, and every waiter for capacity is woken when room appears.
"""

from __future__ import annotations

import asyncio
import logging

from shabari.backends.base import Backend
from shabari.core import FunctionName, PodId, Size
from shabari.gateway.metrics import PoolLedger
from shabari.scheduler import Scheduler

log = logging.getLogger(__name__)


class PodPool:
    """Applies pod transitions to the scheduler, the ledger and the backend together."""

    def __init__(self, ledger: PoolLedger, backend: Backend) -> None:
        self.ledger = ledger
        self.backend = backend
        self._scheduler: Scheduler | None = None
        self._capacity = asyncio.Event()

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise RuntimeError("the gateway's scheduler is built by start(); call it first")
        return self._scheduler

    @property
    def has_scheduler(self) -> bool:
        return self._scheduler is not None

    def attach(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    # -- capacity waiters ------------------------------------------------------------------

    def capacity_changed(self) -> None:
        """Wake every invocation waiting for room (they place again)."""
        ev, self._capacity = self._capacity, asyncio.Event()
        ev.set()

    async def wait_for_capacity(self, timeout_s: float) -> None:
        """Return when capacity changes or after `timeout_s`, whichever comes first."""
        ev = self._capacity
        try:
            await asyncio.wait_for(ev.wait(), timeout=timeout_s)
        except TimeoutError:
            pass

    # -- transitions -----------------------------------------------------------------------

    def started(self, pod_id: PodId, function: str, size: Size, now: float) -> None:
        """A cold-started pod is up and runs its first invocation."""
        self.scheduler.ready(pod_id, now)
        self.ledger.started(pod_id, function, size, now)

    def busy(self, pod_id: PodId, size: Size, now: float) -> None:
        """A warm pod (possibly resized to `size`) takes an invocation."""
        self.ledger.busy(pod_id, size, now)

    def release(self, pod_id: PodId, now: float) -> None:
        """The invocation on `pod_id` ended: the pod is idle and warm."""
        self.scheduler.release(pod_id, now)
        self.ledger.idle(pod_id, now)
        self.capacity_changed()

    def forget(self, pod_id: PodId) -> None:
        """A pod that never came up (its start failed): out of the model, nothing to stop."""
        self.scheduler.remove(pod_id)
        self.capacity_changed()

    async def discard(self, pod_id: PodId, now: float) -> None:
        """A pod that failed or must go: out of the model and the ledger, then stopped."""
        self.scheduler.remove(pod_id)
        self.ledger.stopped(pod_id, now)
        self.capacity_changed()
        await self.stop(pod_id)

    async def evicted(self, pod_ids: tuple[PodId, ...] | list[PodId], now: float) -> None:
        """Pods the scheduler already dropped (evicted or expired): out of the ledger, stopped."""
        for pod_id in pod_ids:
            self.ledger.stopped(pod_id, now)
            await self.stop(pod_id)

    async def drop_idle(self, function: str, now: float) -> None:
        """Stop `function`'s idle pods (busy ones are released later, then expire)."""
        if self._scheduler is None:
            return
        for pod in self._scheduler.pods(FunctionName(function)):
            if pod.busy:
                continue
            self._scheduler.remove(pod.pod_id)
            self.ledger.stopped(pod.pod_id, now)
            await self.stop(pod.pod_id)

    async def expire(self, now: float) -> None:
        """Stop the pods whose keep-alive window ended."""
        await self.evicted([p.pod_id for p in self.scheduler.expire(now)], now)

    def close_ledger(self, now: float) -> None:
        """Shutdown: every pod the ledger knows stops now (the backend stops them itself)."""
        for pod_id in self.ledger.pod_ids():
            self.ledger.stopped(pod_id, now)

    async def stop(self, pod_id: PodId) -> None:
        try:
            await self.backend.stop_pod(pod_id)
        except Exception as exc:  # best effort: the pod is gone from the model already
            log.warning("stopping pod %s failed: %s", pod_id, exc)
