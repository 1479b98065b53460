"""Conservation under random operation sequences (hypothesis state machine).

Whatever order drivers call place/commit/release/remove/expire in, with time moving forward:
no node is over capacity or negative, each node's accounting equals the sum of its pods,
cluster totals equal the sums over pods, the idle index agrees with the pods, and every
runnable placement honours the warm-pod rules.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from shabari.core import (
    CapacityError,
    FunctionName,
    NodeCapacity,
    NodeId,
    PlacementKind,
    PodId,
    Size,
)
from shabari.scheduler import NodeChoice, Pod, Scheduler, SchedulerConfig

FUNCTIONS = [FunctionName(f"f{i}") for i in range(2)]
SIZES = [Size(c, m, g) for c in (250, 1000, 3000) for m in (256, 2048) for g in (0, 1)]
NODES = [NodeCapacity(NodeId("a"), 4000, 8192, 1), NodeCapacity(NodeId("b"), 6000, 6144, 0),
         NodeCapacity(NodeId("c"), 2000, 16384, 0)]


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.s: Scheduler | None = None

    @property
    def sched(self) -> Scheduler:
        assert self.s is not None, "initialize runs first"
        return self.s

    @initialize(resize=st.booleans(), spread=st.booleans(),
          max_pods=st.sampled_from([None, 1, 3]), evict=st.booleans())
    def configure(self, resize: bool, spread: bool, max_pods: int | None, evict: bool) -> None:
        self.s = Scheduler(NODES, SchedulerConfig(
            keep_alive_s=30, supports_resize=resize, max_pods_per_function=max_pods,
            node_choice=NodeChoice.SPREAD if spread else NodeChoice.BEST_FIT,
            evict_for_room=evict))

    @rule(fn=st.sampled_from(FUNCTIONS), size=st.sampled_from(SIZES),
          cold_ms=st.sampled_from([None, 0.0, 500.0, 5000.0]),
          wait_ms=st.sampled_from([None, 10.0, 1000.0]))
    def invoke(self, fn: FunctionName, size: Size, cold_ms: float | None,
               wait_ms: float | None) -> None:
        s = self.sched
        before = (s.pods(), s.nodes(), s.usage(self.now), s.warm_idle(fn, self.now))
        idle_before = {p.pod_id: p for p in before[0] if p.idle and p.function == fn}
        p = s.place(fn, size, self.now, cold_start_ms=cold_ms, busy_wait_ms=wait_ms)
        # place is pure
        assert (s.pods(), s.nodes(), s.usage(self.now), s.warm_idle(fn, self.now)) == before
        resize = s.config.supports_resize
        free = {n.node.node_id: n for n in before[1]}

        def warm_rank(q: Pod) -> tuple[int, bool, int] | None:
            """Reference rule 1, brute force: None if q cannot take the invocation."""
            qs = q.size
            if qs.memory_mib < size.memory_mib or qs.gpu != size.gpu:
                return None
            if not resize:
                return None if qs.cpu_millicores < size.cpu_millicores else \
                    (qs.memory_mib, False, qs.cpu_millicores)
            delta = size.cpu_millicores - qs.cpu_millicores
            if delta > 0 and free[q.node_id].free_cpu_millicores < delta:
                return None
            return (qs.memory_mib, qs.cpu_millicores != size.cpu_millicores, qs.cpu_millicores)

        ranks = [r for q in idle_before.values() if (r := warm_rank(q)) is not None]
        if ranks:
            assert p.kind in (PlacementKind.WARM, PlacementKind.RESIZE), (p, ranks)
            assert p.pod_id is not None
            pod = idle_before[p.pod_id]  # only the function's own idle pods
            assert warm_rank(pod) == min(ranks)
            if resize:
                assert p.size == pod.size.with_cpu(size.cpu_millicores)
                assert (p.kind is PlacementKind.WARM) == (pod.size == p.size)
            else:
                assert p.kind is PlacementKind.WARM and p.size == pod.size
        else:
            assert p.kind not in (PlacementKind.WARM, PlacementKind.RESIZE), p
        if p.kind is PlacementKind.COLD:
            assert p.size == size and p.pod_id is None and p.node_id is not None
            node = free[p.node_id]
            back = [q for q in before[0] if q.pod_id in p.evict]
            assert len(back) == len(p.evict) and all(q.idle for q in back)
            on_node = [q.size for q in back if q.node_id == p.node_id]
            assert node.free_cpu_millicores + sum(z.cpu_millicores for z in on_node) \
                >= size.cpu_millicores
            assert node.free_memory_mib + sum(z.memory_mib for z in on_node) >= size.memory_mib
            assert node.free_gpus + sum(z.gpu for z in on_node) >= size.gpu
            if p.evict and s.config.max_pods_per_function is None:
                need = (size.cpu_millicores, size.memory_mib, size.gpu)
                have = (node.free_cpu_millicores + sum(z.cpu_millicores for z in on_node),
                        node.free_memory_mib + sum(z.memory_mib for z in on_node),
                        node.free_gpus + sum(z.gpu for z in on_node))
                # no victim is superfluous
                for z in on_node:
                    spare = (have[0] - z.cpu_millicores, have[1] - z.memory_mib,
                             have[2] - z.gpu)
                    assert any(spare[d] < need[d] for d in range(3)), (z, p)
                # rule 4: the node holding the least recently used idle pod that can be cleared
                idle_on: dict[str, list[float]] = {}
                for q in before[0]:
                    if q.idle:
                        idle_on.setdefault(q.node_id, []).append(q.last_used)
                for n in before[1]:
                    held = [q.size for q in before[0] if q.idle and q.node_id == n.node.node_id]
                    if (n.free_cpu_millicores + sum(z.cpu_millicores for z in held) >= need[0]
                            and n.free_memory_mib + sum(z.memory_mib for z in held) >= need[1]
                            and n.free_gpus + sum(z.gpu for z in held) >= need[2]):
                        assert min(idle_on[p.node_id]) <= min(idle_on[n.node.node_id])
            if not p.evict:
                # best fit / spread on CPU among nodes with room; CPU-only sizes avoid GPU nodes
                room = [n for n in before[1] if n.free_cpu_millicores >= size.cpu_millicores
                        and n.free_memory_mib >= size.memory_mib
                        and n.free_gpus >= size.gpu]
                plain = [n for n in room if n.node.gpus == 0]
                pool = plain if (plain and not size.gpu) else room
                assert node in pool
                cpus = [n.free_cpu_millicores for n in pool]
                spread = s.config.node_choice is NodeChoice.SPREAD
                assert node.free_cpu_millicores == (max(cpus) if spread else min(cpus))
        elif p.kind is PlacementKind.REJECT:
            assert not any(n.cpu_millicores >= size.cpu_millicores
                           and n.memory_mib >= size.memory_mib and n.gpus >= size.gpu
                           for n in NODES)
        if p.kind in (PlacementKind.QUEUE, PlacementKind.REJECT):
            try:
                s.commit(p, fn, self.now)
            except CapacityError:
                return
            raise AssertionError("committing a QUEUE/REJECT placement must raise")
        pod = s.commit(p, fn, self.now, cold_start_ms=cold_ms or 0.0)
        assert pod.busy and pod.function == fn
        for victim in p.evict:
            assert s.pod(victim) is None

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        busy = [p.pod_id for p in self.sched.pods() if p.busy]
        if busy:
            self.sched.release(data.draw(st.sampled_from(busy)), self.now)

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        ids = [p.pod_id for p in self.sched.pods()] + [PodId("ghost")]
        self.sched.remove(data.draw(st.sampled_from(ids)))

    @rule(dt=st.sampled_from([0.0, 0.5, 5.0, 31.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        for pod in self.sched.expire(self.now):
            assert pod.idle and self.now - pod.last_used > 30
            assert self.sched.pod(pod.pod_id) is None

    @invariant()
    def conservation(self) -> None:
        s = self.sched
        pods = s.pods()
        per_node: dict[str, list[int]] = {}
        for p in pods:
            acc = per_node.setdefault(p.node_id, [0, 0, 0, 0])
            acc[0] += p.size.cpu_millicores
            acc[1] += p.size.memory_mib
            acc[2] += p.size.gpu
            acc[3] += 1
        for n in s.nodes():
            acc = per_node.get(n.node.node_id, [0, 0, 0, 0])
            assert [n.cpu_millicores, n.memory_mib, n.gpus, n.pods] == acc
            assert n.free_cpu_millicores >= 0 and n.free_memory_mib >= 0 and n.free_gpus >= 0
        u = s.usage(self.now)
        assert u.allocated_cpu_millicores == sum(p.size.cpu_millicores for p in pods)
        assert u.allocated_memory_mib == sum(p.size.memory_mib for p in pods)
        assert u.allocated_gpus == sum(p.size.gpu for p in pods)
        idle = [p for p in pods if p.idle]
        assert u.idle_cpu_millicores == sum(p.size.cpu_millicores for p in idle)
        assert u.idle_memory_mib == sum(p.size.memory_mib for p in idle)
        assert (u.pods, u.pods_idle) == (len(pods), len(idle))
        assert u.pods_busy + u.pods_starting + u.pods_idle == u.pods
        assert all(p.ready_at <= self.now for p in idle)
        for fn in FUNCTIONS:
            mine = [p for p in idle if p.function == fn]
            assert Counter(s.warm_idle(fn, self.now)) == Counter(p.size for p in mine)
            limit = s.config.max_pods_per_function
            if limit is not None:
                assert len(s.pods(fn)) <= limit


class TestSeededRandomWalks:
    """Long seeded walks through the same checks: cheap, and they reach deep pool states
    (several idle pods per size class, full nodes) that short shrinking searches rarely do."""

    @pytest.mark.parametrize("seed", range(16))
    def test_walk(self, seed: int) -> None:
        rng = random.Random(seed)
        m = SchedulerMachine()
        m.configure(resize=seed % 2 == 0, spread=seed % 4 == 1,
                    max_pods=rng.choice([None, None, 1, 3]), evict=seed % 8 != 3)
        s = m.sched
        for _ in range(300):
            r = rng.random()
            if r < 0.5:
                m.invoke(fn=rng.choice(FUNCTIONS), size=rng.choice(SIZES),
                         cold_ms=rng.choice([None, 0.0, 500.0, 5000.0]),
                         wait_ms=rng.choice([None, 10.0, 1000.0]))
            elif r < 0.85:
                busy = [p.pod_id for p in s.pods() if p.busy]
                if busy:
                    s.release(rng.choice(busy), m.now)
            elif r < 0.88:
                ids = [p.pod_id for p in s.pods()] + [PodId("ghost")]
                s.remove(rng.choice(ids))
            else:
                m.tick(rng.choice([0.0, 0.5, 5.0, 31.0]))
            m.conservation()


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
