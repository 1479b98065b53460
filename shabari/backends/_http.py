"""HTTP calls to a worker in a pod, and the mapping of their replies onto the error contract.

The function images run the worker runtime in HTTP mode (`python -m shabari.runtime.worker
--http PORT`, see shabari/runtime/worker.py): `POST /invoke` runs the function; the request
carries the pod's current allocation (`X-Shabari-Cpu-Millicores`, `X-Shabari-Memory-Mib`, so
the worker re-sizes its thread pools after an in-place resize) and the reply carries what the
worker measured (`X-Shabari-Status`, `-Wall-Ms`, `-Cpu-Seconds`, `-Peak-Memory-Mib`). The
kubernetes backend calls the pod IP directly; the knative backend calls the same worker
through Knative's ingress and queue-proxy, which pass these headers through. One place turns a
reply into an `InvocationResult` or the matching exception so both backends report alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

import aiohttp

from shabari.backends.base import InvocationResult
from shabari.core.errors import (
    FunctionFailedError,
    InvocationTimeoutError,
    OutOfMemoryError,
)
from shabari.core.types import Outcome, OutcomeStatus

__all__ = [
    "WorkerConnectionError",
    "WorkerReply",
    "post_to_worker",
    "result_from_reply",
    "timeout_error",
]

CPU_HEADER = "X-Shabari-Cpu-Millicores"
MEMORY_HEADER = "X-Shabari-Memory-Mib"


class WorkerConnectionError(Exception):
    """The connection to the worker broke (refused, reset, closed mid-reply).

    Internal: the backend decides what it means (the pod was deleted, or the worker crashed)
    and raises `FunctionFailedError` with that detail.
    """

    def __init__(self, reason: str, latency_ms: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.latency_ms = latency_ms


@dataclass(frozen=True, slots=True)
class WorkerReply:
    """One HTTP reply of a worker, with the measurements it reported in its headers."""

    http_status: int
    body: bytes
    content_type: str
    #: ok | error | oom, from X-Shabari-Status; "" when the reply did not come from a worker
    status: str
    latency_ms: float
    wall_ms: float | None
    cpu_seconds: float
    peak_memory_mib: float
    headers: Mapping[str, str] = field(default_factory=dict)


def _float(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


async def post_to_worker(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    content_type: str | None,
    timeout_s: float,
    *,
    cpu_millicores: int,
    memory_mib: int,
    extra_headers: Mapping[str, str] | None = None,
) -> WorkerReply:
    """POST one invocation; raise `InvocationTimeoutError` or `WorkerConnectionError`."""
    headers = {
        "Content-Type": content_type or "application/octet-stream",
        CPU_HEADER: str(cpu_millicores),
        MEMORY_HEADER: str(memory_mib),
        **(extra_headers or {}),
    }
    t0 = time.perf_counter()
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            raw = await resp.read()
            reply_headers = {k: v for k, v in resp.headers.items()}
            http_status = resp.status
    except TimeoutError:
        raise timeout_error(timeout_s, (time.perf_counter() - t0) * 1000.0) from None
    except (aiohttp.ClientError, OSError) as exc:
        latency_ms = (time.perf_counter() - t0) * 1000.0
        raise WorkerConnectionError(str(exc) or type(exc).__name__, latency_ms) from None
    latency_ms = (time.perf_counter() - t0) * 1000.0
    return WorkerReply(
        http_status=http_status,
        body=raw,
        content_type=reply_headers.get("Content-Type", "application/octet-stream"),
        status=reply_headers.get("X-Shabari-Status", ""),
        latency_ms=latency_ms,
        wall_ms=_float(reply_headers, "X-Shabari-Wall-Ms"),
        cpu_seconds=_float(reply_headers, "X-Shabari-Cpu-Seconds") or 0.0,
        peak_memory_mib=_float(reply_headers, "X-Shabari-Peak-Memory-Mib") or 0.0,
        headers=reply_headers,
    )


def timeout_error(timeout_s: float, latency_ms: float, where: str = "") -> InvocationTimeoutError:
    err = InvocationTimeoutError(
        "invocation timed out", detail=f"no answer within {timeout_s:g} s{where}"
    )
    err.outcome = Outcome(
        latency_ms=latency_ms, status=OutcomeStatus.TIMEOUT, detail=err.detail
    )
    return err


def result_from_reply(
    reply: WorkerReply, *, cold_start: bool, cold_start_ms: float, where: str
) -> InvocationResult:
    """Turn a worker reply into a result (ok / function error) or raise OOM / failure.

    `where` names the pod or variant for error details.
    """
    latency_ms = reply.latency_ms + (cold_start_ms if cold_start else 0.0)
    if reply.status == "oom":
        err = OutOfMemoryError(
            "function ran out of memory", detail=f"{where}: {_text(reply.body)}"
        )
        err.outcome = Outcome(
            latency_ms=latency_ms, status=OutcomeStatus.OOM, cold_start=cold_start,
            cold_start_ms=cold_start_ms, cpu_seconds=reply.cpu_seconds,
            peak_memory_mib=reply.peak_memory_mib, detail=err.detail,
        )
        raise err
    if reply.status in ("ok", "error"):
        status = OutcomeStatus.OK if reply.status == "ok" else OutcomeStatus.ERROR
        return InvocationResult(
            body=reply.body,
            content_type=reply.content_type,
            outcome=Outcome(
                latency_ms=latency_ms, status=status, cold_start=cold_start,
                cold_start_ms=cold_start_ms, cpu_seconds=reply.cpu_seconds,
                peak_memory_mib=reply.peak_memory_mib,
                detail="" if status is OutcomeStatus.OK else _text(reply.body),
            ),
        )
    # Not a worker reply: a proxy, ingress or platform answered (502/503 from an ingress,
    # 404 for an unknown tag, an OOM-killed container reset by the queue-proxy, ...).
    raise_failed(
        f"{where} answered HTTP {reply.http_status} without a worker status",
        _text(reply.body), latency_ms, cold_start=cold_start, cold_start_ms=cold_start_ms,
    )


def raise_failed(
    message: str, detail: str, latency_ms: float, *, cold_start: bool = False,
    cold_start_ms: float = 0.0, status: OutcomeStatus = OutcomeStatus.CRASH,
) -> NoReturn:
    err = FunctionFailedError(message, detail=detail)
    err.outcome = Outcome(
        latency_ms=latency_ms, status=status, cold_start=cold_start,
        cold_start_ms=cold_start_ms, detail=f"{message}: {detail}" if detail else message,
    )
    raise err


def _text(body: bytes, limit: int = 500) -> str:
    return body[:limit].decode(errors="replace").strip()
