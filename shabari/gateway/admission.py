"""Admission control: a bounded number of running invocations and a bounded wait queue.

Overload must never grow memory without bound, so the gateway admits at most `max_concurrent`
invocations at once, lets at most `max_queue` more wait (FIFO) for a slot, and sheds the rest
immediately with 429 + Retry-After. A waiter that does not get a slot within `queue_timeout_s`
is answered 503 + Retry-After, and while draining for shutdown every new request gets 503
(except one that arrived before the drain began and was still uploading: `during_drain`).
Every shed request is counted, so "server counters equal client counts" can be checked.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shabari.core import AdmissionError


class AdmissionController:
    """FIFO slots with a bounded waiting room; pure asyncio, used only on the event loop."""

    def __init__(self, max_concurrent: int, max_queue: int, queue_timeout_s: float) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.running = 0
        self.draining = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle = asyncio.Event()
        self._idle.set()
        #: shed counts by reason ("queue_full", "queue_timeout", "draining")
        self.shed: collections.Counter[str] = collections.Counter()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> float:
        """A rough hint: one second per full round of the current backlog, at least 1 s."""
        backlog = self.running + self.waiting
        return max(1.0, float(round(backlog / self.max_concurrent)))

    @asynccontextmanager
    async def slot(self, *, during_drain: bool = False) -> AsyncIterator[None]:
        """Hold one slot; `during_drain`: the caller arrived before a drain began, so it is
        admitted (or queued) even while draining."""
        await self._acquire(during_drain)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, during_drain: bool = False) -> None:
        if self.draining and not during_drain:
            self.shed["draining"] += 1
            raise AdmissionError("gateway is shutting down", retry_after_s=1.0, status=503)
        if self.running < self.max_concurrent and not self._waiters:
            self._take()
            return
        if len(self._waiters) >= self.max_queue:
            self.shed["queue_full"] += 1
            raise AdmissionError(
                f"admission queue full ({self.max_queue} waiting, "
                f"{self.running} running)", retry_after_s=self.retry_after_s(), status=429)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=self.queue_timeout_s)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                # the slot was handed over just as we timed out: keep it
                return
            fut.cancel()
            self._discard(fut)
            self.shed["queue_timeout"] += 1
            raise AdmissionError(
                f"waited {self.queue_timeout_s:g}s for a slot", retry_after_s=self.retry_after_s(),
                status=503) from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # we were given a slot but the request went away
            else:
                fut.cancel()
                self._discard(fut)
            raise

    def _discard(self, fut: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass

    def _take(self) -> None:
        self.running += 1
        self._idle.clear()

    def _release(self) -> None:
        self.running -= 1
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self.running += 1  # hand the slot over directly (FIFO, no barging)
                fut.set_result(None)
                return
        if self.running == 0:
            self._idle.set()

    def start_draining(self) -> None:
        self.draining = True

    async def drained(self, timeout_s: float) -> bool:
        """Wait until nothing runs or waits; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True
