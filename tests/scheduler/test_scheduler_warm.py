"""Warm placement: an idle pod of the function whose memory and GPU fit, smallest first."""

from __future__ import annotations

from sched_helpers import Clock, F, G, nodes, sched, warm_pod, warm_pods

from shabari.core import NodeCapacity, NodeId, PlacementKind, Size
from shabari.scheduler import Scheduler, SchedulerConfig


class TestWithResize:
    def test_exact_idle_pod_is_warm(self) -> None:
        s, t = sched(), Clock()
        pod = warm_pod(s, F, Size(1000, 512), t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.kind is PlacementKind.WARM
        assert p.pod_id == pod.pod_id and p.size == Size(1000, 512)
        assert not p.cold_start

    def test_cpu_resized_in_place(self) -> None:
        s, t = sched(resize_latency_ms=7), Clock()
        pod = warm_pod(s, F, Size(500, 512), t())
        p = s.place(F, Size(2000, 512), t.advance(1))
        assert p.kind is PlacementKind.RESIZE
        assert p.pod_id == pod.pod_id
        assert p.resized_from == Size(500, 512)
        assert p.size == Size(2000, 512)
        assert "7 ms" in p.reason
        committed = s.commit(p, F, t())
        assert committed.size == Size(2000, 512) and committed.busy
        node = next(n for n in s.nodes() if n.node.node_id == committed.node_id)
        assert node.cpu_millicores == 2000

    def test_resize_down_frees_node_cpu(self) -> None:
        s, t = sched(), Clock()
        warm_pod(s, F, Size(3000, 512), t())
        p = s.place(F, Size(250, 512), t.advance(1))
        assert p.kind is PlacementKind.RESIZE
        s.commit(p, F, t())
        assert s.usage().allocated_cpu_millicores == 250

    def test_more_memory_fits_less_does_not(self) -> None:
        s, t = sched(), Clock()
        _, big = warm_pods(s, F, [Size(1000, 256), Size(1000, 1024)], t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.kind is PlacementKind.WARM and p.pod_id == big.pod_id
        assert p.size == Size(1000, 1024)  # what the invocation actually gets

    def test_smallest_memory_first(self) -> None:
        s, t = sched(), Clock()
        _, small, _ = warm_pods(s, F, [Size(1000, 2048), Size(1000, 1024), Size(1000, 4096)], t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.pod_id == small.pod_id

    def test_same_memory_exact_cpu_beats_resize(self) -> None:
        s, t = sched(), Clock()
        exact, _ = warm_pods(s, F, [Size(1000, 512), Size(500, 512)], t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.kind is PlacementKind.WARM and p.pod_id == exact.pod_id

    def test_same_memory_smallest_cpu_otherwise(self) -> None:
        s, t = sched(), Clock()
        small, _ = warm_pods(s, F, [Size(500, 512), Size(3000, 512)], t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.kind is PlacementKind.RESIZE and p.pod_id == small.pod_id

    def test_gpu_must_match_exactly(self) -> None:
        s, t = sched(gpus=1), Clock()
        warm_pod(s, F, Size(1000, 512, gpu=1), t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.kind is PlacementKind.COLD
        gp = s.place(F, Size(1000, 512, gpu=1), t())
        assert gp.kind is PlacementKind.WARM

    def test_other_functions_pods_never_used(self) -> None:
        s, t = sched(), Clock()
        warm_pod(s, G, Size(1000, 512), t())
        assert s.place(F, Size(1000, 512), t.advance(1)).kind is PlacementKind.COLD

    def test_busy_pod_not_offered(self) -> None:
        s, t = sched(), Clock()
        p = s.place(F, Size(1000, 512), t())
        s.commit(p, F, t())
        assert s.place(F, Size(1000, 512), t.advance(1)).kind is PlacementKind.COLD

    def test_no_headroom_tries_next_pod(self) -> None:
        # n0 is nearly full, so its idle 500m pod cannot grow to 2000m; the one on n1 can
        s = Scheduler([NodeCapacity(NodeId("n0"), 2000, 8192),
                       NodeCapacity(NodeId("n1"), 4000, 8192)])
        t = Clock()
        a = warm_pod(s, F, Size(500, 512), t())
        assert a.node_id == "n0"  # best fit: the smaller node
        hog = s.commit(s.place(G, Size(1500, 512), t()), G, t())
        assert hog.node_id == "n0"
        b_place = s.place(F, Size(500, 512), t())  # a is idle: take it, then cold start another
        s.commit(b_place, F, t())
        b = s.commit(s.place(F, Size(500, 512), t()), F, t())
        assert b.node_id == "n1"
        s.release(a.pod_id, t.advance(1))
        s.release(b.pod_id, t.advance(1))  # b is the most recently used
        s.release(b.pod_id, t())
        p = s.place(F, Size(2000, 512), t())
        assert p.kind is PlacementKind.RESIZE and p.pod_id == b.pod_id

    def test_no_headroom_anywhere_falls_back_to_cold(self) -> None:
        s = Scheduler([NodeCapacity(NodeId("n0"), 2000, 8192),
                       NodeCapacity(NodeId("n1"), 4000, 8192)])
        t = Clock()
        a = warm_pod(s, F, Size(500, 512), t())
        s.commit(s.place(G, Size(1500, 512), t()), G, t())  # fills n0
        p = s.place(F, Size(2000, 512), t.advance(1))
        assert p.kind is PlacementKind.COLD and p.node_id == "n1"
        assert a.pod_id not in p.evict

    def test_most_recently_used_within_a_size_class(self) -> None:
        s, t = sched(), Clock()
        a = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        b = s.commit(s.place(F, Size(1000, 512), t()), F, t())
        s.release(a.pod_id, t.advance(1))
        s.release(b.pod_id, t.advance(1))
        # reusing the most recent keeps the older one aging towards its keep-alive expiry
        assert s.place(F, Size(1000, 512), t()).pod_id == b.pod_id


class TestWithoutResize:
    def test_cpu_must_also_fit(self) -> None:
        s, t = sched(supports_resize=False), Clock()
        warm_pod(s, F, Size(500, 512), t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.kind is PlacementKind.COLD

    def test_bigger_cpu_is_warm_not_resized(self) -> None:
        s, t = sched(supports_resize=False), Clock()
        pod = warm_pod(s, F, Size(2000, 512), t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.kind is PlacementKind.WARM and p.pod_id == pod.pod_id
        assert p.size == Size(2000, 512) and p.resized_from is None

    def test_smallest_memory_then_cpu(self) -> None:
        s, t = sched(supports_resize=False), Clock()
        _, best, _, _ = warm_pods(s, F, [
            Size(3000, 512), Size(2000, 512), Size(1000, 1024),
            Size(500, 512),  # too little CPU
        ], t())
        p = s.place(F, Size(1000, 512), t.advance(1))
        assert p.pod_id == best.pod_id


class TestWarmIdle:
    def test_lists_idle_sizes_one_per_pod(self) -> None:
        s, t = sched(), Clock()
        assert s.warm_idle(F, t()) == ()
        busy = s.commit(s.place(F, Size(500, 256), t()), F, t())
        warm_pods(s, F, [Size(1000, 512), Size(1000, 512)], t())
        assert sorted(s.warm_idle(F, t())) == [Size(1000, 512), Size(1000, 512)]
        s.release(busy.pod_id, t.advance(1))
        assert sorted(s.warm_idle(F, t())) == [Size(500, 256), Size(1000, 512), Size(1000, 512)]
        s.commit(s.place(F, Size(1000, 512), t()), F, t())
        assert sorted(s.warm_idle(F, t())) == [Size(500, 256), Size(1000, 512)]

    def test_agrees_with_place(self) -> None:
        # DecisionContext.would_cold_start over warm_idle predicts what place() does
        from shabari.core import SLO, DecisionContext, FunctionSpec

        spec = FunctionSpec(F, SLO(latency_ms=100), (Size(500, 256), Size(1000, 512)))
        for resize in (True, False):
            s, t = Scheduler(nodes(), SchedulerConfig(supports_resize=resize)), Clock()
            warm_pod(s, F, Size(500, 512), t())
            ctx = DecisionContext(spec, {}, t(), warm_idle=s.warm_idle(F, t()),
                                  supports_resize=resize)
            for size in (Size(250, 256), Size(500, 512), Size(1000, 512), Size(500, 1024)):
                cold = s.place(F, size, t()).kind is PlacementKind.COLD
                assert cold == ctx.would_cold_start(size), (resize, size)
