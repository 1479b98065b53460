"""The gateway's pods on the backend, following the scheduler's model of them.

The scheduler owns pod state and announces every transition (`PodEvent`); the `PoolLedger`
integrates them and this pool turns them into what the platform must do: wake invocations
waiting for room, and stop the pods that left the model (evicted before a cold start,
expired, failed, dropped at a registry change).

Two kinds of waiters (the simulator wakes its own in exactly this order):

- for room in a full cluster: woken by every capacity change (a pod idle or stopped), oldest
  first; a waiter keeps its place in line until it is placed or gives up;
- behind a busy pod of its own function: a FIFO per function, of which a release of one of
  the function's pods wakes only the first waiter that pod can take (`scheduler.can_take`:
  one release, one pod, one waiter: at 64 connections on one warm pod, waking every waiter on
  every release made each release cost O(waiters) placements, and with two pod sizes a
  misfit woken first left the pod idle); a pod stopped or lost wakes them all. Their number is the
  scheduler's `queued` (the wait of a newcomer grows with the queue ahead of it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable

from shabari.backends.base import Backend
from shabari.core import FunctionName, PodId, Size
from shabari.gateway.metrics import PoolLedger
from shabari.scheduler import PodEvent, PodEventKind, Scheduler, can_take

log = logging.getLogger(__name__)


class PodPool:
    """The scheduler (once attached), its ledger, the backend's pods and capacity waiters."""

    def __init__(self, ledger: PoolLedger, backend: Backend) -> None:
        self.ledger = ledger
        self.backend = backend
        self._scheduler: Scheduler | None = None
        #: invocations waiting for room, oldest first (each with its pending wake-up)
        self._room: dict[object, asyncio.Future[None]] = {}
        #: function -> invocations queued behind its busy pods, first come first served, with
        #: the size each needs
        self._behind: dict[str, deque[tuple[asyncio.Future[None], Size | None]]] = {}
        self._background: set[asyncio.Task[None]] = set()

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
        scheduler.subscribe(self.ledger)
        scheduler.subscribe(self._on_event)

    def _on_event(self, ev: PodEvent) -> None:
        if ev.kind is PodEventKind.IDLE:
            self.capacity_changed(released=ev.function, pod_size=ev.size)
        elif ev.kind is PodEventKind.STOPPED:
            self.capacity_changed()

    # -- capacity waiters ------------------------------------------------------------------

    def capacity_changed(self, released: str | None = None,
                         pod_size: Size | None = None) -> None:
        """Wake the invocations waiting for room (they place again), oldest first.

        `released`: one pod of that function (of `pod_size`) went idle, which wakes only the
        first invocation queued behind that function's busy pods that the pod can take;
        anything else (a pod stopped or lost, a registry change) wakes every queued one.
        """
        for fut in self._room.values():
            _wake(fut)
        if released is not None:
            q = self._behind.get(released)
            if not q:
                return
            resize = self._scheduler is not None and self._scheduler.config.supports_resize
            for i, (fut, need) in enumerate(q):
                if fut.done():
                    continue
                if pod_size is None or need is None or can_take(pod_size, need, resize):
                    del q[i]
                    fut.set_result(None)
                    break
            return
        for q in self._behind.values():
            while q:
                _wake(q.popleft()[0])

    def queued_behind(self, function: str) -> int:
        """Invocations of `function` now queued behind its busy pods."""
        q = self._behind.get(function)
        return len(q) if q else 0

    async def wait_for_capacity(self, waiter: object, timeout_s: float,
                                behind: str | None = None, size: Size | None = None) -> None:
        """Return when capacity changes or after `timeout_s`, whichever comes first.

        `behind`: the invocation (needing `size`) queues behind that function's busy pods
        (FIFO, woken by a release of one that can take it); otherwise it waits for room and
        keeps its place in line until `done_waiting(waiter)`.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if behind is None:
            self._room[waiter] = fut
        else:
            self._room.pop(waiter, None)
            self._behind.setdefault(behind, deque()).append((fut, size))
        timer = loop.call_later(max(timeout_s, 0.0), _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()
            if behind is not None:  # timed out or cancelled while queued: leave the queue
                if not fut.done():
                    fut.cancel()
                q = self._behind.get(behind)
                if q:
                    for i, (f, _) in enumerate(q):
                        if f is fut:
                            del q[i]
                            break

    def done_waiting(self, waiter: object) -> None:
        """`waiter` was placed (or gave up): out of the line."""
        self._room.pop(waiter, None)


    # -- stopping pods that left the model ---------------------------------------------------

    async def stop_all(self, pod_ids: Iterable[PodId]) -> None:
        for pod_id in pod_ids:
            await self.stop(pod_id)

    def stop_later(self, pod_ids: Iterable[PodId]) -> None:
        """Stop pods in the background (expired ones: nobody waits for their resources)."""
        for pod_id in pod_ids:
            task = asyncio.create_task(self.stop(pod_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def drop_idle(self, function: str, now: float) -> None:
        """Stop `function`'s idle pods (busy ones are released later, then expire)."""
        if self._scheduler is None:
            return
        for pod in self._scheduler.pods(FunctionName(function)):
            if pod.busy:
                continue
            self._scheduler.remove(pod.pod_id, now)
            await self.stop(pod.pod_id)

    async def expire(self, now: float) -> None:
        """Stop the pods whose keep-alive window ended."""
        await self.stop_all([p.pod_id for p in self.scheduler.expire(now)])

    def shutdown(self, now: float) -> None:
        """Every pod leaves the model now (the backend's close stops them)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(now)

    async def stop(self, pod_id: PodId) -> None:
        try:
            await self.backend.stop_pod(pod_id)
        except Exception as exc:  # best effort: the pod is gone from the model already
            log.warning("stopping pod %s failed: %s", pod_id, exc)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
