"""Three (or more) real `shabari gateway` processes electing their learner on the emulator.

Each replica is the real CLI (`--lease`, `--kube-api` pointing at the Lease-serving emulator
over HTTP), with the local backend running the bundled no-op function in real worker
processes. Helpers send traffic round-robin and read each replica's `/functions` and
`/replica/state`. (A uniquely named module; conftest.py only registers fixtures.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from shabari.core import spec_to_mapping
from shabari.gateway.process import GatewayProcess
from shabari.runtime.catalog import bundled_functions

#: the stated bounds these tests check (docs/gateway.md, "Replicas")
LEASE_DURATION_S = 3.0
SHIP_INTERVAL_S = 0.1
SYNC_INTERVAL_S = 0.3


def write_config(path: Path) -> Path:
    noop = bundled_functions()["noop"]
    path.write_text(yaml.safe_dump({"functions": {"noop": {
        **spec_to_mapping(noop.spec), "directory": str(noop.directory)}}}))
    return path


class Replicas:
    def __init__(self, procs: Sequence[GatewayProcess], session: aiohttp.ClientSession):
        self.procs = list(procs)
        self.session = session
        self.alive = list(procs)
        self._rr = itertools.count()

    async def get(self, proc: GatewayProcess, path: str) -> Any:
        async with self.session.get(f"{proc.base}{path}") as r:
            return await r.json()

    async def states(self) -> list[dict[str, Any]]:
        return [await self.get(p, "/replica/state") for p in self.alive]

    async def learners(self) -> list[GatewayProcess]:
        out = []
        for p in self.alive:
            if (await self.get(p, "/replica/state"))["role"] == "learner":
                out.append(p)
        return out

    async def outcomes(self, proc: GatewayProcess, function: str = "noop") -> int:
        for f in await self.get(proc, "/functions"):
            if f["name"] == function:
                return int(f["learning"]["outcomes"])
        raise KeyError(function)

    async def invoke_round_robin(self, n: int, concurrency: int = 6) -> list[int]:
        """`n` invocations, replica after replica; returns the HTTP statuses."""
        statuses: list[int] = []
        jobs = iter(range(n))

        async def client() -> None:
            for i in jobs:
                proc = self.alive[next(self._rr) % len(self.alive)]
                body = f'{{"id": {i}, "payload": "{"x" * (i % 97)}"}}'.encode()
                async with self.session.post(f"{proc.base}/invoke/noop", data=body,
                                             headers={"Content-Type": "application/json"}
                                             ) as r:
                    await r.read()
                    statuses.append(r.status)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return statuses

    def kill(self, proc: GatewayProcess) -> None:
        """SIGKILL: no drain, no Lease release, no last shipment (a node lost)."""
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(10)
        self.alive.remove(proc)


async def until(check: Callable[[], Any], timeout: float, what: str,
                interval: float = 0.05) -> float:
    """Await `check()` (sync or async) until truthy; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def replicas(api_url: str, tmp: Path, n: int = 3) -> AsyncIterator[Replicas]:
    cfg = write_config(tmp / "functions.yaml")
    procs = [GatewayProcess(
        ["--config", str(cfg), "--policy", "shabari", "--seed", str(i + 1),
         "--state-dir", str(tmp / f"state-{i}"),
         "--lease", "shabari/shabari-learner", "--kube-api", api_url,
         "--replica-id", f"replica-{i}", "--lease-duration", str(LEASE_DURATION_S),
         "--outcome-ship-interval", str(SHIP_INTERVAL_S),
         "--model-sync-interval", str(SYNC_INTERVAL_S), "--max-concurrent", "16"],
        log_path=tmp / f"replica-{i}.log") for i in range(n)]
    started: list[GatewayProcess] = []
    try:
        for p in procs:  # blocking start off the loop: the emulator serves on this loop
            await asyncio.to_thread(p.start)
            started.append(p)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            yield Replicas(procs, session)
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop, 30) for p in started))
