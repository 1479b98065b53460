"""The worker runtime: one process per warm pod, the function loaded once, one invocation at a time.

Why a separate process per pod: CPU and memory limits (cgroups, or affinity + RLIMIT) apply to
processes, a crash or OOM kill of one function must not take the backend down, and a cold start
is only honest if it pays for a fresh interpreter, the function's imports and its model load.

Start-up (the cold start, measured here and reported in the `ready` frame):
  1. join the pod's cgroups (`--join-cgroup DIR`, before anything heavy is imported), or apply
     the fallback limits (`--affinity`, `--rlimit-as`);
  2. size thread pools from the CPU allocation (`OMP/MKL/OPENBLAS_NUM_THREADS`, ...) and make
     idle pool threads sleep rather than spin (`PASSIVE_WAIT_ENV`);
  3. import the function's `handler.py` and call its optional `init(ctx)` (model load).

Each invocation request carries the pod's *current* CPU allocation (the backend may have
resized the pod in place since the last one), so pools are re-sized before the handler runs
(`threadpoolctl` for BLAS/OpenMP, `torch.set_num_threads`, and `ctx.threads` for the handler's
own pools and `ffmpeg -threads`). Per invocation the worker reports wall time, CPU seconds
(getrusage of itself and of waited children, e.g. ffmpeg), peak RSS (VmHWM reset through
/proc/self/clear_refs, plus children's max RSS) and a status: `ok`, `error` (the function
raised: its exception text; the worker lives on) or `oom` (MemoryError under an RLIMIT).

Modes: `--fd N` (a socketpair end inherited from the local backend), `--listen HOST:PORT` (the
same frames over TCP) and `--http PORT` (a plain HTTP server: the function images' CMD for
Kubernetes/Knative). See docs/local-backend.md.

Handler contract (functions/<name>/handler.py):
    def init(ctx: WorkerContext) -> None                  # optional: load models once
    def handle(body: bytes, content_type: str, ctx: WorkerContext) -> bytes | tuple[bytes, str]
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import importlib.util
import json
import math
import os
import resource
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from shabari.runtime import protocol

#: environment variables that size native thread pools when a library loads
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

#: idle native threads sleep instead of spinning. OpenBLAS (pthreads) keeps its workers busy-
#: waiting for 2^28 cycles (~0.1 s) after every call and GNU/Intel OpenMP spin too by default;
#: under a CFS quota or on a shared node that burns the pod's own quota (5x the CPU-seconds of
#: the work itself for a 600x600 matmul at 2 vCPUs beside other load) and steals CPU from other
#: pods. Set before any native library loads; values already in the environment win.
PASSIVE_WAIT_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "GOMP_SPINCOUNT": "0",
    "KMP_BLOCKTIME": "0",
    "OPENBLAS_THREAD_TIMEOUT": "4",  # 2^4 cycles, OpenBLAS's minimum
}


def threads_for(cpu_millicores: int, cores: int | None = None) -> int:
    """Threads worth running for an allocation: ceil(vCPUs), at least 1, at most the cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(cores, math.ceil(cpu_millicores / 1000)))


@dataclass
class WorkerContext:
    """What a handler knows about its allocation; updated before every invocation."""

    function_dir: Path
    cpu_millicores: int
    memory_mib: int
    threads: int
    #: "cuda" when a GPU is visible to torch and the function asked for it, else "cpu"
    device: str = "cpu"
    state: dict[str, Any] = field(default_factory=dict)


def _read_hwm_kib() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_hwm() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _cpu_seconds() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:2000]


class FunctionRunner:
    """A loaded function plus the bookkeeping of one warm pod (independent of the transport)."""

    def __init__(self, function_dir: Path, cpu_millicores: int, memory_mib: int) -> None:
        self.function_dir = function_dir
        self.ctx = WorkerContext(function_dir, cpu_millicores, memory_mib,
                                 threads_for(cpu_millicores))
        t0 = time.perf_counter()
        self._module = self._load(function_dir)
        self.import_ms = (time.perf_counter() - t0) * 1000.0
        handle = getattr(self._module, "handle", None)
        if not callable(handle):
            raise RuntimeError(f"{function_dir / 'handler.py'} defines no handle(body, "
                               "content_type, ctx) function")
        self._handle: Callable[..., Any] = handle
        self._apply_threads(self.ctx.threads)
        t1 = time.perf_counter()
        init = getattr(self._module, "init", None)
        if callable(init):
            init(self.ctx)
        self.init_ms = (time.perf_counter() - t1) * 1000.0

    @staticmethod
    def _load(function_dir: Path) -> ModuleType:
        path = function_dir / "handler.py"
        if not path.is_file():
            raise RuntimeError(f"no handler.py in {function_dir}")
        name = f"shabari_function_{function_dir.name.replace('-', '_')}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(function_dir))
        spec.loader.exec_module(module)
        return module

    def _apply_threads(self, threads: int) -> None:
        for var in THREAD_ENV_VARS:
            os.environ[var] = str(threads)
        try:
            import threadpoolctl  # type: ignore[import-untyped]

            threadpoolctl.threadpool_limits(threads)
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            pass
        torch = sys.modules.get("torch")
        if torch is not None:
            with contextlib.suppress(Exception):
                torch.set_num_threads(threads)

    def set_allocation(self, cpu_millicores: int, memory_mib: int) -> None:
        """Re-size pools after an in-place resize (no-op when unchanged)."""
        self.ctx.memory_mib = memory_mib
        if cpu_millicores != self.ctx.cpu_millicores:
            self.ctx.cpu_millicores = cpu_millicores
            threads = threads_for(cpu_millicores)
            if threads != self.ctx.threads:
                self.ctx.threads = threads
                self._apply_threads(threads)

    def invoke(self, body: bytes, content_type: str, cpu_millicores: int | None = None,
               memory_mib: int | None = None) -> tuple[dict[str, Any], bytes]:
        """Run the handler once; never raises (errors become an `error`/`oom` status)."""
        self.set_allocation(cpu_millicores or self.ctx.cpu_millicores,
                            memory_mib or self.ctx.memory_mib)
        children_rss0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        _reset_hwm()
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        status, out, out_type, error = "ok", b"", "application/octet-stream", ""
        try:
            result = self._handle(body, content_type, self.ctx)
            if isinstance(result, tuple):
                out, out_type = bytes(result[0]), str(result[1])
            else:
                out = bytes(result)
        except MemoryError as exc:
            status, error = "oom", f"MemoryError: {exc}"
        except Exception as exc:
            status, error = "error", _error_text(exc)
            traceback.print_exc(file=sys.stderr)
        wall_ms = (time.perf_counter() - t0) * 1000.0
        cpu_s = _cpu_seconds() - cpu0
        peak_kib = _read_hwm_kib()
        children_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if children_rss > children_rss0:
            peak_kib += children_rss
        if status != "ok":
            out, out_type = error.encode(), "text/plain; charset=utf-8"
        meta = {
            "type": "result",
            "status": status,
            "error": error,
            "content_type": out_type,
            "wall_ms": wall_ms,
            "cpu_seconds": cpu_s,
            "peak_rss_mib": peak_kib / 1024.0,
            "threads": self.ctx.threads,
            "cpu_millicores": self.ctx.cpu_millicores,
        }
        return meta, out


# ------------------------------------------------------------------------------------------
# limits applied by the worker to itself, first thing


def apply_limits(join_cgroups: list[str], affinity: str | None, rlimit_as: int | None) -> None:
    pid = str(os.getpid())
    for directory in join_cgroups:
        with open(os.path.join(directory, "cgroup.procs"), "w") as fh:
            fh.write(pid)
    if affinity:
        cpus = {int(c) for c in affinity.split(",") if c.strip()}
        os.sched_setaffinity(0, cpus)
    if rlimit_as:
        resource.setrlimit(resource.RLIMIT_AS, (rlimit_as, rlimit_as))


# ------------------------------------------------------------------------------------------
# transports


def serve_socket(runner: FunctionRunner, sock: socket.socket, ready: dict[str, Any]) -> None:
    """Serve frames on one connected socket until the peer closes it."""
    protocol.send_frame(sock, ready)
    while True:
        try:
            meta, body = protocol.recv_frame(sock)
        except (EOFError, ConnectionError):
            return
        kind = meta.get("type")
        if kind == "invoke":
            result, out = runner.invoke(body, str(meta.get("content_type") or ""),
                                        _int_or_none(meta.get("cpu_millicores")),
                                        _int_or_none(meta.get("memory_mib")))
            protocol.send_frame(sock, result, out)
        elif kind == "ping":
            protocol.send_frame(sock, {"type": "pong", "pid": os.getpid()})
        elif kind == "exit":
            return
        else:
            protocol.send_frame(sock, {"type": "result", "status": "error",
                                       "error": f"unknown frame type {kind!r}"})


def _int_or_none(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def serve_http(runner: FunctionRunner, host: str, port: int, ready: dict[str, Any]) -> None:
    """`POST /` (or `/invoke`) runs the function; `GET /healthz` says it is loaded.

    The request may carry `X-Shabari-Cpu-Millicores` / `X-Shabari-Memory-Mib` (the allocation
    after an in-place resize); the response carries the measurements as `X-Shabari-*` headers.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "shabari-worker"

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            pass

        def do_GET(self) -> None:
            if self.path in ("/healthz", "/readyz"):
                data = json.dumps(ready).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            cpu = self.headers.get("X-Shabari-Cpu-Millicores")
            mem = self.headers.get("X-Shabari-Memory-Mib")
            result, out = runner.invoke(
                body, self.headers.get("Content-Type") or "",
                int(cpu) if cpu and cpu.isdigit() else None,
                int(mem) if mem and mem.isdigit() else None)
            code = {"ok": 200, "error": 502, "oom": 502}.get(result["status"], 500)
            self.send_response(code)
            self.send_header("Content-Type", result["content_type"])
            self.send_header("Content-Length", str(len(out)))
            self.send_header("X-Shabari-Status", result["status"])
            self.send_header("X-Shabari-Wall-Ms", f"{result['wall_ms']:.3f}")
            self.send_header("X-Shabari-Cpu-Seconds", f"{result['cpu_seconds']:.4f}")
            self.send_header("X-Shabari-Peak-Memory-Mib", f"{result['peak_rss_mib']:.1f}")
            self.send_header("X-Shabari-Threads", str(result["threads"]))
            self.end_headers()
            self.wfile.write(out)

    server = http.server.HTTPServer((host, port), Handler)  # one request at a time
    print(f"shabari worker: serving {runner.function_dir.name} on http://{host}:{port}",
          file=sys.stderr, flush=True)
    server.serve_forever()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shabari.runtime.worker",
                                description="Serve one bundled function (one warm pod).")
    p.add_argument("--function-dir", required=True, type=Path)
    p.add_argument("--cpu-millicores", type=int,
                   default=int(os.environ.get("SHABARI_CPU_MILLICORES", "0") or 0) or None)
    p.add_argument("--memory-mib", type=int,
                   default=int(os.environ.get("SHABARI_MEMORY_MIB", "0") or 0) or None)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fd", type=int, help="inherited connected socket (local backend)")
    mode.add_argument("--listen", help="HOST:PORT: frames over TCP")
    mode.add_argument("--http", type=int, metavar="PORT", help="serve HTTP on PORT")
    p.add_argument("--host", default="0.0.0.0", help="bind address for --http")
    p.add_argument("--join-cgroup", action="append", default=[],
                   help="cgroup directory to move this process into (repeatable)")
    p.add_argument("--affinity", default=None, help="fallback: comma-separated CPU ids")
    p.add_argument("--rlimit-as", type=int, default=None, help="fallback: RLIMIT_AS bytes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spawned_at = float(os.environ.get("SHABARI_SPAWN_TIME", "0") or 0)
    apply_limits(args.join_cgroup, args.affinity, args.rlimit_as)
    # the handler's prints must never corrupt a protocol on stdout: send them to stderr
    os.dup2(2, 1)
    cpu = args.cpu_millicores or (os.cpu_count() or 1) * 1000
    mem = args.memory_mib or 0
    threads = threads_for(cpu)
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    for var, value in PASSIVE_WAIT_ENV.items():
        os.environ.setdefault(var, value)
    sock: socket.socket | None = None
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    try:
        runner = FunctionRunner(args.function_dir.resolve(), cpu, mem)
    except BaseException as exc:  # report why the pod cannot start, then die
        traceback.print_exc(file=sys.stderr)
        if sock is not None:
            with contextlib.suppress(OSError):
                protocol.send_frame(sock, {"type": "fatal", "error": _error_text(exc)})
        return 3
    ready: dict[str, Any] = {
        "type": "ready",
        "pid": os.getpid(),
        "function": args.function_dir.name,
        "import_ms": runner.import_ms,
        "init_ms": runner.init_ms,
        "startup_ms": (time.time() - spawned_at) * 1000.0 if spawned_at else None,
        "threads": runner.ctx.threads,
        "device": runner.ctx.device,
    }
    if sock is not None:
        serve_socket(runner, sock, ready)
    elif args.listen:
        host, _, port = args.listen.rpartition(":")
        with socket.create_server((host or "0.0.0.0", int(port))) as server:
            while True:
                conn, _addr = server.accept()
                with conn:
                    serve_socket(runner, conn, ready)
    else:
        serve_http(runner, args.host, args.http, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
