"""The worker runtime: frame protocol, per-invocation measurements, thread sizing, HTTP mode."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from shabari.runtime import protocol
from shabari.runtime.catalog import functions_root
from shabari.runtime.worker import PASSIVE_WAIT_ENV, FunctionRunner, threads_for

HANDLER = '''
import os
def init(ctx):
    ctx.state["loaded"] = True
def handle(body, content_type, ctx):
    if body == b"boom":
        raise RuntimeError("exploded on purpose")
    if body == b"grow":
        block = bytearray(b"\\x01") * (64 * 1024 * 1024)
        return str(len(block)).encode()
    if body == b"env":
        import threadpoolctl
        info = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
        return f"{ctx.threads},{os.environ['OMP_NUM_THREADS']},{info}".encode()
    return body[::-1], "text/reversed"
'''


@pytest.fixture
def fn_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rev"
    d.mkdir()
    (d / "handler.py").write_text(HANDLER)
    return d


class TestProtocol:
    def test_roundtrip_over_a_socketpair(self) -> None:
        a, b = socket.socketpair()
        with a, b:
            body = bytes(range(256)) * 1000  # larger than the socket buffer
            sender = threading.Thread(target=protocol.send_frame,
                                      args=(a, {"type": "invoke", "x": 1}, body))
            sender.start()
            meta, got = protocol.recv_frame(b)
            sender.join()
            assert meta == {"type": "invoke", "x": 1} and got == body

    def test_garbage_and_closed_peers_are_protocol_errors(self) -> None:
        a, b = socket.socketpair()
        with b:
            a.sendall(b"\x00\x00\x00\x03\x00\x00\x00\x00not")
            with pytest.raises(protocol.ProtocolError):
                protocol.recv_frame(b)
            a.sendall(b"\xff\xff\xff\xff\x00\x00\x00\x00")
            with pytest.raises(protocol.ProtocolError, match="too large"):
                protocol.recv_frame(b)
            a.close()
            with pytest.raises(EOFError):
                protocol.recv_frame(b)


class TestThreadSizing:
    @pytest.mark.parametrize(("cpu", "cores", "threads"),
                             [(100, 8, 1), (250, 8, 1), (1000, 8, 1), (1500, 8, 2),
                              (4000, 8, 4), (16000, 8, 8), (2000, 1, 1)])
    def test_threads_are_ceil_vcpus_capped_by_cores(self, cpu: int, cores: int,
                                                    threads: int) -> None:
        assert threads_for(cpu, cores) == threads


IDLE_HANDLER = '''
import os, resource, time
import numpy as np

A = np.random.default_rng(0).random((600, 600))

def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def handle(body, content_type, ctx):
    if body == b"env":
        names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT")
        return ",".join(os.environ.get(n, "-") for n in names).encode()
    A @ A  # wakes the BLAS pool (ctx.threads threads)
    c0 = _cpu()
    time.sleep(0.3)  # the process is idle now: only spinning pool threads use CPU
    return f"{_cpu() - c0:.4f}".encode()
'''


def _connect(proc: subprocess.Popen[bytes], port: int) -> socket.socket:
    """Connect to a `--listen` worker once it listens (60 s at most, while it is alive)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)


def _ask_worker(fn_dir: Path, bodies: list[bytes], env: dict[str, str],
                cpu_millicores: int = 2000) -> list[bytes]:
    """Start a real worker process (`--listen`, so its start-up code runs), invoke it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shabari.runtime.worker", "--function-dir", str(fn_dir),
         "--listen", f"127.0.0.1:{port}", "--cpu-millicores", str(cpu_millicores)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        conn = _connect(proc, port)
        answers = []
        with conn:
            protocol.recv_frame(conn)
            for body in bodies:
                protocol.send_frame(conn, {"type": "invoke"}, body)
                meta, out = protocol.recv_frame(conn)
                assert meta["status"] == "ok", out
                answers.append(out)
        return answers
    finally:
        proc.kill()
        proc.wait()


class TestIdleThreadsSleep:
    """Idle BLAS/OpenMP pool threads must sleep, not spin on the pod's CPU quota."""

    @pytest.fixture
    def idle_dir(self, tmp_path: Path) -> Path:
        d = tmp_path / "idle"
        d.mkdir()
        (d / "handler.py").write_text(IDLE_HANDLER)
        return d

    @staticmethod
    def _env(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in PASSIVE_WAIT_ENV and not k.endswith("_NUM_THREADS")}
        return env | extra

    def test_passive_wait_policy_is_set_and_an_explicit_one_wins(self, idle_dir: Path) -> None:
        default = ",".join(PASSIVE_WAIT_ENV[n] for n in (
            "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT"))
        assert _ask_worker(idle_dir, [b"env"], self._env()) == [default.encode()]
        custom = _ask_worker(idle_dir, [b"env"], self._env(OMP_WAIT_POLICY="ACTIVE"))[0]
        assert custom.startswith(b"ACTIVE,")

    @pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: BLAS runs one thread")
    def test_blas_threads_use_no_cpu_once_the_call_returns(self, idle_dir: Path) -> None:
        # OpenBLAS's default (spin 2^28 cycles after each call) burns ~0.1 CPU-s here
        idle_cpu = [float(x) for x in _ask_worker(idle_dir, [b"run"] * 3, self._env())]
        assert min(idle_cpu) < 0.02, idle_cpu


class TestFunctionRunner:
    def test_result_error_and_measurements(self, fn_dir: Path) -> None:
        r = FunctionRunner(fn_dir, 1000, 256)
        assert r.ctx.state == {"loaded": True} and r.import_ms >= 0 and r.init_ms >= 0
        meta, out = r.invoke(b"abc", "text/plain")
        assert (meta["status"], out, meta["content_type"]) == ("ok", b"cba", "text/reversed")
        assert meta["wall_ms"] >= 0 and meta["cpu_seconds"] >= 0 and meta["peak_rss_mib"] > 0
        meta, out = r.invoke(b"boom", "text/plain")
        assert meta["status"] == "error"
        assert out == b"RuntimeError: exploded on purpose" == meta["error"].encode()
        assert r.invoke(b"ok", "")[0]["status"] == "ok"  # the worker lives on

    def test_peak_memory_is_per_invocation(self, fn_dir: Path) -> None:
        r = FunctionRunner(fn_dir, 1000, 512)
        big, _ = r.invoke(b"grow", "")
        small, _ = r.invoke(b"x", "")
        assert big["peak_rss_mib"] > small["peak_rss_mib"] + 40

    def test_resize_resizes_thread_pools(self, fn_dir: Path) -> None:
        r = FunctionRunner(fn_dir, 250, 256)
        assert r.invoke(b"env", "")[1].startswith(b"1,1,")
        if (os.cpu_count() or 1) >= 2:
            assert r.invoke(b"env", "", cpu_millicores=2000)[1].startswith(b"2,2,")
        assert r.ctx.cpu_millicores == 2000

    def test_missing_handler_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(RuntimeError, match=r"no handler\.py"):
            FunctionRunner(tmp_path, 1000, 256)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestImageEntryPoint:
    """What a function image's CMD runs: the same runtime over HTTP."""

    @pytest.mark.slow
    def test_http_mode_serves_a_bundled_function(self) -> None:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "shabari.runtime.worker", "--function-dir",
             str(functions_root() / "markdown"), "--http", str(port), "--host", "127.0.0.1",
             "--cpu-millicores", "500"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as resp:
                        ready = json.loads(resp.read())
                    break
                except OSError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert ready["function"] == "markdown" and ready["threads"] == 1
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"# Title\n\nhi *x*",
                                         headers={"Content-Type": "text/markdown",
                                                  "X-Shabari-Cpu-Millicores": "2000"})
            with urllib.request.urlopen(req) as resp:
                html = resp.read()
                assert resp.headers["X-Shabari-Status"] == "ok"
                assert float(resp.headers["X-Shabari-Wall-Ms"]) >= 0
                assert resp.headers["X-Shabari-Threads"] == str(min(2, os.cpu_count() or 1))
            assert b"<h1>Title</h1>" in html and b"<em>x</em>" in html
            bad = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"\xff\xfe")
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(bad)
            assert info.value.code == 502
            assert b"UnicodeDecodeError" in info.value.read()
        finally:
            proc.kill()
            proc.wait()

    @pytest.mark.slow
    def test_listen_mode_speaks_the_same_frames_over_tcp(self) -> None:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "shabari.runtime.worker", "--function-dir",
             str(functions_root() / "markdown"), "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn = _connect(proc, port)
            with conn:
                ready, _ = protocol.recv_frame(conn)
                assert ready["type"] == "ready" and ready["import_ms"] >= 0
                protocol.send_frame(conn, {"type": "invoke", "content_type": "text/markdown",
                                           "cpu_millicores": 1000}, b"*hi*")
                result, html = protocol.recv_frame(conn)
                assert result["status"] == "ok" and b"<em>hi</em>" in html
                protocol.send_frame(conn, {"type": "bogus"})
                assert protocol.recv_frame(conn)[0]["status"] == "error"
        finally:
            proc.kill()
            proc.wait()
