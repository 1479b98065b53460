"""The embedded default platform: pods are worker processes on this machine under real limits.

Each pod is one `shabari.runtime.worker` process serving one bundled function over a socketpair
(frames of `shabari.runtime.protocol`). Its CPU is capped by a CFS quota and its memory by a
cgroup limit (`shabari.backends.cgroups`: v2 or v1, detected at run time; affinity + RLIMIT_AS
with one warning when neither is writable). CPU is resized in place by rewriting the quota just
before an invocation, and the invocation request tells the worker its new allocation so it
re-sizes its thread pools.

Failure semantics (what the gateway and the agent see):
- the function raised -> `InvocationResult` with status ERROR and the exception text as body;
  the pod stays warm;
- the worker was OOM-killed (it died by SIGKILL and the cgroup's `oom_kill` count rose, or usage
  hit the limit) -> `OutOfMemoryError`; any other death -> `FunctionFailedError` with the exit
  status and the tail of the worker's stderr; in both cases the pod is gone (its cgroup removed)
  and `exc.outcome` holds what was measured;
- no answer within `timeout_s` -> the worker is killed, `InvocationTimeoutError`; the deadline
  covers sending the input too (a frozen worker stops reading: a large body would otherwise
  block the write forever);
- the worker had died while idle (killed, crashed between invocations) -> `PodLostError`
  before anything is sent: nothing ran, the gateway retries on a fresh pod and learns nothing.
A dead pod is removed from the backend; the next `start_pod` starts a fresh one.

Pod logs live in a `shabari-local-<pid>-*` temp dir; `start()` removes those of dead gateways
(a SIGKILL skips `close()`) as it reaps their cgroup trees.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shabari.backends.base import InvocationResult, PodHandle
from shabari.backends.cgroups import (
    CgroupManager,
    CgroupMode,
    FallbackLimits,
    PodCgroup,
    owner_gone,
)
from shabari.core import (
    BackendError,
    BackendUnavailableError,
    CapacityError,
    FunctionFailedError,
    FunctionSpec,
    InvocationTimeoutError,
    NodeCapacity,
    NodeId,
    Outcome,
    OutcomeStatus,
    OutOfMemoryError,
    PodId,
    PodLostError,
    Size,
    UnknownFunctionError,
)
from shabari.runtime import protocol
from shabari.runtime.catalog import BundledFunction, bundled_functions

__all__ = ["LocalBackend", "machine_capacity", "machine_gpus"]

log = logging.getLogger(__name__)

#: a worker that died with usage at least this fraction of its limit is counted as OOM
OOM_USAGE_FRACTION = 0.95
_fallback_warned = False


def machine_capacity() -> tuple[int, int]:
    """(CPU millicores, memory MiB) of this machine as this process may use it."""
    cpus = len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    mem_mib = 1024
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_mib = int(line.split()[1]) // 1024
                break
    return cpus * 1000, mem_mib


def machine_gpus() -> int:
    """NVIDIA GPUs on this machine (device nodes), 0 when none."""
    return len(glob.glob("/dev/nvidia[0-9]*"))


@dataclass
class _Pod:
    handle: PodHandle
    function: BundledFunction
    proc: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    cgroup: PodCgroup | None
    log_path: Path
    cpu_millicores: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    invocations: int = 0
    gpu_ids: tuple[int, ...] = ()
    #: the cgroup's (OOM kills, limit hits) after the last invocation (nothing runs in an
    #: idle pod, so they are the counts before the next one: one read per invocation, not two)
    memory_counters: tuple[int, int] | None = None
    #: reclaimable page cache (MiB) and when it was read: memory.stat is the costliest
    #: cgroupfs read and a warm pod's inactive page cache barely moves, so it is re-read at
    #: most every `INACTIVE_FILE_TTL_S`
    inactive_file_mib: float = 0.0
    inactive_file_at: float = float("-inf")


class LocalBackend:
    """Backend (shabari.backends.base) whose pods are worker processes under cgroup limits."""

    name = "local"
    supports_resize = True

    def __init__(
        self,
        functions: Mapping[str, BundledFunction] | None = None,
        *,
        cpu_millicores: int | None = None,
        memory_mib: int | None = None,
        cgroup_root: str | None = None,
        node_id: str = "local",
        start_timeout_s: float = 120.0,
        python: str | None = None,
        use_cgroups: bool = True,
        cpu_shares: int | None = None,
        gpus: int | None = None,
    ) -> None:
        """`cpu_shares` weighs all of this backend's pods together against other processes on
        the machine (cgroup v1 shares, 1024 = one ordinary process; see CgroupManager).
        `gpus` defaults to the NVIDIA devices present; a pod of a size with `gpu=k` gets k of
        them, exclusively, through CUDA_VISIBLE_DEVICES (pods without a GPU see none)."""
        machine_cpu, machine_mem = machine_capacity()
        self._functions: dict[str, BundledFunction] | None = (
            dict(functions) if functions is not None else None)
        n_gpus = machine_gpus() if gpus is None else gpus
        self._capacity = NodeCapacity(NodeId(node_id), cpu_millicores or machine_cpu,
                                      memory_mib or machine_mem, n_gpus)
        self._free_gpus: list[int] = list(range(n_gpus))
        self._cgroup_root = cgroup_root
        self._use_cgroups = use_cgroups
        self._cpu_shares = cpu_shares
        self._start_timeout_s = start_timeout_s
        self._python = python or sys.executable
        self._pods: dict[PodId, _Pod] = {}
        self._cgroups: CgroupManager | None = None
        self._log_dir: Path | None = None
        self._slot = 0
        self._started = False
        self.limits_mode = "unstarted"

    # ---------------------------------------------------------------- lifecycle
    @property
    def functions(self) -> dict[str, BundledFunction]:
        if self._functions is None:
            self._functions = bundled_functions()
        return self._functions

    async def start(self) -> None:
        if self._started:
            return
        global _fallback_warned
        manager: CgroupManager | None = None
        if self._use_cgroups:
            manager = await asyncio.to_thread(
                lambda: CgroupManager(self._cgroup_root, cpu_shares=self._cpu_shares))
        if manager is not None and manager.mode is not CgroupMode.NONE:
            removed = await asyncio.to_thread(manager.reap_stale)
            if removed:
                log.info("removed %d cgroup tree(s) left by crashed backends: %s",
                         len(removed), ", ".join(map(str, removed)))
            self._cgroups = manager
            self.limits_mode = f"cgroup-{manager.mode.value}"
        else:
            self.limits_mode = "fallback"
            if not _fallback_warned:
                _fallback_warned = True
                why = manager.layout.reason if manager is not None else "disabled"
                log.warning(
                    "local backend: no writable cgroup hierarchy (%s); falling back to CPU "
                    "affinity + RLIMIT_AS. CPU limits are whole cores and memory limits are "
                    "approximate; run as root on a cgroup v1/v2 host for real limits.", why)
        stale = await asyncio.to_thread(reap_stale_log_dirs)
        if stale:
            log.info("removed %d pod log dir(s) left by crashed backends", len(stale))
        self._log_dir = Path(tempfile.mkdtemp(prefix=f"{LOG_DIR_PREFIX}{os.getpid()}-"))
        self._started = True

    async def close(self) -> None:
        for pod_id in list(self._pods):
            await self.stop_pod(pod_id)
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.close)
            self._cgroups = None
        if self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
        self._started = False

    async def __aenter__(self) -> LocalBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def nodes(self) -> tuple[NodeCapacity, ...]:
        return (self._capacity,)

    async def prepare(self, spec: FunctionSpec) -> None:
        self._function(spec.name)

    # ---------------------------------------------------------------- introspection
    def pod_ids(self) -> tuple[PodId, ...]:
        return tuple(self._pods)

    def pod_pid(self, pod_id: PodId) -> int:
        return self._pod(pod_id).proc.pid

    def pod_cpu_limit_millicores(self, pod_id: PodId) -> int | None:
        """The CPU limit the kernel enforces now (None without cgroups)."""
        cg = self._pod(pod_id).cgroup
        return cg.cpu_limit_millicores() if cg is not None else None

    def pod_gpu_ids(self, pod_id: PodId) -> tuple[int, ...]:
        return self._pod(pod_id).gpu_ids

    def pod_cgroup_dirs(self, pod_id: PodId) -> tuple[Path, ...]:
        cg = self._pod(pod_id).cgroup
        return cg.dirs if cg is not None else ()

    def cgroup_instance_dirs(self) -> tuple[Path, ...]:
        return self._cgroups.instance_dirs() if self._cgroups is not None else ()

    # ---------------------------------------------------------------- pods
    def _function(self, name: str) -> BundledFunction:
        fn = self.functions.get(name)
        if fn is None:
            raise UnknownFunctionError(
                f"unknown function {name!r}",
                detail=f"bundled functions: {', '.join(sorted(self.functions)) or 'none'}")
        return fn

    def cgroup_of(self, pod_id: PodId) -> PodCgroup | None:
        """The cgroup of a running pod (None without cgroups): for diagnostics and benches
        that read what the kernel counted (throttling, memory), never for changing it."""
        return self._pod(pod_id).cgroup

    def _pod(self, pod_id: PodId) -> _Pod:
        pod = self._pods.get(pod_id)
        if pod is None:
            raise BackendError(f"no pod {pod_id!r} on the local backend",
                               detail="it was stopped or its worker died")
        return pod

    async def start_pod(self, pod_id: PodId, spec: FunctionSpec, size: Size,
                        node_id: NodeId) -> PodHandle:
        if not self._started:
            raise BackendUnavailableError("local backend is not started (call start())")
        if pod_id in self._pods:
            raise BackendError(f"pod {pod_id!r} already exists")
        if node_id != self._capacity.node_id:
            raise CapacityError(f"unknown node {node_id!r}",
                                detail=f"the local backend has one node, {self._capacity.node_id!r}")
        if size.gpu > len(self._free_gpus):
            raise CapacityError(
                f"size {size} needs {size.gpu} GPU(s)",
                detail=f"{len(self._free_gpus)} of the local node's {self._capacity.gpus} "
                       "GPU(s) are free")
        if size.cpu_millicores > self._capacity.cpu_millicores or \
                size.memory_mib > self._capacity.memory_mib:
            raise CapacityError(f"size {size} exceeds the node ({self._capacity.cpu_millicores}m, "
                                f"{self._capacity.memory_mib}Mi)")
        fn = self._function(spec.name)
        gpu_ids = tuple(self._free_gpus[:size.gpu])
        del self._free_gpus[:size.gpu]
        try:
            return await self._spawn(pod_id, spec, fn, size, node_id, gpu_ids)
        except BaseException:
            self._free_gpus.extend(gpu_ids)
            raise

    async def _spawn(self, pod_id: PodId, spec: FunctionSpec, fn: BundledFunction, size: Size,
                     node_id: NodeId, gpu_ids: tuple[int, ...]) -> PodHandle:
        assert self._log_dir is not None
        cgroup: PodCgroup | None = None
        extra: list[str] = []
        if self._cgroups is not None:
            cgroup = await asyncio.to_thread(self._cgroups.create, str(pod_id),
                                             size.cpu_millicores, size.memory_mib)
            for d in cgroup.dirs:
                extra += ["--join-cgroup", str(d)]
        else:
            limits = FallbackLimits.for_size(size.cpu_millicores, size.memory_mib, self._slot)
            self._slot += 1
            extra += limits.worker_args()
        parent_sock, child_sock = socket.socketpair()
        log_path = self._log_dir / f"{pod_id}.log"
        env = dict(os.environ, SHABARI_SPAWN_TIME=repr(time.time()), PYTHONUNBUFFERED="1",
                   CUDA_VISIBLE_DEVICES=",".join(map(str, gpu_ids)))
        t0 = time.perf_counter()
        try:
            with open(log_path, "ab") as log_fh:
                proc = await asyncio.create_subprocess_exec(
                    self._python, "-m", "shabari.runtime.worker",
                    "--function-dir", str(fn.directory),
                    "--cpu-millicores", str(size.cpu_millicores),
                    "--memory-mib", str(size.memory_mib),
                    "--fd", str(child_sock.fileno()), *extra,
                    stdin=asyncio.subprocess.DEVNULL, stdout=log_fh, stderr=log_fh,
                    pass_fds=(child_sock.fileno(),), env=env, start_new_session=True)
        except OSError as exc:
            parent_sock.close()
            child_sock.close()
            if self._cgroups is not None:
                await asyncio.to_thread(self._cgroups.release, str(pod_id))
            raise BackendUnavailableError(f"cannot start a worker for {spec.name}",
                                          detail=str(exc)) from None
        child_sock.close()
        reader, writer = await asyncio.open_connection(sock=parent_sock)
        try:
            meta, _ = await asyncio.wait_for(protocol.read_frame(reader), self._start_timeout_s)
        except (EOFError, TimeoutError, protocol.ProtocolError) as exc:
            status, detail = await self._diagnose_death(proc, cgroup, log_path, 0,
                                                        timed_out=isinstance(exc, TimeoutError))
            writer.close()
            if self._cgroups is not None:
                await asyncio.to_thread(self._cgroups.release, str(pod_id))
            outcome = Outcome(latency_ms=0.0, status=status, cold_start=True,
                              cold_start_ms=(time.perf_counter() - t0) * 1000.0, detail=detail)
            raise self._error(status, f"pod {pod_id} of {spec.name} failed to start at {size}",
                              detail, outcome) from None
        if meta.get("type") != "ready":
            await self._kill(proc)
            writer.close()
            if self._cgroups is not None:
                await asyncio.to_thread(self._cgroups.release, str(pod_id))
            raise FunctionFailedError(f"pod {pod_id} of {spec.name} failed to start",
                                      detail=str(meta.get("error") or meta))
        cold_ms = (time.perf_counter() - t0) * 1000.0
        handle = PodHandle(pod_id, spec.name, size, node_id, cold_ms)
        self._pods[pod_id] = _Pod(handle, fn, proc, reader, writer, cgroup, log_path,
                                  size.cpu_millicores, gpu_ids=gpu_ids)
        log.debug("pod %s (%s at %s) ready in %.0f ms (imports %.0f ms, init %.0f ms)",
                  pod_id, spec.name, size, cold_ms, meta.get("import_ms", 0.0),
                  meta.get("init_ms", 0.0))
        return handle

    async def resize(self, pod_id: PodId, cpu_millicores: int) -> None:
        pod = self._pod(pod_id)
        if cpu_millicores <= 0:
            raise BackendError(f"invalid CPU {cpu_millicores}m for pod {pod_id}")
        if cpu_millicores > self._capacity.cpu_millicores:
            raise CapacityError(f"{cpu_millicores}m exceeds the node's "
                                f"{self._capacity.cpu_millicores}m")
        if pod.cgroup is not None and cpu_millicores != pod.cpu_millicores:
            pod.cgroup.set_cpu(cpu_millicores)
        pod.cpu_millicores = cpu_millicores
        size = pod.handle.size.with_cpu(cpu_millicores)
        pod.handle = PodHandle(pod.handle.pod_id, pod.handle.function, size,
                               pod.handle.node_id, pod.handle.cold_start_ms)

    async def invoke(self, pod_id: PodId, body: bytes, content_type: str | None,
                     timeout_s: float) -> InvocationResult:
        pod = self._pod(pod_id)
        async with pod.lock:
            if pod_id not in self._pods:  # died while we waited for the lock
                raise BackendError(f"pod {pod_id!r} died before the invocation ran")
            oom0 = hits0 = 0
            if pod.cgroup is not None:  # tiny cgroupfs writes: cheaper inline than a thread hop
                pod.cgroup.reset_peak()
                oom0, hits0 = (pod.memory_counters if pod.memory_counters is not None
                               else pod.cgroup.memory_counters())
            log0 = _size(pod.log_path)
            request: dict[str, Any] = {
                "type": "invoke",
                "content_type": content_type or "",
                "cpu_millicores": pod.cpu_millicores,
                "memory_mib": pod.handle.size.memory_mib,
            }
            if pod.proc.returncode is not None or pod.reader.at_eof():
                # died while idle: the input would go nowhere, and it is not this size's fault
                code = await self._kill_reaped(pod.proc)
                await self._discard(pod_id)
                raise PodLostError(f"pod {pod_id} of {pod.handle.function} died while idle",
                                   detail=f"worker exit status {code}; nothing ran")
            t0 = time.perf_counter()
            try:
                # the deadline covers the write: a frozen worker stops draining its socket
                # (asyncio.timeout, not wait_for: no task per invocation)
                async with asyncio.timeout(timeout_s):
                    meta, out = await _exchange(pod.writer, pod.reader, request, body)
            except TimeoutError:
                latency = (time.perf_counter() - t0) * 1000.0
                await self._discard(pod_id)
                outcome = Outcome(latency, OutcomeStatus.TIMEOUT,
                                  detail=f"no answer within {timeout_s:g}s; worker killed")
                raise self._error(OutcomeStatus.TIMEOUT,
                                  f"{pod.handle.function} timed out on pod {pod_id}",
                                  outcome.detail, outcome) from None
            except (EOFError, ConnectionError, protocol.ProtocolError):
                latency = (time.perf_counter() - t0) * 1000.0
                status, detail = await self._diagnose_death(pod.proc, pod.cgroup, pod.log_path,
                                                            oom0, hits0, log0)
                peak = pod.cgroup.peak_mib() if pod.cgroup is not None else None
                await self._discard(pod_id)
                outcome = Outcome(latency, status, peak_memory_mib=peak or 0.0, detail=detail)
                raise self._error(status, f"{pod.handle.function} failed on pod {pod_id}",
                                  detail, outcome) from None
            latency = (time.perf_counter() - t0) * 1000.0
            pod.invocations += 1
            peak_mib = float(meta.get("peak_rss_mib", 0.0))
            child_oom = False
            if pod.cgroup is not None:
                peak_mib = max(peak_mib, _working_set_peak(pod, pod.cgroup))
                # a child (e.g. ffmpeg) OOM-killed inside the pod surfaces as a function
                # error: the cgroup's kill counter tells the truth
                pod.memory_counters = pod.cgroup.memory_counters()
                child_oom = pod.memory_counters[0] > oom0
        status_text = str(meta.get("status", "error"))
        status = {"ok": OutcomeStatus.OK, "oom": OutcomeStatus.OOM}.get(
            status_text, OutcomeStatus.ERROR)
        if status is OutcomeStatus.ERROR and child_oom:
            status = OutcomeStatus.OOM
        outcome = Outcome(
            latency_ms=latency,
            status=status,
            cpu_seconds=float(meta.get("cpu_seconds", 0.0)),
            peak_memory_mib=peak_mib,
            detail=str(meta.get("error", "")),
        )
        if status is OutcomeStatus.OOM:  # MemoryError, or a child OOM-killed: the worker lives
            raise self._error(status, f"{pod.handle.function} ran out of memory on pod {pod_id}",
                              outcome.detail, outcome)
        return InvocationResult(out, str(meta.get("content_type") or "application/octet-stream"),
                                outcome)

    async def stop_pod(self, pod_id: PodId) -> None:
        pod = self._pods.pop(pod_id, None)
        if pod is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(protocol.write_frame(pod.writer, {"type": "exit"}), 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pod.proc.wait(), 2.0)
        await self._kill(pod.proc)
        pod.writer.close()
        self._free_gpus.extend(pod.gpu_ids)
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.release, str(pod_id))

    # ---------------------------------------------------------------- failure handling
    async def _discard(self, pod_id: PodId) -> None:
        pod = self._pods.pop(pod_id, None)
        if pod is None:
            return
        await self._kill(pod.proc)
        pod.writer.close()
        self._free_gpus.extend(pod.gpu_ids)
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.release, str(pod_id))

    @staticmethod
    async def _kill_reaped(proc: asyncio.subprocess.Process) -> int | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 1.0)
        return proc.returncode

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)

    async def _diagnose_death(self, proc: asyncio.subprocess.Process, cgroup: PodCgroup | None,
                              log_path: Path, oom_kills_before: int, limit_hits_before: int = 0,
                              log_offset: int = 0,
                              timed_out: bool = False) -> tuple[OutcomeStatus, str]:
        """Why did the worker stop answering? OOM kill, other crash, or a hang."""
        if timed_out:
            await self._kill(proc)
            return OutcomeStatus.TIMEOUT, "worker did not become ready in time; killed"
        try:
            code = await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            await self._kill(proc)
            code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        tail = _tail(log_path, since=log_offset)  # only what this invocation printed
        how = (f"killed by {signal.Signals(-code).name}" if code < 0 and
               -code in signal.valid_signals() else f"exited with status {code}")
        if cgroup is not None:
            oom_kills = cgroup.oom_kills()
            peak = cgroup.peak_mib()
            limit = cgroup.memory_limit_mib
            near_limit = (peak is not None and limit is not None
                          and peak >= OOM_USAGE_FRACTION * limit)
            hit_limit = cgroup.limit_hits() > limit_hits_before
            if code == -signal.SIGKILL and (oom_kills > oom_kills_before or near_limit
                                            or hit_limit):
                return OutcomeStatus.OOM, (
                    f"worker {how}: out of memory (limit {limit}Mi, peak "
                    f"{(peak or 0):.0f}Mi, oom_kill count {oom_kills_before}->{oom_kills})")
        if "MemoryError" in tail:
            return OutcomeStatus.OOM, f"worker {how}: MemoryError. {tail}"
        return OutcomeStatus.CRASH, f"worker {how}" + (f"; stderr: {tail}" if tail else "")

    @staticmethod
    def _error(status: OutcomeStatus, message: str, detail: str,
               outcome: Outcome) -> BackendError:
        exc: BackendError
        if status is OutcomeStatus.OOM:
            exc = OutOfMemoryError(message, detail=detail)
        elif status is OutcomeStatus.TIMEOUT:
            exc = InvocationTimeoutError(message, detail=detail)
        else:
            exc = FunctionFailedError(message, detail=detail)
        exc.outcome = outcome
        return exc


LOG_DIR_PREFIX = "shabari-local-"


def reap_stale_log_dirs() -> list[Path]:
    """Remove the pod log dirs of local backends whose process is dead."""
    removed: list[Path] = []
    for d in Path(tempfile.gettempdir()).glob(f"{LOG_DIR_PREFIX}*"):
        owner = d.name[len(LOG_DIR_PREFIX):]
        if d.is_dir() and owner_gone(owner):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


async def _exchange(writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                    request: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
    await protocol.write_frame(writer, request, body)
    return await protocol.read_frame(reader)


#: seconds a pod's reclaimable page cache figure is reused (see `_Pod.inactive_file_mib`)
INACTIVE_FILE_TTL_S = 1.0


def _working_set_peak(pod: _Pod, cgroup: PodCgroup) -> float:
    """The pod's peak memory during the invocation as Kubernetes counts a working set: the
    cgroup's peak usage (workers *and* children such as ffmpeg) minus reclaimable page cache."""
    peak = cgroup.peak_mib()
    if peak is None:
        return 0.0
    now = time.monotonic()
    if now - pod.inactive_file_at >= INACTIVE_FILE_TTL_S:
        pod.inactive_file_mib = cgroup.inactive_file_mib()
        pod.inactive_file_at = now
    return max(0.0, peak - pod.inactive_file_mib)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, limit: int = 600, since: int = 0) -> str:
    try:
        data = path.read_bytes()[since:][-limit:]
    except OSError:
        return ""
    lines = data.decode(errors="replace").strip().splitlines()
    return " | ".join(lines[-4:])
