"""The gateway process: its collaborators, its lifecycle, and registry changes.

`Gateway` assembles the pieces and owns their lifecycle (start, graceful close); each job
lives in its own module:

- `invocation`: the invocation path (featurize, decide, place, run, judge, retry, learn);
- `pool`: pod state kept in step across the scheduler, the `PoolLedger` and the backend;
- `accounting`: per-function counters, metrics and the decision log;
- `checkpoints`: model checkpoints on disk (restore at start, write periodically and at exit);
- `sweeper`: the keep-alive sweeper task;
- `replies`: the HTTP reply of an invocation, and the `/functions` and `/stats` views.

The simulator (`shabari.sim.engine`) drives the same policy and scheduler objects under a
simulated clock; docs/architecture.md says what differs between the two drivers.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shabari.agent.policy import ExplainingPolicy, Policy
from shabari.backends.base import Backend
from shabari.core import (
    ConfigError,
    DecisionContext,
    FunctionSpec,
    ShabariError,
    UnknownFunctionError,
)
from shabari.gateway.accounting import Accounting, FunctionStats
from shabari.gateway.admission import AdmissionController
from shabari.gateway.checkpoints import Checkpoints
from shabari.gateway.config import GatewayConfig
from shabari.gateway.decisionlog import DecisionLog
from shabari.gateway.deferred import AfterResponse
from shabari.gateway.invocation import Featurize, InvocationPath
from shabari.gateway.metrics import GatewayMetrics, PoolLedger
from shabari.gateway.pool import PodPool
from shabari.gateway.replies import Reply, error_body, functions_view, stats_totals
from shabari.gateway.slo import BestLatencyTable, SloResolver
from shabari.gateway.sweeper import KeepAliveSweeper
from shabari.scheduler import Scheduler, SchedulerConfig

__all__ = ["Featurize", "FunctionStats", "FunctionsChange", "Gateway", "Reply", "error_body"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FunctionsChange:
    """What `Gateway.update_functions` did (names, sorted)."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: changed functions whose size grid changed: their model starts fresh
    fresh_models: tuple[str, ...] = ()
    #: new or changed functions the backend could not prepare: not served (name -> reason)
    failed: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.failed)


class Gateway:
    """Owns the pool model, the policy and the backend of one gateway process."""

    def __init__(
        self,
        *,
        functions: Mapping[str, FunctionSpec],
        policy: Policy,
        scheduler: Scheduler | None = None,
        backend: Backend,
        featurize: Featurize,
        slo: SloResolver | None = None,
        config: GatewayConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        scheduler_config: SchedulerConfig | None = None,
    ) -> None:
        """Without a `scheduler`, one is built in `start()` from the nodes the started backend
        reports (a cluster backend knows its real nodes only once started)."""
        self.functions = dict(functions)
        self.policy = policy
        self._scheduler_config = scheduler_config
        self.backend = backend
        self.featurize = featurize
        self.slo = slo or SloResolver()
        self.config = config or GatewayConfig()
        self._clock = clock
        self._t0 = clock()
        self.metrics = GatewayMetrics()
        self.ledger = PoolLedger(self.metrics)
        self.pool = PodPool(self.ledger, backend)
        if scheduler is not None:
            self.pool.attach(scheduler)
        self.admission = AdmissionController(
            self.config.max_concurrent, self.config.max_queue, self.config.queue_timeout_s)
        self.decisions = DecisionLog(self.config.decision_log_path,
                                     self.config.decision_log_max_bytes,
                                     self.config.decision_log_backups)
        self.stats: dict[str, FunctionStats] = {name: FunctionStats() for name in self.functions}
        self.accounting = Accounting(self.metrics, self.decisions, self.stats)
        self.checkpoints = Checkpoints(policy, self.config.checkpoint_dir)
        #: learning, metrics and the decision log of answered invocations (off the response)
        self.after = AfterResponse()
        self.path = InvocationPath(
            policy=policy, pool=self.pool, backend=backend, featurize=featurize, slo=self.slo,
            config=self.config, stats=self.stats, metrics=self.metrics,
            accounting=self.accounting, checkpoints=self.checkpoints, clock=clock, now=self.now,
            after=self.after)
        self.sweeper = KeepAliveSweeper(
            self.pool, self.decisions, self.now, self.config.sweep_interval_s,
            checkpoints=self.checkpoints,
            checkpoint_interval_s=self.config.checkpoint_interval_s, metrics=self.metrics,
            settle=self.settle)
        self.ready = False
        #: the last registry reload's error (None: the file in use is the one on disk)
        self.registry_error: str | None = None
        self._closed = False

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the gateway started (monotonic): the `now` every decision gets."""
        return self._clock() - self._t0

    @property
    def scheduler(self) -> Scheduler:
        return self.pool.scheduler

    @property
    def degraded(self) -> dict[str, str]:
        """Background duties failing now (decision log, checkpoints, sweep -> error); while
        any is, `/readyz` answers 503."""
        return self.sweeper.degraded

    @property
    def restored(self) -> dict[str, int]:
        """Function -> model version restored from a checkpoint at start."""
        return self.checkpoints.restored

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.backend.start()
        if not self.pool.has_scheduler:
            cfg = self._scheduler_config or SchedulerConfig(
                keep_alive_s=self.config.keep_alive_s,
                supports_resize=self.backend.supports_resize)
            self.pool.attach(Scheduler(self.backend.nodes(), cfg))
        for spec in self.functions.values():
            await self.backend.prepare(spec)
        await self.checkpoints.restore(self.functions)
        self.sweeper.start()
        self.ready = True

    async def close(self) -> None:
        """Graceful shutdown: stop admitting, drain, checkpoint every model, stop every pod."""
        if self._closed:
            return
        self._closed = True
        self.ready = False
        self.admission.start_draining()
        drained = await self.admission.drained(self.config.drain_timeout_s)
        if not drained:
            log.warning("shutdown: %d invocations still running after %.0fs",
                        self.admission.running, self.config.drain_timeout_s)
        # each step runs whatever the previous one met (a full disk must not leave pods
        # running or cgroups behind): checkpoints and the decision log never raise for I/O
        await self.sweeper.stop()
        try:
            self.settle()
        except Exception:
            log.exception("shutdown: learning still queued behind responses was not applied")
        await self.checkpoint_all()
        if not self.checkpoints.healthy:
            log.error("shutdown: models not all checkpointed: %s", self.checkpoints.last_error)
        self.pool.shutdown(self.now())
        try:
            await self.backend.close()
        except Exception:
            log.exception("shutdown: the backend did not close cleanly")
        await self.decisions.aclose()

    async def checkpoint_all(self) -> list[Path]:
        """Write every touched function's model to `state_dir/models/<function>.ckpt`."""
        self.settle()
        return await self.checkpoints.write_all()

    def settle(self) -> None:
        """Apply the learning, metrics and log records still waiting behind responses."""
        self.after.drain()

    # -- registry changes --------------------------------------------------------------------

    async def update_functions(
        self, functions: Mapping[str, FunctionSpec],
        perf_tables: Mapping[str, BestLatencyTable] | None = None,
    ) -> FunctionsChange:
        """Serve `functions` from now on (a registry reload), without a restart.

        Added and changed functions are prepared on the backend first (one that fails is not
        served and is reported in `failed`; a changed one keeps its previous spec). Removed
        functions answer 404 from now on; their idle pods are stopped, in-flight invocations
        finish. Learned models survive: an unchanged function is not touched; a changed one
        keeps its model when its size grid is unchanged, and starts a fresh model otherwise
        (its idle pods, sized for the old grid, are stopped too). `perf_tables` replace the
        SLO resolver's tables (the best latencies it learned are kept).
        """
        old = self.functions
        added = sorted(set(functions) - set(old))
        removed = sorted(set(old) - set(functions))
        changed = sorted(n for n in set(functions) & set(old) if functions[n] != old[n])
        failed: dict[str, str] = {}
        for name in (*added, *changed):
            try:
                await self.backend.prepare(functions[name])
            except ShabariError as exc:
                failed[name] = str(exc)
                log.error("registry: function %s not served: %s", name, exc)
        new = dict(functions)
        for name in failed:
            if name in old:
                new[name] = old[name]
            else:
                del new[name]
        fresh = [n for n in changed if n not in failed and new[n].sizes != old[n].sizes]
        # the policy meets a changed spec right before that function's next decision (not
        # now: an invocation still in flight under the old spec would bind the old grid again)
        self.path.refit.update(n for n in changed if n not in failed)
        if perf_tables is not None:
            self.slo.set_tables(perf_tables)
        self.functions = new
        for name in new:  # a removed function keeps its counters (in-flight calls use them)
            self.stats.setdefault(name, FunctionStats())
        if self.pool.has_scheduler:
            now = self.now()
            for name in (*removed, *fresh):
                await self.pool.drop_idle(name, now)
            self.pool.capacity_changed()
        change = FunctionsChange(tuple(added), tuple(n for n in changed if n not in failed),
                                 tuple(removed), tuple(fresh), failed)
        if change:
            log.info("registry: added %s, changed %s, removed %s, fresh models %s",
                     list(change.added), list(change.changed), list(change.removed),
                     list(change.fresh_models))
        return change

    # -- the invocation path -----------------------------------------------------------------

    def spec(self, function: str) -> FunctionSpec:
        spec = self.functions.get(function)
        if spec is None:
            raise UnknownFunctionError(f"unknown function {function!r}",
                                       detail=f"known: {', '.join(sorted(self.functions))}")
        return spec

    async def invoke(self, function: str, body: bytes, content_type: str | None, *,
                     key: object = None) -> Reply:
        """Run one invocation end to end (the caller holds an admission slot). `key` is
        carried into the invocation's lifecycle record (`path.on_finished`)."""
        return await self.path.invoke(self.spec(function), body, content_type, key=key)

    # -- views -------------------------------------------------------------------------------

    def learning_state(self, function: str) -> dict[str, Any]:
        self.settle()
        return self.checkpoints.learning_state(function)

    def functions_view(self) -> list[dict[str, Any]]:
        """The `GET /functions` document (the operator reads `stats`)."""
        self.settle()
        return functions_view(self.functions, self.stats,
                              {n: self.learning_state(n) for n in self.functions},
                              {n: r.view() for n, r in self.path.recommendations.items()})

    def explain(self, function: str, features: Mapping[str, float]) -> dict[str, Any]:
        """`GET|POST /functions/{name}/explain`: why the policy would pick what it picks for
        an input with these features, right now (warm pool included); changes nothing."""
        spec = self.spec(function)
        policy = self.path.policy
        if not isinstance(policy, ExplainingPolicy):
            raise ConfigError(f"policy {policy.name!r} cannot explain its decisions")
        self.settle()  # outcomes already answered are learned first
        now = self.now()
        ctx = DecisionContext(
            spec=spec, features=dict(features), now=now,
            warm_idle=self.pool.scheduler.warm_idle(spec.name, now),
            supports_resize=self.backend.supports_resize,
            slo_ms=self.slo.resolve_before(spec, features))
        doc = policy.explain(ctx).to_dict()
        doc["mode"] = spec.mode
        if spec.recommend_only:
            doc["runs"] = spec.safe_default.to_dict()
        return doc

    def stats_view(self) -> dict[str, Any]:
        """`GET /stats`: totals the demo and the benchmarks read (pool ledger, admission)."""
        self.settle()
        t = self.ledger.totals(self.now())
        return {
            "uptime_s": self.now(),
            "pool": dataclasses.asdict(t),
            "admission": {"running": self.admission.running,
                          "waiting": self.admission.waiting,
                          "shed": dict(self.admission.shed)},
            "decision_log_records": self.decisions.records,
            "decision_log_dropped": self.decisions.dropped,
            "degraded": self.degraded,
            "functions": stats_totals(self.stats, self.functions),
        }
