"""The gateway's pods: the scheduler's pool model, the ledger and the backend kept in step.

Every change of a pod's state goes through here, so the scheduler (which decides placements),
the `PoolLedger` (busy/idle integrals and pod gauges) and the backend (which runs the pods)
never disagree, and every waiter for capacity is woken when room appears.

Two kinds of waiters: an invocation queued behind a busy pod of its own function waits in
that function's FIFO and is woken alone when one of the function's pods is released (one
release, one pod, one waiter: at 64 connections on one warm pod, waking every waiter on every
release made each release cost O(waiters) placements and capped the gateway at a few hundred
invocations per second); an invocation waiting for room in a full cluster waits for any
capacity change (every release, stop or failure), as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

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
        #: function -> invocations queued behind its busy pods, first come first served
        #: (waiter, the size it needs) per function
        self._behind: dict[str, deque[tuple[asyncio.Future[None], Size | None]]] = {}

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

    def capacity_changed(self, released: str | None = None,
                         pod_size: Size | None = None) -> None:
        """Wake the invocations waiting for room (they place again).

        `released`: one pod of that function (of `pod_size`) went idle, which wakes only the
        first invocation queued behind that function's busy pods that the pod can take (its
        memory and GPUs fit; its CPU too, or the platform resizes in place); anything else (a
        pod stopped or lost) wakes every queued invocation. Waiters for room in a full cluster
        always wake.
        """
        ev, self._capacity = self._capacity, asyncio.Event()
        ev.set()
        if released is not None:
            q = self._behind.get(released)
            if not q:
                return
            resize = self._scheduler is not None and self._scheduler.config.supports_resize
            for i, (fut, need) in enumerate(q):
                if fut.done():
                    continue
                if pod_size is None or need is None or _fits(pod_size, need, resize):
                    del q[i]
                    fut.set_result(None)
                    break
            return
        for q in self._behind.values():
            while q:
                fut, _ = q.popleft()
                if not fut.done():
                    fut.set_result(None)

    def queued_behind(self, function: str) -> int:
        """Invocations of `function` now queued behind its busy pods."""
        q = self._behind.get(function)
        return len(q) if q else 0

    async def wait_for_capacity(self, timeout_s: float, behind: str | None = None,
                                size: Size | None = None) -> None:
        """Return when capacity changes or after `timeout_s`, whichever comes first.

        `behind`: the invocation queues behind that function's busy pods (FIFO, woken by a
        release of one that fits `size`); otherwise it waits for any capacity change.
        """
        loop = asyncio.get_running_loop()
        if behind is None:
            ev = self._capacity
            fut: asyncio.Future[None] = loop.create_future()
            waiter = asyncio.ensure_future(ev.wait())
            waiter.add_done_callback(lambda _t: _wake(fut))
        else:
            fut = loop.create_future()
            self._behind.setdefault(behind, deque()).append((fut, size))
            waiter = None
        timer = loop.call_later(timeout_s, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()
            if waiter is not None:
                waiter.cancel()
            else:  # timed out or cancelled while queued: leave the queue (a woken one left)
                if not fut.done():
                    fut.cancel()
                q = self._behind.get(behind or "")
                if q:
                    for i, (f, _) in enumerate(q):
                        if f is fut:
                            del q[i]
                            break

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
        pod = self.scheduler.pod(pod_id)
        self.scheduler.release(pod_id, now)
        self.ledger.idle(pod_id, now)
        if pod is None:
            self.capacity_changed()
        else:
            self.capacity_changed(released=pod.function, pod_size=pod.size)

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


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fits(pod: Size, need: Size, resize: bool) -> bool:
    """Whether an idle pod of size `pod` can take an invocation decided at `need` (the
    scheduler's warm rule, without the node's room for a resize up)."""
    return (pod.memory_mib >= need.memory_mib and pod.gpu == need.gpu
            and (resize or pod.cpu_millicores >= need.cpu_millicores))
