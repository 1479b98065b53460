"""The response path stays short: deferred work runs after it, in order, and readers settle it;
invocations queued behind a busy pod are woken one per released pod, not all at once."""

from __future__ import annotations

import asyncio

from shabari.backends.base import Backend
from shabari.core import FunctionName, NodeCapacity, NodeId, Size
from shabari.gateway.deferred import AfterResponse
from shabari.gateway.metrics import GatewayMetrics, PoolLedger
from shabari.gateway.pool import PodPool
from shabari.scheduler import Scheduler, SchedulerConfig

F = FunctionName("f")


class TestAfterResponse:
    async def test_runs_later_in_arrival_order_in_one_batch(self) -> None:
        after = AfterResponse(window_s=0.01)
        seen: list[int] = []
        for i in range(5):
            after.add(lambda i=i: seen.append(i))  # type: ignore[misc]
        assert seen == [] and after.pending == 5
        await asyncio.sleep(0.05)
        assert seen == [0, 1, 2, 3, 4] and after.pending == 0 and after.done == 5

    async def test_drain_applies_everything_now(self) -> None:
        after = AfterResponse(window_s=60.0)
        seen: list[str] = []
        after.add(lambda: seen.append("learn"))
        after.add(lambda: after.add(lambda: seen.append("added while draining")))
        assert after.drain() == 3
        assert seen == ["learn", "added while draining"]

    async def test_a_failing_closure_does_not_lose_the_rest(self) -> None:
        after = AfterResponse(window_s=60.0)
        seen: list[int] = []

        def bad() -> None:
            raise RuntimeError("boom")

        after.add(bad)
        after.add(lambda: seen.append(1))
        after.drain()
        assert seen == [1] and after.failed == 1

    def test_without_a_loop_it_runs_at_once(self) -> None:
        after = AfterResponse()
        seen: list[int] = []
        after.add(lambda: seen.append(1))
        assert seen == [1]


def _pool() -> tuple[PodPool, Scheduler]:
    sched = Scheduler((NodeCapacity(NodeId("n"), 8000, 8192),), SchedulerConfig())
    pool = PodPool(PoolLedger(GatewayMetrics()), Backend.__new__(Backend))
    pool.attach(sched)
    return pool, sched


class TestWaitersBehindABusyPod:
    async def test_one_release_wakes_one_waiter_first_come_first_served(self) -> None:
        pool, sched = _pool()
        pod = sched.commit(sched.place(F, Size(1000, 512), 0.0), F, 0.0)
        woken: list[int] = []

        async def wait(i: int) -> None:
            await pool.wait_for_capacity(object(), 5.0, behind=F)
            woken.append(i)

        tasks = [asyncio.create_task(wait(i)) for i in range(4)]
        await asyncio.sleep(0.01)
        assert pool.queued_behind(F) == 4
        sched.release(pod.pod_id, 1.0)  # the scheduler announces it; the pool wakes
        await asyncio.sleep(0.01)
        assert woken == [0] and pool.queued_behind(F) == 3
        pool.capacity_changed()  # a pod stopped or failed: everyone places again
        await asyncio.gather(*tasks)
        assert sorted(woken) == [0, 1, 2, 3] and pool.queued_behind(F) == 0

    async def test_timeout_and_cancellation_leave_the_queue(self) -> None:
        pool, _ = _pool()
        await pool.wait_for_capacity(object(), 0.01, behind=F)  # times out, returns
        assert pool.queued_behind(F) == 0
        task = asyncio.create_task(pool.wait_for_capacity(object(), 5.0, behind=F))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert pool.queued_behind(F) == 0

    async def test_waiters_for_room_wake_on_any_release(self) -> None:
        pool, sched = _pool()
        pod = sched.commit(sched.place(F, Size(1000, 512), 0.0), F, 0.0)
        room = asyncio.create_task(pool.wait_for_capacity(object(), 5.0))
        await asyncio.sleep(0.01)
        sched.release(pod.pod_id, 1.0)  # the scheduler announces it; the pool wakes
        await asyncio.wait_for(room, 1.0)

    async def test_a_release_wakes_the_first_waiter_the_pod_can_take(self) -> None:
        pool, sched = _pool()
        small = sched.commit(sched.place(F, Size(1000, 256), 0.0), F, 0.0)
        woken: list[str] = []

        async def wait(name: str, size: Size) -> None:
            await pool.wait_for_capacity(object(), 5.0, behind=F, size=size)
            woken.append(name)

        big = asyncio.create_task(wait("needs 1 GiB", Size(1000, 1024)))
        await asyncio.sleep(0.01)
        fits = asyncio.create_task(wait("needs 256 MiB", Size(2000, 256)))
        await asyncio.sleep(0.01)
        sched.release(small.pod_id, 1.0)  # a 256 MiB pod: no use to the first waiter
        await asyncio.wait_for(fits, 1.0)
        assert woken == ["needs 256 MiB"] and pool.queued_behind(F) == 1
        big.cancel()
        await asyncio.gather(big, return_exceptions=True)
