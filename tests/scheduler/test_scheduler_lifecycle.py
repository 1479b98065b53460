"""Pod lifecycle: commit, release, keep-alive expiry, remove, starting pods, usage, stale commits."""

from __future__ import annotations

import pytest
from sched_helpers import Clock, F, G, nodes, sched, warm_pod

from shabari.core import CapacityError, ConfigError, FunctionName, NodeId, PlacementKind, Size
from shabari.scheduler import FixedKeepAlive, KeepAlivePolicy, Scheduler, SchedulerConfig


class TestCommitAndRelease:
    def test_commit_marks_busy_release_marks_idle(self) -> None:
        s, t = sched(), Clock()
        pod = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        assert pod.busy and pod.invocations == 1
        s.release(pod.pod_id, t.advance(3))
        after = s.pod(pod.pod_id)
        assert after is not None and after.idle and after.last_used == t()
        again = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        assert again.pod_id == pod.pod_id and again.invocations == 2

    def test_pod_ids_are_fresh_and_deterministic(self) -> None:
        def ids() -> list[str]:
            s, t = sched(), Clock()
            out: list[str] = []
            for fn in (F, G, F):
                pod = s.commit(s.place(fn, Size(500, 256), t()), fn, t())
                out.append(pod.pod_id)
            return out

        first = ids()
        assert first == ids()
        assert len(set(first)) == 3 and all(i.startswith(("resize-image-", "transcode-"))
                                            for i in first)

    def test_release_unknown_or_idle_pod_is_a_no_op(self) -> None:
        s, t = sched(), Clock()
        pod = warm_pod(s, F, Size(500, 256), t())
        s.release(pod.pod_id, t.advance(100))  # already idle: last_used unchanged
        assert s.pod(pod.pod_id).last_used == t() - 100  # type: ignore[union-attr]
        s.release(pod.pod_id.__class__("nope"), t())

    def test_remove_is_idempotent_and_frees_capacity(self) -> None:
        s, t = sched(), Clock()
        pod = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        s.remove(pod.pod_id)
        s.remove(pod.pod_id)
        s.release(pod.pod_id, t())  # the invocation's finally after the pod died
        assert s.pods() == [] and s.usage().allocated_cpu_millicores == 0

    def test_stale_warm_placement_raises(self) -> None:
        s, t = sched(), Clock()
        warm_pod(s, F, Size(1000, 512), t())
        p = s.place(F, Size(1000, 512), t())
        s.commit(p, F, t())
        with pytest.raises(CapacityError, match="busy"):
            s.commit(p, F, t())
        with pytest.raises(CapacityError, match="gone"):
            s.commit(p, G, t())

    def test_stale_cold_placement_changes_nothing(self) -> None:
        s, t = sched(n=1, cpu=2000, mem=2048), Clock()
        victim = warm_pod(s, G, Size(2000, 1024), t())
        p = s.place(F, Size(2000, 1024), t.advance(1))
        assert p.evict == (victim.pod_id,)
        s.commit(s.place(G, Size(2000, 1024), t()), G, t())  # victim is busy again
        before = s.usage()
        with pytest.raises(CapacityError, match="busy"):
            s.commit(p, F, t())
        assert s.usage() == before and s.pods(F) == []

    def test_cold_commit_on_full_node_raises(self) -> None:
        s, t = sched(n=1, cpu=2000, mem=2048), Clock()
        p = s.place(F, Size(2000, 1024), t())
        s.commit(s.place(G, Size(1000, 1024), t()), G, t())
        with pytest.raises(CapacityError, match="stale placement"):
            s.commit(p, F, t())


class TestStartingPods:
    def test_starting_pod_is_busy_but_holds_capacity(self) -> None:
        s, t = sched(n=1, cpu=2000, mem=4096), Clock()
        pod = s.commit(s.place(F, Size(1500, 512), t()), F, t(), cold_start_ms=2000)
        assert pod.starting(t()) and not pod.starting(t() + 2)
        u = s.usage(t())
        assert (u.pods_starting, u.pods_busy, u.pods_idle) == (1, 0, 0)
        assert u.allocated_cpu_millicores == 1500
        assert s.warm_idle(F, t()) == ()
        # not offered warm, and its capacity is taken
        assert s.place(F, Size(1500, 512), t.advance(0.5)).kind is PlacementKind.QUEUE

    def test_ready_and_release_make_it_warm(self) -> None:
        s, t = sched(), Clock()
        pod = s.commit(s.place(F, Size(1000, 512), t()), F, t(), cold_start_ms=5000)
        s.ready(pod.pod_id, t.advance(1))
        assert s.pod(pod.pod_id).ready_at == t()  # type: ignore[union-attr]
        s.release(pod.pod_id, t.advance(1))
        assert s.usage(t()).pods_idle == 1
        assert s.place(F, Size(1000, 512), t()).kind is PlacementKind.WARM


class TestKeepAlive:
    def test_idle_pods_expire_after_keep_alive(self) -> None:
        s, t = sched(keep_alive_s=60), Clock()
        a = warm_pod(s, F, Size(1000, 512), t())
        b = warm_pod(s, G, Size(1000, 512), t.advance(30))
        assert s.expire(t.advance(30)) == []  # a idle for exactly 60 s: not longer
        expired = s.expire(t.advance(0.001))
        assert [p.pod_id for p in expired] == [a.pod_id]
        assert s.pod(a.pod_id) is None and s.pod(b.pod_id) is not None
        assert [p.pod_id for p in s.expire(t.advance(60))] == [b.pod_id]
        assert s.usage().pods == 0 and s.usage().allocated_memory_mib == 0

    def test_reuse_resets_the_window(self) -> None:
        s, t = sched(keep_alive_s=60), Clock()
        pod = warm_pod(s, F, Size(1000, 512), t())
        s.commit(s.place(F, Size(1000, 512), t.advance(50)), F, t())
        assert s.expire(t.advance(50)) == []  # busy pods never expire
        s.release(pod.pod_id, t())
        assert s.expire(t.advance(59)) == []
        assert len(s.expire(t.advance(2))) == 1

    def test_expired_pods_returned_oldest_first(self) -> None:
        s, t = sched(keep_alive_s=10), Clock()
        pods = [warm_pod(s, fn, Size(500, 256), t.advance(1))
                for fn in (F, G, FunctionName("h"))]
        assert [p.pod_id for p in s.expire(t.advance(100))] == [p.pod_id for p in pods]

    def test_pluggable_policy_per_function(self) -> None:
        class PerFunction:
            def __init__(self) -> None:
                self.seen: list[tuple[str, float]] = []

            def observe(self, function: FunctionName, now: float) -> None:
                self.seen.append((function, now))

            def keep_alive_s(self, function: FunctionName, now: float) -> float:
                return 5.0 if function == F else 500.0

        policy = PerFunction()
        assert isinstance(policy, KeepAlivePolicy)
        s, t = Scheduler(nodes(), keep_alive=policy), Clock()
        f = warm_pod(s, F, Size(500, 256), t())
        warm_pod(s, G, Size(500, 256), t())
        assert policy.seen == [(F, t()), (G, t())]
        assert [p.pod_id for p in s.expire(t.advance(10))] == [f.pod_id]

    def test_fixed_policy_is_the_default(self) -> None:
        s = sched(keep_alive_s=42)
        assert isinstance(s.keep_alive, FixedKeepAlive) and s.keep_alive.window_s == 42

    def test_many_reuses_do_not_grow_memory_unbounded(self) -> None:
        s, t = sched(), Clock()
        pod = warm_pod(s, F, Size(500, 256), t())
        for _ in range(5000):
            s.commit(s.place(F, Size(500, 256), t()), F, t())
            s.release(pod.pod_id, t.advance(0.01))
        assert len(s._expiry) <= 2 * 1 + 1024 + 1


class TestUsage:
    def test_allocated_and_idle_totals(self) -> None:
        s, t = sched(n=2, cpu=4000, mem=8192), Clock()
        busy = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        warm_pod(s, G, Size(2000, 1024), t())
        u = s.usage()
        assert (u.nodes, u.capacity_cpu_millicores, u.capacity_memory_mib) == (2, 8000, 16384)
        assert (u.allocated_cpu_millicores, u.allocated_memory_mib) == (3000, 1536)
        assert (u.idle_cpu_millicores, u.idle_memory_mib) == (2000, 1024)
        assert (u.pods, u.pods_busy, u.pods_idle) == (2, 1, 1)
        s.release(busy.pod_id, t())
        assert s.usage().idle_cpu_millicores == 3000

    def test_node_usage(self) -> None:
        s, t = sched(n=1, cpu=4000, mem=8192), Clock()
        s.commit(s.place(F, Size(1000, 512), t()), F, t())
        (n,) = s.nodes()
        assert n.node.node_id == NodeId("n0") and n.pods == 1
        assert (n.free_cpu_millicores, n.free_memory_mib, n.free_gpus) == (3000, 7680, 0)


class TestConfigValidation:
    @pytest.mark.parametrize("kwargs", [
        {"keep_alive_s": -1}, {"keep_alive_s": float("nan")}, {"max_pods_per_function": 0},
        {"queue_factor": -0.5}, {"resize_latency_ms": -1}, {"node_choice": "best-fit"},
    ])
    def test_bad_config_is_a_config_error(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ConfigError, match="scheduler\\."):
            SchedulerConfig(**kwargs)  # type: ignore[arg-type]

    def test_duplicate_or_empty_nodes(self) -> None:
        with pytest.raises(ConfigError, match="duplicate node id"):
            Scheduler(nodes(1) + nodes(1))
        from shabari.core import NodeCapacity

        with pytest.raises(ConfigError, match="no usable capacity"):
            Scheduler([NodeCapacity(NodeId("x"), 0, 1024)])
