"""Leader election over a `coordination.k8s.io/v1` Lease, the way Kubernetes controllers do it.

Several gateway replicas serve invocations; exactly one of them is the *learner* (it learns
every replica's outcomes and hands model snapshots back, `replica`). They agree on which one
through a Lease object, with client-go's `leaderelection` rules:

- a candidate reads the Lease; when there is none it creates it with itself as holder;
- the holder renews `spec.renewTime` every `retry_period_s`; a write carries the
  `metadata.resourceVersion` it read, so of two replicas racing for the same Lease the API
  server accepts one (409 Conflict for the other);
- a non-holder takes the Lease over only when it has seen the same record unchanged on its
  *own* clock (never comparing its clock with the holder's `renewTime`: clocks of two nodes
  disagree) for the lease duration less one retry period, and counts
  `spec.leaseTransitions` up. client-go waits the full duration from its observation, which
  comes up to one retry period after the renewal it observed, so its takeover lands up to a
  retry period past the expiry; here the observation lag is taken off and the candidate
  wakes up at the expiry itself rather than at its next poll, so a new learner is in place
  within the lease duration of the old one's last renewal;
- a holder that could not renew within `renew_deadline_s` stops acting as the learner
  before anyone else may take over: a candidate waits at least `lease_duration_s -
  retry_period_s` after seeing the last renewal, which `LeaseTiming` requires to be more than
  the renew deadline, so two learners never overlap (up to the clocks' rate drift).

The learner's address travels in the Lease itself (annotation `shabari.dev/learner-url`), so
the replicas need no other discovery. `Election` is the pure part (records in, what to write
out; time passed in); `LeaseElector` runs it against the API (`KubeApi`, RBAC: get, create and
update on leases, nothing more).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from shabari.backends._k8s_api import KubeApi, KubeConfig, KubeConflictError, KubeNotFoundError
from shabari.core import ConfigError, ShabariError

log = logging.getLogger(__name__)

#: annotation on the Lease naming the holder's replica URL (where outcomes go)
URL_ANNOTATION = "shabari.dev/learner-url"

#: client-go's defaults (LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s)
LEASE_DURATION_S = 15.0
RENEW_DEADLINE_S = 10.0
RETRY_PERIOD_S = 2.0


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    lease_duration_s: float = LEASE_DURATION_S
    renew_deadline_s: float = RENEW_DEADLINE_S
    retry_period_s: float = RETRY_PERIOD_S

    def __post_init__(self) -> None:
        if not (0 < self.retry_period_s < self.renew_deadline_s
                and self.renew_deadline_s + self.retry_period_s < self.lease_duration_s):
            raise ConfigError(
                "lease timing must satisfy 0 < retry period < renew deadline and renew "
                "deadline + retry period < lease duration",
                detail=f"got retry {self.retry_period_s:g}s, renew deadline "
                       f"{self.renew_deadline_s:g}s, duration {self.lease_duration_s:g}s")

    @classmethod
    def for_duration(cls, lease_duration_s: float) -> LeaseTiming:
        """client-go's proportions (10/15 and 2/15 of the duration) for another duration."""
        return cls(lease_duration_s, lease_duration_s * 2 / 3, lease_duration_s * 2 / 15)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease the election reads and writes."""

    holder: str | None
    duration_s: float
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0
    learner_url: str | None = None
    resource_version: str | None = None

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        rv = meta.get("resourceVersion")
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration_s=float(spec.get("leaseDurationSeconds") or LEASE_DURATION_S),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            learner_url=annotations.get(URL_ANNOTATION),
            resource_version=None if rv is None else str(rv),
        )

    def to_object(self, namespace: str, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if self.learner_url:
            meta["annotations"] = {URL_ANNOTATION: self.learner_url}
        if self.resource_version is not None:
            meta["resourceVersion"] = self.resource_version
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": max(1, round(self.duration_s)),
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": spec}

    def _observed_key(self) -> tuple[object, ...]:
        return (self.holder, self.renew_time, self.acquire_time, self.transitions,
                self.resource_version)


def micro_time(wall: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


class Election:
    """client-go's leader-election rules over Lease records. Pure: time is passed in."""

    def __init__(self, identity: str, url: str | None, timing: LeaseTiming) -> None:
        if not identity:
            raise ConfigError("a replica needs a non-empty identity for leader election",
                              detail="set --replica-id (defaults to $POD_NAME or the hostname)")
        self.identity = identity
        self.url = url
        self.timing = timing
        #: the record last read, and when (monotonic, this replica's clock) it last changed
        self.observed: LeaseRecord | None = None
        self.observed_at = 0.0
        #: when this replica last wrote the Lease as its holder (monotonic)
        self.renewed_at: float | None = None

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """Remember what the API holds now; the expiry clock restarts when it changed."""
        if record is None:
            self.observed = None
            return
        if self.observed is None or record._observed_key() != self.observed._observed_key():
            self.observed_at = now
        self.observed = record

    @property
    def leader(self) -> str | None:
        return None if self.observed is None else self.observed.holder

    @property
    def leader_url(self) -> str | None:
        return None if self.observed is None else self.observed.learner_url

    def is_leader(self, now: float) -> bool:
        """This replica holds the Lease and renewed it within the renew deadline."""
        return (self.renewed_at is not None and self.leader == self.identity
                and now - self.renewed_at < self.timing.renew_deadline_s)

    def expires_in(self, now: float) -> float:
        """Seconds until another holder's Lease counts as expired here (0: now, or ours)."""
        rec = self.observed
        if rec is None or not rec.holder or rec.holder == self.identity:
            return 0.0
        wait = max(0.0, rec.duration_s - self.timing.retry_period_s)
        return max(0.0, self.observed_at + wait - now)

    def may_acquire(self, now: float) -> bool:
        """Whether to write the Lease now (renew ours, or take over a free or expired one)."""
        return self.expires_in(now) <= 0.0

    def claim(self, wall: float) -> LeaseRecord:
        """The record to write to hold (or keep holding) the Lease, from the one observed."""
        rec = self.observed
        stamp = micro_time(wall)
        if rec is None:
            return LeaseRecord(self.identity, self.timing.lease_duration_s, stamp, stamp, 0,
                               self.url)
        if rec.holder == self.identity:
            return replace(rec, renew_time=stamp, duration_s=self.timing.lease_duration_s,
                           learner_url=self.url)
        return replace(rec, holder=self.identity, duration_s=self.timing.lease_duration_s,
                       acquire_time=stamp, renew_time=stamp,
                       transitions=rec.transitions + 1,
                       learner_url=self.url)

    def renewed(self, record: LeaseRecord, now: float) -> None:
        """Our write was accepted: we hold `record` as of `now`."""
        self.observe(record, now)
        self.renewed_at = now

    def released(self) -> None:
        self.renewed_at = None


Callback = Callable[[], Awaitable[None]]


class LeaseElector:
    """Runs `Election` against the API server until stopped; calls back on changes.

    `on_started_leading` runs when this replica becomes the holder, `on_stopped_leading` when
    it loses the Lease (or cannot renew in time), `on_leader_changed` whenever the holder or
    its URL changes (every replica, to re-point its outcome shipper).
    """

    def __init__(
        self, api: KubeApi | None, namespace: str, name: str, election: Election, *,
        api_options: Mapping[str, object] | None = None,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        on_leader_changed: Callable[[str | None, str | None], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        #: None: built from `api_options` (`KubeConfig.load`: api_url, in-cluster, kubeconfig)
        #: by `start()`, and closed by `stop()`
        self._api = api
        self._api_options = dict(api_options or {"namespace": namespace})
        self._owns_api = api is None
        self.namespace = namespace
        self.name = name
        self.election = election
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_changed = on_leader_changed
        self._clock = clock
        self._wall = wall
        self._task: asyncio.Task[None] | None = None
        self._leading = False
        self._last_seen: tuple[str | None, str | None] = (None, None)
        #: times this replica became the leader, and API errors met (for /replica/state)
        self.terms = 0
        self.errors = 0
        self.last_error = ""

    @property
    def path(self) -> str:
        return (f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/"
                f"{self.name}")

    @property
    def leading(self) -> bool:
        return self._leading

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            raise RuntimeError("LeaseElector.start() was not called")
        return self._api

    async def start(self) -> None:
        if self._api is None:
            self._api = KubeApi(await KubeConfig.load(self._api_options, "lease"))
        if self._owns_api:
            await self._api.start()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"lease-{self.name}")

    async def stop(self, *, release: bool = True) -> None:
        """Stop electing; a holder gives the Lease up (holder cleared) so a peer takes over
        at once instead of after the lease duration (client-go's ReleaseOnCancel)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if release and self._leading:
            await self._release()
            await self._set_leading(False)
        if self._owns_api and self._api is not None:
            await self._api.close()
            self._api = None

    async def _release(self) -> None:
        """Clear the holder if it is still us. A renewal cancelled mid-request by `stop` may
        have reached the server (a newer resourceVersion than the one we hold): on 409 the
        Lease is read again and the release retried."""
        rec = self.election.observed
        for _ in range(3):
            if rec is None or rec.holder != self.election.identity:
                return
            try:
                await self._write(replace(rec, holder=None, learner_url=None,
                                          renew_time=micro_time(self._wall())))
                return
            except KubeConflictError:
                try:
                    rec = LeaseRecord.from_object(await self.api.get(self.path))
                except ShabariError:
                    return
            except ShabariError:
                return

    async def step(self) -> None:
        """One round: read, maybe write, update the role. Never raises on API trouble."""
        now = self._clock()
        e = self.election
        try:
            try:
                rec: LeaseRecord | None = LeaseRecord.from_object(await self.api.get(self.path))
            except KubeNotFoundError:
                rec = None
            e.observe(rec, now)
            if e.may_acquire(now):
                claim = e.claim(self._wall())
                written = await (self._create(claim) if rec is None else self._write(claim))
                e.renewed(written, self._clock())
        except KubeConflictError:
            pass  # another replica wrote first: it holds the Lease; we read it next round
        except ShabariError as exc:
            self.errors += 1
            self.last_error = str(exc) + (f": {exc.detail}" if exc.detail else "")
            log.warning("lease %s/%s: %s", self.namespace, self.name, self.last_error)
        await self._set_leading(e.is_leader(self._clock()))
        seen = (e.leader, e.leader_url)
        if seen != self._last_seen:
            self._last_seen = seen
            if self._on_changed is not None:
                await self._on_changed(*seen)

    async def _create(self, rec: LeaseRecord) -> LeaseRecord:
        obj = await self.api.request(
            "POST", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases",
            body=rec.to_object(self.namespace, self.name))
        return LeaseRecord.from_object(obj)

    async def _write(self, rec: LeaseRecord) -> LeaseRecord:
        obj = await self.api.request("PUT", self.path,
                                     body=rec.to_object(self.namespace, self.name))
        return LeaseRecord.from_object(obj)

    async def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            self.terms += 1
            log.info("lease %s/%s: %s is the learner now", self.namespace, self.name,
                     self.election.identity)
            if self._on_started is not None:
                await self._on_started()
        else:
            self.election.released()
            log.info("lease %s/%s: %s stopped being the learner", self.namespace, self.name,
                     self.election.identity)
            if self._on_stopped is not None:
                await self._on_stopped()

    async def _run(self) -> None:
        period = self.election.timing.retry_period_s
        while True:
            t0 = self._clock()
            await self.step()
            now = self._clock()
            pause = period - (now - t0)
            expiry = self.election.expires_in(now)
            if expiry > 0.0:  # wake up at the holder's expiry, not at the next poll after it
                pause = min(pause, expiry + 0.001)
            await asyncio.sleep(max(0.0, pause))
