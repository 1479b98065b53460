"""The cold-start-aware scheduler: where one invocation of a decided size runs.

Every driver uses the same object: the gateway under the wall clock, the simulator under its
simulated clock (hundreds of thousands of invocations per policy), tests under a fake clock.
So it is pure (no I/O, no clock, no global state; `now` is passed in) and fast: `place` looks
only at the idle pods of the invocation's own function, kept in per-function buckets by size
class, so it costs O(size classes of that function) when a warm pod fits (O(1) for the
exact size); a cold start finds its node in O(log nodes) through a sorted free-CPU index, and
only a full cluster walks the idle pods in least-recently-used order to find what to evict.

Protocol: `place` decides and mutates nothing (safe to call speculatively), nor does `preview`
(what `place` would do with a size: the warm-fit rule policies see through
`DecisionContext.warm_fit`); `commit` applies a placement and returns the pod; `release` marks
the invocation finished; `expire` hands back pods idle past their keep-alive window so the
caller stops them; `remove` forgets a pod that died. The scheduler is the one owner of pod
state: every transition is announced to `subscribe`d listeners as a `PodEvent` (the gateway's
pool ledger and the simulator's accounting integrate them). The rules are spelled out in
docs/scheduler.md; each has a test in tests/scheduler/.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence

from shabari.core.errors import CapacityError, ConfigError
from shabari.core.ids import FunctionName, NodeId, PodId
from shabari.core.spec import Size
from shabari.core.types import NodeCapacity, Placement, PlacementKind
from shabari.core.units import format_cpu
from shabari.scheduler.config import NodeChoice, SchedulerConfig
from shabari.scheduler.keepalive import FixedKeepAlive, KeepAlivePolicy
from shabari.scheduler.model import ClusterUsage, NodeUsage, Pod, PodEvent, PodEventKind

__all__ = ["Scheduler", "queue_wait_ms"]

#: idle-bucket key of a size class: sorted by GPU, then memory, then CPU
_Key = tuple[int, int, int]


def _key(size: Size) -> _Key:
    return (size.gpu, size.memory_mib, size.cpu_millicores)


def _fmt(cpu: int, mem: int, gpu: int = 0) -> str:
    """`2000m/1024Mi` (plus `/1gpu`): raw units, so numbers in reasons compare at a glance."""
    text = f"{cpu}m/{mem}Mi"
    return f"{text}/{gpu}gpu" if gpu else text


class _PodState:
    __slots__ = (
        "busy",
        "deadline",
        "function",
        "invocations",
        "last_used",
        "node",
        "node_id",
        "pod_id",
        "ready_at",
        "release_seq",
        "size",
        "started_at",
    )

    def __init__(
        self, pod_id: PodId, function: FunctionName, size: Size, node: int, node_id: NodeId,
        now: float, ready_at: float,
    ) -> None:
        self.pod_id = pod_id
        self.function = function
        self.size = size
        self.node = node
        self.node_id = node_id
        self.busy = True
        self.ready_at = ready_at
        self.last_used = now
        self.started_at = now
        self.invocations = 1
        self.release_seq = -1
        #: end of the keep-alive window while idle
        self.deadline = now

    def snapshot(self) -> Pod:
        return Pod(
            pod_id=self.pod_id,
            function=self.function,
            size=self.size,
            node_id=self.node_id,
            busy=self.busy,
            ready_at=self.ready_at,
            last_used=self.last_used,
            started_at=self.started_at,
            invocations=self.invocations,
        )


class _FunctionPool:
    """One function's pods, with its idle ones indexed by size class for O(classes) lookup."""

    __slots__ = ("idle", "idle_lru", "keys", "pods", "warm_cache")

    def __init__(self) -> None:
        self.pods: dict[PodId, _PodState] = {}
        #: size class -> idle pods of that class, in release order (last = most recent)
        self.idle: dict[_Key, dict[PodId, _PodState]] = {}
        #: sorted keys of `idle` (buckets may be empty; their number is bounded by the grid)
        self.keys: list[_Key] = []
        #: every idle pod of the function in release order (first = least recently used)
        self.idle_lru: dict[PodId, _PodState] = {}
        self.warm_cache: tuple[Size, ...] | None = None


def can_take(pod: Size, need: Size, supports_resize: bool) -> bool:
    """Whether an idle pod of size `pod` can take an invocation decided at `need` by the warm
    rule (memory and GPUs fit; its CPU too, or the platform resizes in place), without the
    node's room for a resize up: which waiter a released pod wakes."""
    return (pod.memory_mib >= need.memory_mib and pod.gpu == need.gpu
            and (supports_resize or pod.cpu_millicores >= need.cpu_millicores))


def queue_wait_ms(first_free_ms: float, hold_ms: float, queued: int, servers: int) -> float:
    """Expected wait of a new invocation behind `servers` busy pods with `queued` ahead.

    The first of them frees up in `first_free_ms`; each invocation holds a pod `hold_ms` on
    average, so the `queued` invocations ahead are served `servers` at a time: the newcomer
    starts after `first_free_ms + (queued // servers) * hold_ms`. Pure (M/D/c-style mean,
    good enough to compare with a cold start, which is seconds against milliseconds).
    """
    if servers <= 0:
        return float("inf")
    return max(0.0, first_free_ms) + (max(0, queued) // servers) * max(0.0, hold_ms)


class Scheduler:
    """Places invocations on warm pods or cold starts; models the pool, nodes and keep-alive."""

    def __init__(
        self,
        nodes: Sequence[NodeCapacity],
        config: SchedulerConfig = SchedulerConfig(),
        *,
        keep_alive: KeepAlivePolicy | None = None,
    ) -> None:
        seen: set[NodeId] = set()
        for n in nodes:
            if n.node_id in seen:
                raise ConfigError(f"duplicate node id {n.node_id!r} in the scheduler's node list")
            if n.cpu_millicores <= 0 or n.memory_mib <= 0 or n.gpus < 0:
                raise ConfigError(f"node {n.node_id!r} has no usable capacity "
                                  f"(cpu={n.cpu_millicores}m, memory={n.memory_mib}Mi, "
                                  f"gpus={n.gpus})")
            seen.add(n.node_id)
        self.config = config
        self.keep_alive: KeepAlivePolicy = (
            keep_alive if keep_alive is not None else FixedKeepAlive(config.keep_alive_s))
        # Nodes live in parallel lists indexed by position: the cold-start scan over them is
        # the hottest loop after the warm lookup, and plain list indexing keeps it cheap.
        self._caps: list[NodeCapacity] = list(nodes)
        self._index = {n.node_id: i for i, n in enumerate(self._caps)}
        self._free_c = [n.cpu_millicores for n in self._caps]
        self._free_m = [n.memory_mib for n in self._caps]
        self._free_g = [n.gpus for n in self._caps]
        self._npods = [0] * len(self._caps)
        #: per node: what its idle pods hold, and the idle pods in release order (LRU first)
        self._idle_c = [0] * len(self._caps)
        self._idle_m = [0] * len(self._caps)
        self._idle_g = [0] * len(self._caps)
        self._node_idle: list[dict[PodId, _PodState]] = [{} for _ in self._caps]
        #: every idle pod in release order (first = least recently used): eviction order
        self._idle_lru: dict[PodId, _PodState] = {}
        #: (free CPU, node) sorted, for nodes without GPUs [0] and with GPUs [1]
        self._by_cpu: tuple[list[tuple[int, int]], list[tuple[int, int]]] = (
            sorted((n.cpu_millicores, i) for i, n in enumerate(self._caps) if not n.gpus),
            sorted((n.cpu_millicores, i) for i, n in enumerate(self._caps) if n.gpus))
        self._pods: dict[PodId, _PodState] = {}
        self._pools: dict[FunctionName, _FunctionPool] = {}
        #: (deadline, release_seq, pod id); an entry is live while the pod's release_seq matches
        self._expiry: list[tuple[float, int, PodId]] = []
        self._release_seq = 0
        self._pod_seq = 0
        #: the distinct node shapes no other node dominates (usually one): the REJECT test
        shapes = {(n.cpu_millicores, n.memory_mib, n.gpus) for n in self._caps}
        self._shapes = [a for a in shapes if not any(
            b != a and b[0] >= a[0] and b[1] >= a[1] and b[2] >= a[2] for b in shapes)]
        # running totals, so usage() is O(1)
        self._alloc = [0, 0, 0]
        self._idle = [0, 0, 0]
        self._listeners: list[Callable[[PodEvent], None]] = []

    def subscribe(self, listener: Callable[[PodEvent], None]) -> None:
        """Call `listener` with every pod transition from now on (in the order they happen)."""
        self._listeners.append(listener)

    def _emit(self, kind: PodEventKind, p: _PodState, time: float) -> None:
        if self._listeners:
            ev = PodEvent(kind, p.pod_id, p.function, p.size, time)
            for listener in self._listeners:
                listener(ev)

    # ------------------------------------------------------------------ queries

    def warm_idle(self, function: FunctionName, now: float) -> tuple[Size, ...]:
        """Sizes of `function`'s idle warm pods, one entry per pod (`DecisionContext.warm_idle`)."""
        pool = self._pools.get(function)
        if pool is None or not pool.idle_lru:
            return ()
        if pool.warm_cache is None:
            sizes: list[Size] = []
            for k in pool.keys:
                bucket = pool.idle[k]
                if bucket:
                    sizes.extend(p.size for p in bucket.values())
            pool.warm_cache = tuple(sizes)
        return pool.warm_cache

    def pods(self, function: FunctionName | None = None) -> list[Pod]:
        """Snapshots of every pod (of one function), oldest first."""
        if function is None:
            return [p.snapshot() for p in self._pods.values()]
        pool = self._pools.get(function)
        return [] if pool is None else [p.snapshot() for p in pool.pods.values()]

    def pod(self, pod_id: PodId) -> Pod | None:
        p = self._pods.get(pod_id)
        return None if p is None else p.snapshot()

    def nodes(self) -> tuple[NodeUsage, ...]:
        """Each node's capacity and what its pods hold, in the order the nodes were given."""
        return tuple(
            NodeUsage(cap, cap.cpu_millicores - self._free_c[i],
                      cap.memory_mib - self._free_m[i], cap.gpus - self._free_g[i],
                      self._npods[i])
            for i, cap in enumerate(self._caps))

    def usage(self, now: float | None = None) -> ClusterUsage:
        """Cluster totals in O(1); with `now`, starting pods are counted apart (O(pods))."""
        starting = 0
        if now is not None:
            starting = sum(1 for p in self._pods.values() if p.busy and now < p.ready_at)
        return ClusterUsage(
            nodes=len(self._caps),
            capacity_cpu_millicores=sum(n.cpu_millicores for n in self._caps),
            capacity_memory_mib=sum(n.memory_mib for n in self._caps),
            capacity_gpus=sum(n.gpus for n in self._caps),
            allocated_cpu_millicores=self._alloc[0],
            allocated_memory_mib=self._alloc[1],
            allocated_gpus=self._alloc[2],
            idle_cpu_millicores=self._idle[0],
            idle_memory_mib=self._idle[1],
            idle_gpus=self._idle[2],
            pods=len(self._pods),
            pods_busy=len(self._pods) - len(self._idle_lru) - starting,
            pods_idle=len(self._idle_lru),
            pods_starting=starting,
        )

    # ------------------------------------------------------------------ decide

    def place(
        self,
        function: FunctionName,
        size: Size,
        now: float,
        *,
        cold_start_ms: float | None = None,
        busy_wait_ms: float | None = None,
        queued: int = 0,
    ) -> Placement:
        """Decide where an invocation of `size` runs. Pure: mutates nothing.

        Order: an idle warm pod that fits (WARM/RESIZE); else QUEUE behind a busy pod when the
        caller's estimates say it frees up sooner than a cold start completes; else a cold
        start (COLD, evicting least-recently-used idle pods if the cluster is full); else
        QUEUE (cluster full) or REJECT (no node could ever hold `size`).

        `queued` is how many invocations of this function already wait for one of its busy
        pods: they are served first, so the wait behind the busy pods grows with them
        (`queue_wait_ms`), and once it exceeds a cold start the function scales out.
        """
        if not self._fits_some_node(size):
            return Placement(PlacementKind.REJECT, size, reason=self._reject_reason(size))
        cfg = self.config
        pool = self._pools.get(function)
        if pool is not None and pool.idle_lru:
            warm = self._find_warm(pool, size)
            if warm is not None:
                return self._warm_placement(warm, size)
        if (pool is not None and cold_start_ms is not None and busy_wait_ms is not None
                and cfg.queue_factor > 0):
            behind = self._queue_behind_busy(pool, size, now, cold_start_ms, busy_wait_ms,
                                             queued)
            if behind is not None:
                return behind
        forced: _PodState | None = None
        limit = cfg.max_pods_per_function
        if limit is not None and pool is not None and len(pool.pods) >= limit:
            if not pool.idle_lru:
                return Placement(PlacementKind.QUEUE, size, reason=(
                    f"function {function} is at max_pods_per_function={limit} and all its "
                    f"pods are busy"))
            # replace this function's least recently used idle pod (none of them fits)
            forced = next(iter(pool.idle_lru.values()))
        plan = self._plan_cold(size, forced)
        if plan is None:
            return Placement(PlacementKind.QUEUE, size, reason=self._full_reason(size))
        node, evict = plan
        node_id = self._caps[node].node_id
        reason = f"cold start on {node_id}"
        if evict:
            reason += f" after evicting {len(evict)} idle pod(s)"
        return Placement(PlacementKind.COLD, size, node_id=node_id, evict=evict, reason=reason)

    def preview(self, function: FunctionName, size: Size) -> PlacementKind:
        """What `place` would give `size` from the warm pool right now: WARM (an idle pod
        used as it is), RESIZE (an idle pod whose CPU is changed in place, with room for it on
        its node) or COLD (no idle pod fits). Pure; the warm-fit rule every policy sees."""
        pool = self._pools.get(function)
        if pool is None or not pool.idle_lru:
            return PlacementKind.COLD
        p = self._find_warm(pool, size)
        if p is None:
            return PlacementKind.COLD
        if not self.config.supports_resize or p.size.cpu_millicores == size.cpu_millicores:
            return PlacementKind.WARM
        return PlacementKind.RESIZE

    def _find_warm(self, pool: _FunctionPool, size: Size) -> _PodState | None:
        exact = pool.idle.get((size.gpu, size.memory_mib, size.cpu_millicores))
        if exact:
            # the decided size itself: smallest memory that fits and no resize, in both modes
            return next(reversed(exact.values()))
        keys = pool.keys
        n = len(keys)
        gpu = size.gpu
        i = bisect_left(keys, (gpu, size.memory_mib, 0))
        resize = self.config.supports_resize
        want_cpu = size.cpu_millicores
        free_c = self._free_c
        while i < n and keys[i][0] == gpu:
            mem = keys[i][1]
            j = i
            while j < n and keys[j][0] == gpu and keys[j][1] == mem:
                j += 1
            if resize:
                # same memory class: the exact CPU first (no resize at all), then smallest CPU
                same_cpu = (gpu, mem, want_cpu)
                order = [same_cpu] if same_cpu in pool.idle else []
                order.extend(k for k in keys[i:j] if k[2] != want_cpu)
                for k in order:
                    bucket = pool.idle[k]
                    if not bucket:
                        continue
                    delta = want_cpu - k[2]
                    if delta <= 0:
                        return next(reversed(bucket.values()))
                    tried: set[int] = set()
                    for p in reversed(bucket.values()):  # most recently used first
                        if p.node in tried:
                            continue
                        if free_c[p.node] >= delta:
                            return p
                        tried.add(p.node)
            else:
                for k in keys[i:j]:
                    if k[2] >= want_cpu and pool.idle[k]:
                        return next(reversed(pool.idle[k].values()))
            i = j
        return None

    def _warm_placement(self, p: _PodState, size: Size) -> Placement:
        if not self.config.supports_resize or p.size.cpu_millicores == size.cpu_millicores:
            return Placement(PlacementKind.WARM, p.size, pod_id=p.pod_id, node_id=p.node_id,
                             reason=f"idle warm pod {p.pod_id} ({p.size})")
        target = p.size.with_cpu(size.cpu_millicores)
        return Placement(
            PlacementKind.RESIZE, target, pod_id=p.pod_id, node_id=p.node_id,
            resized_from=p.size,
            reason=(f"idle warm pod {p.pod_id} resized in place "
                    f"{format_cpu(p.size.cpu_millicores)} -> "
                    f"{format_cpu(size.cpu_millicores)} "
                    f"(~{self.config.resize_latency_ms:g} ms)"),
        )

    def _queue_behind_busy(
        self, pool: _FunctionPool, size: Size, now: float, cold_start_ms: float,
        busy_wait_ms: float, queued: int,
    ) -> Placement | None:
        resize = self.config.supports_resize
        best: _PodState | None = None
        best_wait = 0.0
        servers = 0
        for p in pool.pods.values():
            s = p.size
            if not p.busy or s.gpu != size.gpu or s.memory_mib < size.memory_mib:
                continue
            if not resize and s.cpu_millicores < size.cpu_millicores:
                continue
            servers += 1
            wait = max(0.0, p.ready_at - now) * 1000.0 + max(0.0, busy_wait_ms)
            if best is None or wait < best_wait:
                best, best_wait = p, wait
        if best is None:
            return None
        wait_ms = queue_wait_ms(best_wait, busy_wait_ms, queued, servers)
        if not wait_ms < self.config.queue_factor * cold_start_ms:
            return None
        return Placement(
            PlacementKind.QUEUE, size, pod_id=best.pod_id, node_id=best.node_id,
            reason=(f"waiting ~{wait_ms:.0f} ms for busy pod {best.pod_id} "
                    f"({queued} queued ahead) beats a {cold_start_ms:.0f} ms cold start"),
        )

    def _plan_cold(
        self, size: Size, forced: _PodState | None
    ) -> tuple[int, tuple[PodId, ...]] | None:
        """Pick the node for a cold start and the idle pods to evict there (pure).

        1. A pod this function must give up (max_pods_per_function) is replaced on its own
           node when the new size fits there.
        2. Otherwise a node with room now: BEST_FIT takes the one with the least free CPU
           that still fits (memory and GPUs checked too), SPREAD the one with the most;
           CPU-only sizes try nodes without GPUs first. O(log nodes) via a sorted index.
        3. Otherwise evict: walking idle pods least recently used first, the first node whose
           free plus idle resources would fit is chosen, and loses idle pods in LRU order
           until the size fits (the most recent of them given back when not needed).
        """
        need_c, need_m, need_g = size.cpu_millicores, size.memory_mib, size.gpu
        free_c, free_m, free_g = self._free_c, self._free_m, self._free_g
        evict_forced: tuple[PodId, ...] = ()
        if forced is not None:
            evict_forced = (forced.pod_id,)
            i = forced.node
            fs = forced.size
            if (free_c[i] + fs.cpu_millicores >= need_c and free_m[i] + fs.memory_mib >= need_m
                    and free_g[i] + fs.gpu >= need_g):
                return i, evict_forced
        spread = self.config.node_choice is NodeChoice.SPREAD
        for index in (self._by_cpu[1],) if need_g else self._by_cpu:
            if spread:
                lo = bisect_left(index, (need_c, -1))
                for pos in range(len(index) - 1, lo - 1, -1):
                    i = index[pos][1]
                    if free_m[i] >= need_m and free_g[i] >= need_g:
                        return i, evict_forced
            else:
                for pos in range(bisect_left(index, (need_c, -1)), len(index)):
                    i = index[pos][1]
                    if free_m[i] >= need_m and free_g[i] >= need_g:
                        return i, evict_forced
        if not self.config.evict_for_room:
            return None
        idle_c, idle_m, idle_g = self._idle_c, self._idle_m, self._idle_g
        def clearable(i: int) -> bool:
            return (free_c[i] + idle_c[i] >= need_c and free_m[i] + idle_m[i] >= need_m
                    and free_g[i] + idle_g[i] >= need_g)

        chosen = -1
        seen: set[int] = set()
        budget = 4 * len(free_c)  # bounds the walk when a few full nodes hold most idle pods
        for p in self._idle_lru.values():
            i = p.node
            if i in seen:
                budget -= 1
                if budget < 0:
                    break
                continue
            seen.add(i)
            if clearable(i):
                chosen = i
                break
        if chosen < 0 and budget < 0:
            # the rest, by each node's own least recently used idle pod: O(nodes)
            heads = [(next(iter(self._node_idle[i].values())).last_used, i)
                     for i in range(len(free_c))
                     if i not in seen and self._node_idle[i] and clearable(i)]
            if heads:
                chosen = min(heads)[1]
        if chosen < 0:
            return None
        have = [free_c[chosen], free_m[chosen], free_g[chosen]]
        if forced is not None and forced.node == chosen:
            fs = forced.size
            have = [have[0] + fs.cpu_millicores, have[1] + fs.memory_mib, have[2] + fs.gpu]
        victims: list[_PodState] = []
        for p in self._node_idle[chosen].values():  # least recently used first
            if have[0] >= need_c and have[1] >= need_m and have[2] >= need_g:
                break
            if p is forced:
                continue
            victims.append(p)
            have[0] += p.size.cpu_millicores
            have[1] += p.size.memory_mib
            have[2] += p.size.gpu
        # give back the most recently used victims that turn out not to be needed
        kept: list[PodId] = []
        for p in reversed(victims):
            c, m, g = p.size.cpu_millicores, p.size.memory_mib, p.size.gpu
            if have[0] - c >= need_c and have[1] - m >= need_m and have[2] - g >= need_g:
                have = [have[0] - c, have[1] - m, have[2] - g]
            else:
                kept.append(p.pod_id)
        kept.reverse()
        return chosen, evict_forced + tuple(kept)

    def _set_free_cpu(self, node: int, delta: int) -> None:
        """Change a node's free CPU by `delta`, keeping the sorted index in step."""
        index = self._by_cpu[self._caps[node].gpus > 0]
        old = self._free_c[node]
        del index[bisect_left(index, (old, node))]
        self._free_c[node] = old + delta
        insort(index, (old + delta, node))

    def _fits_some_node(self, size: Size) -> bool:
        c, m, g = size.cpu_millicores, size.memory_mib, size.gpu
        return any(fc >= c and fm >= m and fg >= g for fc, fm, fg in self._shapes)

    def _reject_reason(self, size: Size) -> str:
        if not self._caps:
            return "no nodes: the scheduler was given an empty cluster"
        big = max(self._caps, key=lambda n: (n.gpus, n.cpu_millicores, n.memory_mib))
        return (f"size {_fmt(size.cpu_millicores, size.memory_mib, size.gpu)} exceeds every "
                f"node's capacity (largest node {big.node_id}: "
                f"{_fmt(big.cpu_millicores, big.memory_mib, big.gpus)})")

    def _full_reason(self, size: Size) -> str:
        need = (size.cpu_millicores, size.memory_mib, size.gpu)

        def closeness(i: int) -> float:
            free = (self._free_c[i], self._free_m[i], self._free_g[i])
            return min(free[d] / need[d] for d in range(3) if need[d] > 0)

        best = max(range(len(self._caps)), key=closeness)
        tail = ("; evicting idle pods would not make room" if self.config.evict_for_room
                else "; eviction for room is disabled")
        return (f"cluster full: need {_fmt(*need)}, largest free "
                f"{_fmt(self._free_c[best], self._free_m[best], self._free_g[best] if size.gpu else 0)}"
                f" on {self._caps[best].node_id}{tail}")

    # ------------------------------------------------------------------ apply

    def commit(
        self, placement: Placement, function: FunctionName, now: float, *,
        cold_start_ms: float = 0.0,
    ) -> Pod:
        """Apply a placement from `place`; returns the pod the invocation now runs on.

        WARM/RESIZE: the pod becomes busy (RESIZE sets its CPU; node accounting follows).
        COLD: the evicted idle pods leave the model (the caller stops them) and a new busy pod
        is created, ready at `now + cold_start_ms / 1000`. QUEUE/REJECT, or a placement made
        stale by changes since `place`, raise `CapacityError` and change nothing.
        """
        kind = placement.kind
        if kind is PlacementKind.WARM or kind is PlacementKind.RESIZE:
            return self._commit_warm(placement, function, now)
        if kind is PlacementKind.COLD:
            return self._commit_cold(placement, function, now, cold_start_ms)
        raise CapacityError(f"cannot commit a {kind.value} placement for {function}",
                            detail=placement.reason)

    def _commit_warm(self, placement: Placement, function: FunctionName, now: float) -> Pod:
        p = self._pods.get(placement.pod_id) if placement.pod_id is not None else None
        if p is None or p.function != function:
            raise CapacityError(f"stale placement for {function}: pod {placement.pod_id} is gone")
        if p.busy:
            raise CapacityError(f"stale placement for {function}: pod {p.pod_id} is busy")
        expected = (placement.resized_from if placement.kind is PlacementKind.RESIZE
                    else placement.size)
        if p.size != expected:
            raise CapacityError(f"stale placement for {function}: pod {p.pod_id} is {p.size}, "
                                f"placement expected {expected}")
        target = placement.size
        if target.memory_mib != p.size.memory_mib or target.gpu != p.size.gpu:
            raise CapacityError(f"invalid placement for {function}: a resize changes CPU only "
                                f"({p.size} -> {target})")
        delta = target.cpu_millicores - p.size.cpu_millicores
        if delta > 0 and self._free_c[p.node] < delta:
            raise CapacityError(f"stale placement for {function}: node {p.node_id} "
                                f"has no CPU headroom for +{delta}m")
        self._unmark_idle(p)
        if delta:
            self._set_free_cpu(p.node, -delta)
            self._alloc[0] += delta
            p.size = target
        p.busy = True
        p.invocations += 1
        self.keep_alive.observe(function, now)
        self._emit(PodEventKind.BUSY, p, now)
        return p.snapshot()

    def revert_resize(self, pod_id: PodId, size: Size, now: float | None = None) -> Pod:
        """A committed in-place resize the platform refused: the busy pod is back at `size`.

        Only the CPU changes (memory and GPU must match); node accounting follows. Unlike a
        second `commit`, this is no new arrival for the keep-alive policy.
        """
        p = self._pods.get(pod_id)
        if p is None or not p.busy:
            raise CapacityError(f"cannot revert the resize of pod {pod_id}: "
                                f"{'gone' if p is None else 'not busy'}")
        if size.memory_mib != p.size.memory_mib or size.gpu != p.size.gpu:
            raise CapacityError(f"cannot revert the resize of pod {pod_id}: a resize changes "
                                f"CPU only ({p.size} -> {size})")
        delta = size.cpu_millicores - p.size.cpu_millicores
        if delta > 0 and self._free_c[p.node] < delta:
            raise CapacityError(f"cannot revert the resize of pod {pod_id}: node {p.node_id} "
                                f"has no CPU headroom for +{delta}m")
        if delta:
            self._set_free_cpu(p.node, -delta)
            self._alloc[0] += delta
            p.size = size
        self._emit(PodEventKind.BUSY, p, p.last_used if now is None else now)
        return p.snapshot()

    def _commit_cold(
        self, placement: Placement, function: FunctionName, now: float, cold_start_ms: float
    ) -> Pod:
        node = self._index.get(placement.node_id) if placement.node_id is not None else None
        if node is None:
            raise CapacityError(f"invalid placement for {function}: unknown node "
                                f"{placement.node_id!r}")
        victims: list[_PodState] = []
        for pid in placement.evict:
            v = self._pods.get(pid)
            if v is None or v.busy:
                raise CapacityError(f"stale placement for {function}: pod {pid} to evict is "
                                    f"{'gone' if v is None else 'busy'}")
            victims.append(v)
        size = placement.size
        fc, fm, fg = self._free_c[node], self._free_m[node], self._free_g[node]
        for v in victims:
            if v.node == node:
                fc += v.size.cpu_millicores
                fm += v.size.memory_mib
                fg += v.size.gpu
        if fc < size.cpu_millicores or fm < size.memory_mib or fg < size.gpu:
            raise CapacityError(f"stale placement for {function}: node {placement.node_id} has "
                                f"{_fmt(fc, fm, fg)} free, need {size}")
        limit = self.config.max_pods_per_function
        pool = self._pools.get(function)
        if limit is not None and pool is not None:
            mine = sum(1 for v in victims if v.function == function)
            if len(pool.pods) - mine >= limit:
                raise CapacityError(f"stale placement for {function}: at "
                                    f"max_pods_per_function={limit}")
        for v in victims:
            self._drop(v)  # may drop the function's pool when it loses its last pod
            self._emit(PodEventKind.STOPPED, v, now)
        pool = self._pools.get(function)
        if pool is None:
            pool = self._pools[function] = _FunctionPool()
        self._pod_seq += 1
        pod_id = PodId(f"{function}-{self._pod_seq}")
        p = _PodState(pod_id, function, size, node, self._caps[node].node_id, now,
                      now + max(0.0, cold_start_ms) / 1000.0)
        self._pods[pod_id] = p
        pool.pods[pod_id] = p
        self._set_free_cpu(node, -size.cpu_millicores)
        self._free_m[node] -= size.memory_mib
        self._free_g[node] -= size.gpu
        self._npods[node] += 1
        self._alloc[0] += size.cpu_millicores
        self._alloc[1] += size.memory_mib
        self._alloc[2] += size.gpu
        self.keep_alive.observe(function, now)
        self._emit(PodEventKind.STARTED, p, now)
        return p.snapshot()

    def ready(self, pod_id: PodId, now: float) -> None:
        """The backend reports the pod ready (its real cold start ended at `now`)."""
        p = self._pods.get(pod_id)
        if p is not None:
            p.ready_at = now

    def release(self, pod_id: PodId, now: float) -> None:
        """The invocation on `pod_id` finished at `now`: the pod is idle and warm.

        Unknown pods (removed or expired meanwhile) and pods already idle are ignored, so a
        driver can always release in a `finally`.
        """
        p = self._pods.get(pod_id)
        if p is None or not p.busy:
            return
        p.busy = False
        p.last_used = now
        # it served an invocation, so it is ready whatever the estimate said
        p.ready_at = min(p.ready_at, now)
        self._mark_idle(p)
        window = self.keep_alive.keep_alive_s(p.function, now)
        self._release_seq += 1
        p.release_seq = self._release_seq
        p.deadline = now + window
        heapq.heappush(self._expiry, (p.deadline, self._release_seq, pod_id))
        self._emit(PodEventKind.IDLE, p, now)
        if len(self._expiry) > 2 * len(self._idle_lru) + 1024:
            self._compact_expiry()

    def remove(self, pod_id: PodId, now: float | None = None) -> None:
        """Forget a pod that died or was stopped (idempotent); listeners see it stop at `now`
        (default: when it was last used)."""
        p = self._pods.get(pod_id)
        if p is not None:
            self._drop(p)
            self._emit(PodEventKind.STOPPED, p, p.last_used if now is None else now)

    def shutdown(self, now: float) -> list[Pod]:
        """Every pod leaves the model (the driver stops); an idle pod whose keep-alive ended
        before `now` stops at its deadline. Returns the pods, for the caller to stop."""
        out = []
        for p in list(self._pods.values()):
            end = now if p.busy else min(now, p.deadline)
            out.append(p.snapshot())
            self._drop(p)
            self._emit(PodEventKind.STOPPED, p, end)
        return out

    def expire(self, now: float) -> list[Pod]:
        """Remove idle pods whose keep-alive window ended before `now`; the caller stops them.

        Amortised O(log n) per expired pod (a deadline heap), so drivers may call it often.
        """
        out: list[Pod] = []
        heap = self._expiry
        while heap and heap[0][0] < now:
            deadline, seq, pid = heapq.heappop(heap)
            p = self._pods.get(pid)
            if p is None or p.busy or p.release_seq != seq:
                continue
            out.append(p.snapshot())
            self._drop(p)
            self._emit(PodEventKind.STOPPED, p, deadline)
        return out

    # ------------------------------------------------------------------ bookkeeping

    def _compact_expiry(self) -> None:
        self._expiry = [e for e in self._expiry
                        if (p := self._pods.get(e[2])) is not None and not p.busy
                        and p.release_seq == e[1]]
        heapq.heapify(self._expiry)

    def _mark_idle(self, p: _PodState) -> None:
        pool = self._pools[p.function]
        k = _key(p.size)
        bucket = pool.idle.get(k)
        if bucket is None:
            bucket = pool.idle[k] = {}
            insort(pool.keys, k)
        bucket[p.pod_id] = p
        pool.idle_lru[p.pod_id] = p
        pool.warm_cache = None
        self._node_idle[p.node][p.pod_id] = p
        self._idle_lru[p.pod_id] = p
        c, m, g = p.size.cpu_millicores, p.size.memory_mib, p.size.gpu
        self._idle_c[p.node] += c
        self._idle_m[p.node] += m
        self._idle_g[p.node] += g
        self._idle[0] += c
        self._idle[1] += m
        self._idle[2] += g

    def _unmark_idle(self, p: _PodState) -> None:
        pool = self._pools[p.function]
        del pool.idle[_key(p.size)][p.pod_id]
        del pool.idle_lru[p.pod_id]
        pool.warm_cache = None
        del self._node_idle[p.node][p.pod_id]
        del self._idle_lru[p.pod_id]
        c, m, g = p.size.cpu_millicores, p.size.memory_mib, p.size.gpu
        self._idle_c[p.node] -= c
        self._idle_m[p.node] -= m
        self._idle_g[p.node] -= g
        self._idle[0] -= c
        self._idle[1] -= m
        self._idle[2] -= g

    def _drop(self, p: _PodState) -> None:
        if not p.busy:
            self._unmark_idle(p)
        pool = self._pools[p.function]
        del pool.pods[p.pod_id]
        if not pool.pods:
            del self._pools[p.function]
        del self._pods[p.pod_id]
        c, m, g, node = p.size.cpu_millicores, p.size.memory_mib, p.size.gpu, p.node
        self._set_free_cpu(node, c)
        self._free_m[node] += m
        self._free_g[node] += g
        self._npods[node] -= 1
        self._alloc[0] -= c
        self._alloc[1] -= m
        self._alloc[2] -= g
        p.busy = True  # a dropped pod must never look idle to a stale heap entry
        p.release_seq = -1
