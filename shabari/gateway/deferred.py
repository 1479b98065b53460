"""Work an invocation leaves for after its response: learning, metrics, the decision log.

None of it changes the answer the caller gets, so none of it belongs between the function's
result and the response. An invocation hands a closure to `AfterResponse.add`; closures run
in batches on the same event loop `window_s` after the first of a batch arrived (by then the
response has been written: the handler's task step that wrote it ran first), so at one
connection the batch runs while the next invocation waits on its pod, and under load one
batch carries many invocations' learning. Order is kept (FIFO), so the policy learns outcomes
in the order they arrived and the decision log is written in that order.

Everything that reads what the batch writes (`GET /functions`, `/stats`, `/metrics`, a
checkpoint, an OOM retry's escalation, shutdown) calls `drain()` first, so readers never see
a batch half-applied or an outcome not yet learned. The Decision Service loop (explore, log,
learn, deploy) is asynchronous in the same way: a decision may use a model that has not yet
learned the previous few outcomes, by at most one window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: default batching window (seconds): short against any SLO, long against one invocation
WINDOW_S = 0.002


class AfterResponse:
    """A FIFO of closures run in batches, `window_s` after the first of each batch."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._items: list[Callable[[], None]] = []
        self._timer: asyncio.TimerHandle | None = None
        #: closures run so far, and those that raised (logged, never propagated)
        self.done = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        return len(self._items)

    def add(self, work: Callable[[], None]) -> None:
        """Run `work` after the current response (in this batch, in arrival order)."""
        self._items.append(work)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): run it now
                self.drain()
                return
            self._timer = loop.call_later(self.window_s, self.drain)

    def drain(self) -> int:
        """Run everything pending now; returns how many closures ran."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        n = 0
        while self._items:
            items, self._items = self._items, []
            for work in items:
                try:
                    work()
                except Exception:  # one bad record must not lose the rest of the batch
                    self.failed += 1
                    log.exception("deferred gateway work failed")
                n += 1
        self.done += n
        return n
