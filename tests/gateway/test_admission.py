"""Admission control: bounded running set, bounded FIFO queue, 429/503 with Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from shabari.core import AdmissionError
from shabari.gateway.admission import AdmissionController


async def _hold(adm: AdmissionController, gate: asyncio.Event, done: list[int], i: int) -> None:
    async with adm.slot():
        await gate.wait()
        done.append(i)


class TestBounds:
    async def test_queue_full_is_429_with_retry_after(self) -> None:
        adm = AdmissionController(max_concurrent=2, max_queue=1, queue_timeout_s=5)
        gate = asyncio.Event()
        done: list[int] = []
        tasks = [asyncio.create_task(_hold(adm, gate, done, i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert adm.running == 2 and adm.waiting == 1
        with pytest.raises(AdmissionError) as info:
            async with adm.slot():
                pass
        assert info.value.http_status == 429 and info.value.retry_after_s >= 1
        gate.set()
        await asyncio.gather(*tasks)
        assert sorted(done) == [0, 1, 2]
        assert adm.shed["queue_full"] == 1
        assert adm.running == 0 and adm.waiting == 0

    async def test_queue_timeout_is_503(self) -> None:
        adm = AdmissionController(max_concurrent=1, max_queue=4, queue_timeout_s=0.05)
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(adm, gate, [], 0))
        await asyncio.sleep(0.01)
        with pytest.raises(AdmissionError) as info:
            async with adm.slot():
                pass
        assert info.value.http_status == 503
        assert adm.waiting == 0
        gate.set()
        await holder
        assert adm.running == 0

    async def test_fifo_handover(self) -> None:
        adm = AdmissionController(max_concurrent=1, max_queue=10, queue_timeout_s=5)
        order: list[int] = []

        async def one(i: int) -> None:
            async with adm.slot():
                order.append(i)
                await asyncio.sleep(0)

        await asyncio.gather(*(one(i) for i in range(6)))
        assert order == list(range(6))

    async def test_cancelled_waiter_frees_its_place(self) -> None:
        adm = AdmissionController(max_concurrent=1, max_queue=1, queue_timeout_s=5)
        gate = asyncio.Event()
        holder = asyncio.create_task(_hold(adm, gate, [], 0))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(_hold(adm, gate, [], 1))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.sleep(0.01)
        assert adm.waiting == 0
        gate.set()
        await holder
        assert adm.running == 0


class TestDraining:
    async def test_draining_refuses_new_and_waits_for_running(self) -> None:
        adm = AdmissionController(max_concurrent=2, max_queue=2, queue_timeout_s=5)
        gate = asyncio.Event()
        done: list[int] = []
        holder = asyncio.create_task(_hold(adm, gate, done, 0))
        await asyncio.sleep(0.01)
        adm.start_draining()
        with pytest.raises(AdmissionError) as info:
            async with adm.slot():
                pass
        assert info.value.http_status == 503
        assert not await adm.drained(0.02)
        gate.set()
        assert await adm.drained(1.0)
        await holder
        assert done == [0]

    def test_rejects_nonsense_limits(self) -> None:
        with pytest.raises(ValueError):
            AdmissionController(0, 1, 1.0)
