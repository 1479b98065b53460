"""Several gateway replicas that learn as one: the Decision Service loop across processes.

Microsoft's Decision Service (Agarwal et al. 2016, the architecture behind Azure Personalizer)
splits a contextual bandit into explore (decide), log, learn and deploy. Here:

- **explore**: every replica decides locally and at once from its own copy of each function's
  model (a snapshot): no network hop on the decision path;
- **log**: each outcome (context, decision with its probability and model version, outcome)
  goes into the replica's outbox after the response (`deferred.AfterResponse`), and is shipped
  in batches over the replicas' own HTTP (`POST /replica/outcomes`) to the *learner*;
- **learn**: the learner, one replica elected through a Kubernetes Lease (`lease`), learns
  every replica's outcomes with the same policy object a single gateway uses, and writes the
  checkpoints (the only replica that does: the gateway's sweeper, every
  `checkpoint_interval_s`);
- **deploy**: replicas fetch the learner's model snapshots (`GET /replica/models`) every
  `sync_interval_s`; a snapshot is the policy's own `LearningPolicy.checkpoint()` bytes and is
  applied with `restore()`, so whatever model the agent holds travels unchanged.

When the learner dies its Lease expires and another replica takes over from the last snapshot
it received (its own model: at most one sync interval behind the old learner); outcomes not yet
acknowledged stay in the outboxes and go to the new learner. A replica's `GET /functions`
shows the snapshot it decides with: the learned outcomes of every replica, one shipping interval
plus one sync interval late. Without a Lease (`shabari gateway` without `--lease`), there is no
`Replica`: the one process plays every role, as before.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import Counter, Gauge, Histogram

from shabari.agent.policy import LearningPolicy
from shabari.core import (
    Decision,
    DecisionContext,
    DecisionId,
    FunctionName,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    ShabariError,
    Size,
)
from shabari.gateway.lease import LeaseElector
from shabari.gateway.service import Gateway

log = logging.getLogger(__name__)

LEARNER = "learner"
FOLLOWER = "follower"


# -- the wire format of one outcome -------------------------------------------------------------


def _size(s: Size) -> list[int]:
    return [s.cpu_millicores, s.memory_mib, s.gpu]


def encode_outcome(ctx: DecisionContext, decision: Decision, outcome: Outcome,
                   model_age_s: float | None = None) -> dict[str, Any]:
    """One outcome as JSON: everything `learn(ctx, decision, outcome)` needs but the spec."""
    rec: dict[str, Any] = {
        "function": str(decision.function),
        "features": dict(ctx.features),
        "now": ctx.now,
        "warm_idle": [_size(s) for s in ctx.warm_idle],
        "supports_resize": ctx.supports_resize,
        "slo_ms": ctx.slo_ms,
        "decision": {
            "id": str(decision.decision_id), "size": _size(decision.size),
            "action_index": decision.action_index, "probability": decision.probability,
            "model_version": decision.model_version, "reason": decision.reason,
            "explored": decision.explored, "policy": decision.policy,
        },
        "outcome": {
            "latency_ms": outcome.latency_ms, "status": outcome.status.value,
            "cold_start": outcome.cold_start, "cold_start_ms": outcome.cold_start_ms,
            "cpu_seconds": outcome.cpu_seconds, "peak_memory_mib": outcome.peak_memory_mib,
            "detail": outcome.detail[:500],
        },
    }
    if model_age_s is not None:
        rec["model_age_s"] = model_age_s
    return rec


def decode_outcome(rec: Mapping[str, Any], spec: FunctionSpec
                   ) -> tuple[DecisionContext, Decision, Outcome]:
    """The inverse of `encode_outcome` (KeyError/ValueError/TypeError on a malformed record)."""
    d = rec["decision"]
    o = rec["outcome"]
    ctx = DecisionContext(
        spec=spec, features={str(k): float(v) for k, v in dict(rec["features"]).items()},
        now=float(rec["now"]), warm_idle=tuple(Size(*map(int, s)) for s in rec["warm_idle"]),
        supports_resize=bool(rec["supports_resize"]),
        slo_ms=None if rec.get("slo_ms") is None else float(rec["slo_ms"]))
    decision = Decision(
        decision_id=DecisionId(str(d["id"])), function=spec.name,
        size=Size(*map(int, d["size"])), action_index=int(d["action_index"]),
        probability=float(d["probability"]), model_version=int(d["model_version"]),
        reason=str(d["reason"]), explored=bool(d["explored"]), policy=str(d["policy"]))
    outcome = Outcome(
        latency_ms=float(o["latency_ms"]), status=OutcomeStatus(o["status"]),
        cold_start=bool(o["cold_start"]), cold_start_ms=float(o["cold_start_ms"]),
        cpu_seconds=float(o["cpu_seconds"]), peak_memory_mib=float(o["peak_memory_mib"]),
        detail=str(o.get("detail", "")))
    return ctx, decision, outcome


# -- model age ------------------------------------------------------------------------------------


class ModelAges:
    """How old the model a decision used was: time since the replica last confirmed that its
    snapshot was the learner's latest (the learner's own model has age 0)."""

    def __init__(self, keep: int = 64, samples: int = 20000) -> None:
        self._synced: collections.deque[float] = collections.deque(maxlen=keep)
        self.ages: collections.deque[float] = collections.deque(maxlen=samples)
        self.max_s = 0.0

    def synced(self, now: float) -> None:
        self._synced.append(now)

    def age_at(self, t: float) -> float | None:
        """Age of the model at time `t` (None: never synced)."""
        xs = self._synced
        if not xs:
            return None
        i = bisect.bisect_right(xs, t)
        return None if i == 0 else t - xs[i - 1]

    def record(self, age: float) -> None:
        self.ages.append(age)
        self.max_s = max(self.max_s, age)

    def summary(self) -> dict[str, float | int]:
        xs = sorted(self.ages)
        if not xs:
            return {"decisions": 0}
        return {"decisions": len(xs), "p50_s": xs[len(xs) // 2],
                "p99_s": xs[min(len(xs) - 1, int(len(xs) * 0.99))], "max_s": self.max_s}


# -- the replica ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    identity: str
    #: where the other replicas reach this one (http://POD_IP:PORT)
    url: str
    #: how often a follower ships its outbox, and fetches the learner's snapshots (s)
    ship_interval_s: float = 0.1
    sync_interval_s: float = 0.5
    #: at most this many outcomes per shipment, and waiting in an outbox (oldest dropped)
    max_batch: int = 5000
    max_outbox: int = 200_000
    request_timeout_s: float = 5.0


class Replica:
    """This process's part in the replicated gateway: learner or follower, by the Lease.

    It takes the gateway's learning hook (`InvocationPath.learn`): outcomes go to the
    learner, which is this process while it holds the Lease.
    """

    def __init__(self, gateway: Gateway, config: ReplicaConfig,
                 elector: LeaseElector | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gw = gateway
        self.config = config
        self.elector = elector
        self._clock = clock
        policy = gateway.policy
        self.policy: LearningPolicy | None = (
            policy if isinstance(policy, LearningPolicy) else None)
        self.role = FOLLOWER
        self.leader: str | None = None
        self.leader_url: str | None = None
        self.outbox: collections.deque[dict[str, Any]] = collections.deque()
        self.ages = ModelAges()
        self.counters: dict[str, int] = collections.Counter()
        self._versions: dict[str, int] = {}
        self._snapshots: dict[str, tuple[int, int, str, float]] = {}
        self._checkpoint_dir = gateway.checkpoints.directory
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ship_lock = asyncio.Lock()
        self.became_learner_at: float | None = None
        self.learned_at_takeover: dict[str, int] = {}
        r = gateway.metrics.registry  # docs/metrics.md, "Replicas"
        self._m_learner = Gauge("shabari_replica_learner",
                                "1 while this replica is the learner (holds the Lease)",
                                registry=r)
        self._m_outbox = Gauge("shabari_replica_outbox",
                               "Outcomes waiting in this replica's outbox for the learner",
                               registry=r)
        self._m_shipped = Counter("shabari_replica_outcomes_shipped",
                                  "Outcomes this replica shipped to the learner", registry=r)
        self._m_received = Counter("shabari_replica_outcomes_received",
                                   "Shipped outcomes this replica learned as the learner",
                                   registry=r)
        self._m_age = Histogram("shabari_replica_model_age_seconds",
                                "Age of the model snapshot each of this replica's decisions "
                                "used (0 on the learner)",
                                buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
                                registry=r)
        gateway.path.learn = self.learn

    @property
    def is_learner(self) -> bool:
        return self.role == LEARNER

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """After the gateway started (it restored its own checkpoints, if any): from now on
        only the learner writes checkpoints (the gateway's sweeper, every
        `checkpoint_interval_s`), and replicas call each other with the gateway's token."""
        self.gw.checkpoints.directory = None
        token = self.gw.config.auth_token
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_s),
            headers={"Authorization": f"Bearer {token}"} if token else None)
        self._tasks = [asyncio.create_task(self._every(self.config.ship_interval_s, self.ship),
                                           name="replica-ship"),
                       asyncio.create_task(self._every(self.config.sync_interval_s, self.sync),
                                           name="replica-sync")]
        if self.elector is not None:
            await self.elector.start()

    async def close(self) -> None:
        """After the drain: a learner writes its final checkpoints, then gives the Lease up (a
        peer takes over at once); a follower ships what is left. Then stop."""
        self.gw.settle()
        if self.is_learner:
            try:
                await self.gw.checkpoint_all()
            except Exception as exc:  # shutting down anyway: the periodic ones remain
                log.warning("replica %s: final checkpoint failed: %s", self.config.identity,
                            exc)
        if self.elector is not None:
            await self.elector.stop(release=True)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        with contextlib.suppress(Exception):
            if not self.is_learner and self.leader_url:
                await self.ship()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _every(self, period: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a peer down is routine: count it, keep going
                self.counters["errors"] += 1
                log.debug("replica %s: %s", getattr(job, "__name__", "job"), exc)

    # -- roles (Lease callbacks) --------------------------------------------------------------

    async def started_leading(self) -> None:
        """This replica is the learner now: learn from its own model (the last snapshot it
        received), its own unshipped outcomes first, and write the checkpoints."""
        self.gw.settle()
        self.gw.checkpoints.directory = self._checkpoint_dir
        from_disk = await self._take_newer_checkpoints()
        # the role changes only now, with the model it learns from in place (readers of
        # /replica/state never see a learner without its starting point)
        self.learned_at_takeover = {n: self._outcomes(n) for n in self.gw.functions}
        self.role = LEARNER
        self._m_learner.set(1)
        self.became_learner_at = self._clock()
        pending = list(self.outbox)
        self.outbox.clear()
        self.receive(pending)
        log.info("replica %s: learner from the snapshot it held (%s; from the last checkpoint: "
                 "%s), %d own outcomes added", self.config.identity, self.learned_at_takeover,
                 sorted(from_disk), len(pending))

    async def _take_newer_checkpoints(self) -> list[str]:
        """Functions whose checkpoint in the state dir (shared by the replicas on the chart's
        ReadWriteMany volume) knows more outcomes than the snapshot this replica holds (one
        that never synced, or synced long ago): their model continues from the checkpoint."""
        taken: list[str] = []
        if self.policy is None:
            return taken
        for name in sorted(self.gw.functions):
            path = self.gw.checkpoints.path(name)
            if path is None or not await asyncio.to_thread(path.is_file):
                continue
            data = await asyncio.to_thread(path.read_bytes)
            fn = FunctionName(name)
            mine = self._outcomes(name)
            try:
                backup: bytes | None = self.policy.checkpoint(fn)
            except ShabariError:  # no model here yet
                backup = None
            try:
                self.policy.restore(fn, data)
            except ShabariError as exc:
                log.warning("replica %s: checkpoint %s not usable: %s", self.config.identity,
                            path, exc)
                continue
            if self._outcomes(name) > mine:
                taken.append(name)
                self.gw.checkpoints.touched.add(name)
            elif backup is not None:
                self.policy.restore(fn, backup)
        return taken

    async def stopped_leading(self) -> None:
        self.gw.settle()
        self.role = FOLLOWER
        self._m_learner.set(0)
        self.gw.checkpoints.directory = None

    async def leader_changed(self, leader: str | None, url: str | None) -> None:
        self.leader, self.leader_url = leader, url
        self.counters["leader_changes"] += 1

    # -- the hot path's learning hook (runs after the response) -------------------------------

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        if self.is_learner:
            self.gw.policy.learn(ctx, decision, outcome)
            self.ages.record(0.0)
            self._m_age.observe(0.0)
            self.counters["learned_own"] += 1
            return
        age = self.ages.age_at(ctx.now)
        if age is not None:
            self.ages.record(age)
            self._m_age.observe(age)
        if self.policy is None:
            return  # a static policy: nothing to learn anywhere
        self.outbox.append(encode_outcome(ctx, decision, outcome, age))
        if len(self.outbox) > self.config.max_outbox:
            self.outbox.popleft()
            self.counters["dropped"] += 1
        self._m_outbox.set(len(self.outbox))

    # -- follower: ship outcomes, fetch snapshots ---------------------------------------------

    async def ship(self) -> None:
        if self.is_learner or not self.outbox or not self.leader_url:
            return
        if self.leader == self.config.identity:
            return  # we hold the Lease but have not acted on it yet
        async with self._ship_lock:
            batch = [self.outbox[i] for i in range(min(len(self.outbox), self.config.max_batch))]
            url = f"{self.leader_url.rstrip('/')}/replica/outcomes"
            async with self._http.post(url, json={"from": self.config.identity,
                                                  "records": batch}) as r:
                if r.status != 200:
                    self.counters["ship_refused"] += 1
                    return
                accepted = int((await r.json()).get("accepted", 0))
            for _ in range(min(len(batch), len(self.outbox))):
                self.outbox.popleft()
            self._m_outbox.set(len(self.outbox))
            self._m_shipped.inc(len(batch))
            self.counters["shipped"] += len(batch)
            self.counters["rejected_by_learner"] += len(batch) - accepted

    async def sync(self) -> None:
        """Fetch the learner's newer snapshots and decide with them from now on."""
        if self.is_learner or not self.leader_url or self.policy is None:
            return
        if self.leader == self.config.identity:
            return
        have = ",".join(f"{n}:{v}" for n, v in sorted(self._versions.items()))
        t_asked = self.gw.now()
        url = f"{self.leader_url.rstrip('/')}/replica/models"
        async with self._http.get(url, params={"have": have} if have else None) as r:
            if r.status != 200:
                self.counters["sync_refused"] += 1
                return
            doc = await r.json()
        if self.is_learner:
            return  # became the learner while asking: our own model is the newest
        for name, m in (doc.get("models") or {}).items():
            if name not in self.gw.functions:
                continue
            self.gw.settle()
            try:
                self.policy.restore(FunctionName(name), base64.b64decode(m["checkpoint"]))
            except (ShabariError, ValueError, KeyError) as exc:
                self.counters["restore_failed"] += 1
                log.warning("replica %s: snapshot of %s not applied: %s",
                            self.config.identity, name, exc)
                continue
            self._versions[name] = int(m["version"])
            self.gw.checkpoints.touched.add(name)
            self.counters["snapshots_applied"] += 1
        # the snapshot held now is the learner's latest as of when we asked
        self.ages.synced(t_asked)

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Replica.start() was not called")
        return self._session

    # -- learner: take outcomes, hand out snapshots -------------------------------------------

    def receive(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Learn shipped outcomes (in order); returns how many were learned."""
        if self.policy is None:
            return 0
        self.gw.settle()  # our own outcomes first, in the order they happened
        accepted = 0
        for rec in records:
            spec = self.gw.functions.get(str(rec.get("function", "")))
            if spec is None:
                self.counters["unknown_function"] += 1
                continue
            try:
                ctx, decision, outcome = decode_outcome(rec, spec)
            except (KeyError, ValueError, TypeError):
                self.counters["malformed"] += 1
                continue
            self.policy.learn(ctx, decision, outcome)
            self.gw.checkpoints.touched.add(spec.name)
            age = rec.get("model_age_s")
            if isinstance(age, int | float):
                self.ages.record(float(age))
            accepted += 1
        self.counters["received"] += accepted
        self._m_received.inc(accepted)
        return accepted

    def snapshots(self, have: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        """The learner's models that are newer than the caller's (`have`: function ->
        version). A snapshot is re-encoded at most once per half sync interval per function
        (a checkpoint costs milliseconds; the learner may learn thousands of outcomes a
        second)."""
        if self.policy is None:
            return {}
        self.gw.settle()
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(self.gw.checkpoints.touched):
            if name not in self.gw.functions:
                continue
            version = self._outcomes(name)
            cached = self._snapshots.get(name)
            if cached is None or (cached[0] != version
                                  and now - cached[3] >= self.config.sync_interval_s / 2):
                data = self.policy.checkpoint(FunctionName(name))
                cached = (version, version, base64.b64encode(data).decode(), now)
                self._snapshots[name] = cached
            if have.get(name) == cached[0]:
                continue
            out[name] = {"version": cached[0], "outcomes": cached[1],
                         "checkpoint": cached[2]}
        return out

    def _outcomes(self, name: str) -> int:
        if self.policy is None:
            return 0
        return int(self.policy.state(FunctionName(name)).outcomes)

    # -- introspection ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        e = self.elector
        return {
            "identity": self.config.identity,
            "url": self.config.url,
            "role": self.role,
            "leader": self.leader,
            "leader_url": self.leader_url,
            "lease": None if e is None else {
                "namespace": e.namespace, "name": e.name, "terms": e.terms,
                "errors": e.errors, "last_error": e.last_error,
                "duration_s": e.election.timing.lease_duration_s},
            "outbox": len(self.outbox),
            "counters": dict(self.counters),
            "model_versions": dict(self._versions),
            "outcomes": {n: self._outcomes(n) for n in sorted(self.gw.functions)},
            "model_age": self.ages.summary(),
            "learned_at_takeover": self.learned_at_takeover,
            "ship_interval_s": self.config.ship_interval_s,
            "sync_interval_s": self.config.sync_interval_s,
        }


def parse_have(text: str | None) -> dict[str, int]:
    """`fn:version,fn:version` (the query of GET /replica/models) -> mapping; junk skipped."""
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        name, _, v = part.partition(":")
        if name and v.isdigit():
            out[name] = int(v)
    return out
