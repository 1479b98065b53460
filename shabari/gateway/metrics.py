"""Prometheus metrics of one gateway, and the pool ledger that measures allocation over time.

Each gateway owns its own `CollectorRegistry` (several gateways can live in one test process).
Metric names and labels are a contract documented in docs/metrics.md; change both together.

The `PoolLedger` integrates what the backend really holds: every pod's size (the cgroup limits
set on it) times the seconds it exists, split into busy (serving an invocation) and idle (warm,
waiting). That is the "allocated" and "idle" accounting of DESIGN 4.5, measured on wall time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from shabari.core import PodId, Size
from shabari.scheduler.model import PodEvent, PodEventKind

_DECISION_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """All metrics the gateway exports (see docs/metrics.md for meaning and units)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "shabari_http_requests", "HTTP responses by route and status code",
            ["route", "code"], registry=r)
        self.invocations = Counter(
            "shabari_invocations", "Invocations answered, by final outcome status",
            ["function", "status"], registry=r)
        self.slo_violations = Counter(
            "shabari_slo_violations", "Invocations that missed their SLO or failed",
            ["function"], registry=r)
        self.cold_starts = Counter(
            "shabari_cold_starts", "Pods started for an invocation (cold starts)",
            ["function"], registry=r)
        self.resizes = Counter(
            "shabari_resizes", "Warm pods whose CPU was changed in place",
            ["function"], registry=r)
        self.resizes_rejected = Counter(
            "shabari_resizes_rejected",
            "In-place resizes the platform refused (the pod kept its size), by its reason",
            ["function", "reason"], registry=r)
        self.registry_reloads = Counter(
            "shabari_registry_reloads",
            "Changes of the functions file seen, by result (applied, invalid)",
            ["result"], registry=r)
        self.registry_error = Gauge(
            "shabari_registry_error",
            "1 while the functions file on disk is invalid (the last good one is served)",
            registry=r)
        self.oom_retries = Counter(
            "shabari_oom_retries", "Invocations retried with escalated memory after an OOM kill",
            ["function"], registry=r)
        self.decision_seconds = Histogram(
            "shabari_decision_seconds", "Featurize + decide + place time per invocation",
            ["function"], buckets=_DECISION_BUCKETS, registry=r)
        self.latency_seconds = Histogram(
            "shabari_invocation_latency_seconds",
            "Invocation latency as the SLO judges it (placement to response, incl. cold start)",
            ["function"], buckets=_LATENCY_BUCKETS, registry=r)
        self.allocated_vcpu_seconds = Counter(
            "shabari_allocated_vcpu_seconds", "vCPU allocated to invocations x seconds held",
            ["function"], registry=r)
        self.used_vcpu_seconds = Counter(
            "shabari_used_vcpu_seconds", "CPU seconds the invocations actually used",
            ["function"], registry=r)
        self.allocated_memory_gib_seconds = Counter(
            "shabari_allocated_memory_gib_seconds",
            "Memory limit (GiB) of invocations x seconds held", ["function"], registry=r)
        self.used_memory_gib_seconds = Counter(
            "shabari_used_memory_gib_seconds",
            "Peak memory (GiB) of invocations x seconds held", ["function"], registry=r)
        self.pool_vcpu_seconds = Counter(
            "shabari_pool_vcpu_seconds", "vCPU held by pods x seconds, by pod state",
            ["function", "state"], registry=r)
        self.pool_memory_gib_seconds = Counter(
            "shabari_pool_memory_gib_seconds", "Memory (GiB) held by pods x seconds, by pod state",
            ["function", "state"], registry=r)
        self.pods = Gauge(
            "shabari_pods", "Pods in the pool by state", ["function", "state"], registry=r)
        self.allocated_vcpu = Gauge(
            "shabari_pool_allocated_vcpu", "vCPU currently held by all pods", registry=r)
        self.allocated_memory_gib = Gauge(
            "shabari_pool_allocated_memory_gib", "Memory (GiB) currently held by all pods",
            registry=r)
        self.inflight = Gauge(
            "shabari_inflight_invocations", "Invocations admitted and running", registry=r)
        self.queued = Gauge(
            "shabari_admission_queue_depth", "Invocations waiting for an admission slot",
            registry=r)
        self.shed = Counter(
            "shabari_admission_shed", "Requests shed by admission control, by reason",
            ["reason"], registry=r)
        self.background_errors = Counter(
            "shabari_background_errors",
            "Errors a background loop survived, by loop (sweep, checkpoint, decision_log)",
            ["loop"], registry=r)
        self.decision_log_dropped = Counter(
            "shabari_decision_log_dropped",
            "Decision records lost because the log could not be written (disk full)",
            registry=r)
        self.pods_lost = Counter(
            "shabari_pods_lost",
            "Pods found dead while idle when an invocation came (run again on a fresh pod)",
            ["function"], registry=r)
        self.checkpoints = Counter(
            "shabari_checkpoints", "Model checkpoint writes, by result (ok, error)",
            ["result"], registry=r)
        self.degraded = Gauge(
            "shabari_degraded",
            "1 while a background duty fails (state dir unwritable): /readyz answers 503",
            ["reason"], registry=r)
        self.model_version = Gauge(
            "shabari_model_version", "Model version of each function's policy", ["function"],
            registry=r)
        self.recommendations = Counter(
            "shabari_recommendations", "Recommend mode: invocations by the size Shabari "
            "would have run (they ran at the target's own size)", ["function", "size"],
            registry=r)
        self.recommended_savings = Gauge(
            "shabari_recommended_savings_ratio", "Recommend mode: share of the run size's "
            "vCPUs the recommendations would not have reserved, so far", ["function"],
            registry=r)
        self.recommended_slo_attainment = Gauge(
            "shabari_recommended_slo_attainment_estimate", "Recommend mode: estimated SLO "
            "attainment of the recommendations (model verdicts after learning each run)",
            ["function"], registry=r)

        self.platform_limitation = Gauge(
            "shabari_platform_limitation",
            "1 for each thing the platform cannot do that the mode needs (e.g. "
            "StaticCPUManager: in-place CPU resize Infeasible), by backend",
            ["backend", "limitation"], registry=r)
        for metric in list(vars(self).values()):
            if isinstance(metric, Counter | Gauge | Histogram) and metric._labelnames:
                _cache_children(metric)

    def report_limitations(self, backend: str, limitations: Mapping[str, str]) -> None:
        """Set `shabari_platform_limitation` from a backend's `limitations()`."""
        for code in limitations:
            self.platform_limitation.labels(backend, code).set(1)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


def _cache_children(metric: Counter | Gauge | Histogram) -> None:
    """Make `metric.labels(*values)` a dictionary lookup after the first call per values.

    prometheus_client's `labels()` validates, stringifies and takes a lock on every call; the
    gateway calls it about fifteen times per invocation with the same few label tuples. The
    gateway never removes a child, so the first child for a tuple stays the right one.
    """
    plain = metric.labels
    cache: dict[tuple[str, ...], Any] = {}

    def labels(*values: str, **kwvalues: str) -> Any:
        if kwvalues:
            return plain(*values, **kwvalues)
        child = cache.get(values)
        if child is None:
            child = cache[values] = plain(*values)
        return child

    metric.labels = labels  # type: ignore[method-assign,assignment]


@dataclass(slots=True)
class _PodAccount:
    function: str
    size: Size
    since: float
    busy: bool


@dataclass(frozen=True, slots=True)
class PoolTotals:
    busy_vcpu_seconds: float
    busy_memory_gib_seconds: float
    idle_vcpu_seconds: float
    idle_memory_gib_seconds: float
    pods_started: int


class PoolLedger:
    """Integrates pod size x time, split into busy and idle, and feeds the pool metrics.

    It consumes the scheduler's pod events (`Scheduler.subscribe(ledger)`), the one source of
    pod state, so it never has to be kept in step by hand.
    """

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics
        self._pods: dict[PodId, _PodAccount] = {}
        self._busy = [0.0, 0.0]
        self._idle = [0.0, 0.0]
        self._started = 0

    def __call__(self, ev: PodEvent) -> None:
        kind = ev.kind
        if kind is PodEventKind.STARTED:
            self.started(ev.pod_id, ev.function, ev.size, ev.time)
        elif kind is PodEventKind.BUSY:
            self.busy(ev.pod_id, ev.size, ev.time)
        elif kind is PodEventKind.IDLE:
            self.idle(ev.pod_id, ev.time)
        else:
            self.stopped(ev.pod_id, ev.time)

    def _close(self, acc: _PodAccount, now: float) -> None:
        dt = max(0.0, now - acc.since)
        v, g = acc.size.vcpu * dt, acc.size.memory_gib * dt
        state = "busy" if acc.busy else "idle"
        target = self._busy if acc.busy else self._idle
        target[0] += v
        target[1] += g
        self._m.pool_vcpu_seconds.labels(acc.function, state).inc(v)
        self._m.pool_memory_gib_seconds.labels(acc.function, state).inc(g)
        acc.since = now

    def _gauges(self) -> None:
        self._m.allocated_vcpu.set(sum(a.size.vcpu for a in self._pods.values()))
        self._m.allocated_memory_gib.set(sum(a.size.memory_gib for a in self._pods.values()))

    def started(self, pod_id: PodId, function: str, size: Size, now: float) -> None:
        self._pods[pod_id] = _PodAccount(function, size, now, busy=True)
        self._started += 1
        self._m.pods.labels(function, "busy").inc()
        self._gauges()

    def busy(self, pod_id: PodId, size: Size, now: float) -> None:
        """A warm pod takes an invocation, possibly resized to `size`."""
        acc = self._pods.get(pod_id)
        if acc is None:
            return
        self._close(acc, now)
        if not acc.busy:
            self._m.pods.labels(acc.function, "idle").dec()
            self._m.pods.labels(acc.function, "busy").inc()
        acc.busy = True
        if size != acc.size:  # resized in place: the held totals change (O(pods) to sum)
            acc.size = size
            self._gauges()

    def idle(self, pod_id: PodId, now: float) -> None:
        acc = self._pods.get(pod_id)
        if acc is None or not acc.busy:
            return
        self._close(acc, now)
        acc.busy = False
        self._m.pods.labels(acc.function, "busy").dec()
        self._m.pods.labels(acc.function, "idle").inc()

    def stopped(self, pod_id: PodId, now: float) -> None:
        acc = self._pods.pop(pod_id, None)
        if acc is None:
            return
        self._close(acc, now)
        self._m.pods.labels(acc.function, "busy" if acc.busy else "idle").dec()
        self._gauges()

    def totals(self, now: float) -> PoolTotals:
        for acc in self._pods.values():
            self._close(acc, now)
        return PoolTotals(self._busy[0], self._busy[1], self._idle[0], self._idle[1],
                          self._started)

    def pod_ids(self) -> list[PodId]:
        return list(self._pods)
