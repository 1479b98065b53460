"""Pool integrals from the scheduler's pod events: busy and idle size x time.

Both drivers define "allocated" and "idle" the same way by integrating the same events
(`Scheduler.subscribe`): busy from a pod's STARTED/BUSY to its IDLE/STOPPED, idle from IDLE
to BUSY/STOPPED (an expired pod stops at its keep-alive deadline). The gateway's `PoolLedger`
adds Prometheus metrics on top; the simulator reads the totals.
"""

from __future__ import annotations

from shabari.core.ids import PodId
from shabari.core.spec import Size
from shabari.scheduler.model import PodEvent, PodEventKind

_STARTED = PodEventKind.STARTED
_BUSY = PodEventKind.BUSY
_IDLE = PodEventKind.IDLE
_STOPPED = PodEventKind.STOPPED


class PoolIntegrals:
    """Totals of vCPU-seconds and GiB-seconds held by pods, busy and idle."""

    __slots__ = ("_open", "busy_memory_gib_s", "busy_vcpu_s", "idle_memory_gib_s",
                 "idle_vcpu_s", "pods_started")

    def __init__(self) -> None:
        #: pod -> (since, size, busy)
        self._open: dict[PodId, tuple[float, Size, bool]] = {}
        self.busy_vcpu_s = 0.0
        self.busy_memory_gib_s = 0.0
        self.idle_vcpu_s = 0.0
        self.idle_memory_gib_s = 0.0
        self.pods_started = 0

    def __call__(self, ev: PodEvent) -> None:
        kind = ev.kind
        got = self._open.pop(ev.pod_id, None)
        if got is not None:
            self._close(got, ev.time)
        if kind is _STOPPED:
            return
        if kind is _STARTED:
            self.pods_started += 1
        self._open[ev.pod_id] = (ev.time, ev.size, kind is not _IDLE)

    def _close(self, got: tuple[float, Size, bool], now: float) -> None:
        since, size, busy = got
        dt = now - since
        if dt <= 0.0:
            return
        if busy:
            self.busy_vcpu_s += size.vcpu * dt
            self.busy_memory_gib_s += size.memory_gib * dt
        else:
            self.idle_vcpu_s += size.vcpu * dt
            self.idle_memory_gib_s += size.memory_gib * dt

    def settle(self, now: float) -> None:
        """Integrate every open pod up to `now` (for a reading while pods still run)."""
        for pod_id, got in self._open.items():
            self._close(got, now)
            self._open[pod_id] = (now, got[1], got[2])
