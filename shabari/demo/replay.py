"""Drive running gateways over real HTTP, recording every reply as the client saw it.

The client is what a user of the platform sees: latency is measured around the HTTP request,
the sizing comes from the response headers, failures are the non-200 answers. `closed_loop`
sends a list of jobs to one gateway (training, calibration); `interleaved` sends every job to
every policy's gateway back to back, one request at a time, in the orders of a Williams design
(`balanced_orders`), so no policy is favoured by what ran just before it (the demo's replay:
docs/demo.md says why not open-loop arrivals on a two-core machine).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from shabari.runtime.catalog import GeneratedInput


@dataclass(frozen=True, slots=True)
class Sample:
    """One answered request as the client saw it."""

    index: int
    function: str
    input_label: str
    input_bytes: int
    sent_s: float  # since the start of the phase
    status: int
    latency_ms: float  # around the HTTP request
    slo_ms: float | None
    cpu_millicores: int | None
    memory_mib: int | None
    cold_start: bool
    decision_id: str | None
    retried: bool
    error: str = ""

    @property
    def violated(self) -> bool:
        return self.status != 200 or self.slo_ms is None or self.latency_ms > self.slo_ms


def _int(h: Mapping[str, str], key: str) -> int | None:
    v = h.get(key)
    try:
        return None if v is None else int(v)
    except ValueError:
        return None


def _float(h: Mapping[str, str], key: str) -> float | None:
    v = h.get(key)
    try:
        return None if v is None else float(v)
    except ValueError:
        return None


class Progress:
    """A text progress bar on stderr: redrawn in place on a terminal, every 25% otherwise."""

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, max(total, 1), enabled
        self.done = 0
        self.failed = 0
        self._last = 0.0
        self._tty = sys.stderr.isatty()
        self._quarter = 0

    def step(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        if not self.enabled:
            return
        now = time.monotonic()
        end = self.done >= self.total
        if self._tty:
            if now - self._last < 0.2 and not end:
                return
        else:
            quarter = (4 * self.done) // self.total
            if quarter == self._quarter and not end:
                return
            self._quarter = quarter
        self._last = now
        width = 30
        filled = int(width * min(self.done, self.total) / self.total)
        bar = f"  {self.label:<28} [{'#' * filled}{'.' * (width - filled)}] " \
              f"{self.done}/{self.total}" + (f" ({self.failed} failed)" if self.failed else "")
        sys.stderr.write(("\r" + bar + ("\n" if end else "")) if self._tty else bar + "\n")
        sys.stderr.flush()


async def _send(
    session: aiohttp.ClientSession, base: str, index: int, function: str, inp: GeneratedInput,
    t0: float,
) -> Sample:
    sent = time.monotonic()
    try:
        async with session.post(f"{base}/invoke/{function}", data=inp.body,
                                headers={"Content-Type": inp.content_type}) as resp:
            payload = await resp.read()
            latency_ms = (time.monotonic() - sent) * 1000.0
            h = resp.headers
            err = "" if resp.status == 200 else payload[:300].decode("utf-8", "replace")
            return Sample(
                index, function, inp.label, len(inp.body), sent - t0, resp.status, latency_ms,
                _float(h, "X-Shabari-Slo-Ms"), _int(h, "X-Shabari-Cpu-Millicores"),
                _int(h, "X-Shabari-Memory-Mib"), h.get("X-Shabari-Cold-Start") == "true",
                h.get("X-Shabari-Decision-Id"), h.get("X-Shabari-Retried") == "oom", err)
    except (TimeoutError, aiohttp.ClientError) as exc:
        latency_ms = (time.monotonic() - sent) * 1000.0
        return Sample(index, function, inp.label, len(inp.body), sent - t0, 0, latency_ms, None,
                      None, None, False, None, False, f"{type(exc).__name__}: {exc}")


async def closed_loop(
    base: str,
    jobs: Sequence[tuple[str, GeneratedInput]],
    *,
    concurrency: int,
    progress: Progress | None = None,
) -> list[Sample]:
    """Send `jobs` with `concurrency` requests in flight (warm-up / training)."""
    samples: list[Sample] = []
    queue: asyncio.Queue[tuple[int, str, GeneratedInput]] = asyncio.Queue()
    for i, (fn, inp) in enumerate(jobs):
        queue.put_nowait((i, fn, inp))
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        t0 = time.monotonic()

        async def worker() -> None:
            while True:
                try:
                    i, fn, inp = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                sample = await _send(s, base, i, fn, inp, t0)
                samples.append(sample)
                if progress is not None:
                    progress.step(sample.status != 200)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    samples.sort(key=lambda x: x.index)
    return samples


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of `n` policies in which each comes first equally often and follows each other
    equally often: a Williams design (a Latin square balanced for first-order carryover;
    Williams 1949), `n` orders for even `n`, `2n` (the square and its mirror) for odd `n`.

    Why it matters here: an invocation runs measurably faster right after the same function ran
    on another pod (shared library code and data still in the caches; measured in docs/demo.md),
    so a plain rotation, in which policy B always follows policy A, hands B that advantage
    in two of every three jobs.
    """
    if n <= 1:
        return [list(range(n))]
    first: list[int] = []
    lo, hi = 0, n - 1
    for k in range(n):  # 0, 1, n-1, 2, n-2, ...
        if k % 2 == 0:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    square = [[(v + r) % n for v in first] for r in range(n)]
    return square if n % 2 == 0 else square + [row[::-1] for row in square]


async def interleaved(
    bases: Mapping[str, str],
    jobs: Sequence[tuple[str, GeneratedInput]],
    *,
    progress: Progress | None = None,
) -> dict[str, list[Sample]]:
    """Send every job to every gateway, one request at a time, policies in balanced orders.

    Job i goes to all policies back to back in order `i` of `balanced_orders` (cycled), so
    every policy sees the same inputs in the same order under the same background load, comes
    first and follows every other policy equally often, and no two of the demo's invocations
    ever share the cores.
    """
    names = list(bases)
    orders = [[names[k] for k in row] for row in balanced_orders(len(names))]
    out: dict[str, list[Sample]] = {n: [] for n in names}
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        t0 = time.monotonic()
        for i, (fn, inp) in enumerate(jobs):
            for name in orders[i % len(orders)]:
                sample = await _send(s, bases[name], i, fn, inp, t0)
                out[name].append(sample)
                if progress is not None:
                    progress.step(sample.status != 200)
    return out
