"""The local backend under real limits: CPU quota, memory limit/OOM, in-place resize, failures.

These run real worker processes in real cgroups (root on a cgroup v1/v2 host); the probe
functions live in a temporary functions directory so each behaviour is isolated from the
bundled functions' cost. Assertions compare measured ratios with wide margins: the machine is
shared, so absolute timings are never asserted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shabari.backends.base import Backend
from shabari.backends.cgroups import CgroupMode, detect
from shabari.backends.local import LocalBackend
from shabari.core import (
    BackendError,
    CapacityError,
    ConfigError,
    FunctionFailedError,
    FunctionName,
    InvocationTimeoutError,
    NodeId,
    OutcomeStatus,
    OutOfMemoryError,
    PodId,
    Size,
    UnknownFunctionError,
)
from shabari.runtime.catalog import BundledFunction, bundled_functions

HAS_CGROUPS = detect().mode is not CgroupMode.NONE
needs_cgroups = pytest.mark.skipif(not HAS_CGROUPS, reason="needs writable cgroups (root)")
NODE = NodeId("local")

PROBE_HANDLER = '''
"""Probe function for backend tests: the body says what to do."""
import json, os, time

def handle(body, content_type, ctx):
    cmd = json.loads(body or b"{}")
    op = cmd.get("op")
    if op == "spin":  # burn CPU on one thread for `seconds` of wall time
        end = time.perf_counter() + cmd["seconds"]
        n = 0
        while time.perf_counter() < end:
            n += 1
        return json.dumps({"n": n}).encode()
    if op == "work":  # a fixed amount of CPU work
        total = 0
        for i in range(cmd["iterations"]):
            total += i * i
        return str(total).encode()
    if op == "alloc":  # touch `mib` MiB
        block = bytearray(b"\\x01") * (cmd["mib"] * 1024 * 1024)
        return str(len(block)).encode()
    if op == "sleep":
        time.sleep(cmd["seconds"])
        return b"slept"
    if op == "gpus":
        return os.environ.get("CUDA_VISIBLE_DEVICES", "unset").encode()
    if op == "threads":
        return json.dumps({"threads": ctx.threads, "cpu": ctx.cpu_millicores,
                           "omp": os.environ.get("OMP_NUM_THREADS")}).encode()
    raise ValueError(f"unknown op {op!r}")
'''

PROBE_YAML = """
description: test probe
slo: {latencyMs: 1000}
featurizer: generic
sizes: {cpu: ["250m", "1", "2"], memory: ["128Mi", "256Mi"]}
"""


def _probe_root(tmp: Path) -> Path:
    d = tmp / "probe"
    d.mkdir(parents=True)
    (d / "handler.py").write_text(textwrap.dedent(PROBE_HANDLER))
    (d / "function.yaml").write_text(PROBE_YAML)
    (d / "inputs.py").write_text(
        "def generate(seed, n):\n    return [(b'{\"op\": \"threads\"}', 'application/json', "
        "f'p{i}') for i in range(n)]\n")
    return tmp


@pytest.fixture
def probe_functions(tmp_path: Path) -> dict[str, BundledFunction]:
    return bundled_functions(_probe_root(tmp_path / "functions"))


def cmd(**kw: object) -> bytes:
    import json

    return json.dumps(kw).encode()


@pytest.fixture
async def backend(probe_functions: dict[str, BundledFunction]):  # type: ignore[no-untyped-def]
    b = LocalBackend(probe_functions)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def _start(b: LocalBackend, fns: dict[str, BundledFunction], pod: str, cpu: int,
                 mem: int, name: str = "probe") -> PodId:
    await b.start_pod(PodId(pod), fns[name].spec, Size(cpu, mem), NODE)
    return PodId(pod)


class TestContract:
    def test_implements_backend_protocol(self) -> None:
        b = LocalBackend({})
        assert isinstance(b, Backend)
        assert b.name == "local" and b.supports_resize

    def test_node_capacity_defaults_to_machine_and_is_configurable(self) -> None:
        (node,) = LocalBackend({}).nodes()
        assert node.cpu_millicores == len(os.sched_getaffinity(0)) * 1000
        assert node.memory_mib > 256
        (node,) = LocalBackend({}, cpu_millicores=8000, memory_mib=4096, node_id="n1").nodes()
        assert (node.node_id, node.cpu_millicores, node.memory_mib) == ("n1", 8000, 4096)

    def test_cpu_shares_option_from_the_gateway_config(self) -> None:
        from shabari.gateway.cli import make_backend

        b = make_backend("local", {}, options={"cpu_shares": 32768})
        assert isinstance(b, LocalBackend) and b._cpu_shares == 32768
        assert make_backend("local", {})._cpu_shares is None  # type: ignore[attr-defined]
        with pytest.raises(ConfigError, match="cpu_shares"):
            make_backend("local", {}, options={"cpu_shares": "lots"})

    async def test_unknown_function_and_impossible_sizes(self, backend: LocalBackend,
                                                         probe_functions: dict[str, BundledFunction]
                                                         ) -> None:
        spec = probe_functions["probe"].spec
        with pytest.raises(UnknownFunctionError, match="probe"):
            await backend.prepare(dataclasses.replace(spec, name=FunctionName("nope")))
        with pytest.raises(CapacityError, match="GPU"):
            await backend.start_pod(PodId("g"), spec, Size(1000, 256, 1), NODE)
        with pytest.raises(CapacityError, match="exceeds"):
            await backend.start_pod(PodId("big"), spec, Size(1000, 10**8), NODE)
        with pytest.raises(BackendError, match="no pod"):
            await backend.invoke(PodId("missing"), b"", None, 5)


class TestGpus:
    async def test_gpus_are_handed_out_exclusively_and_returned(
            self, probe_functions: dict[str, BundledFunction]) -> None:
        b = LocalBackend(probe_functions, gpus=2)
        await b.start()
        try:
            assert b.nodes()[0].gpus == 2
            spec = probe_functions["probe"].spec
            await b.start_pod(PodId("g1"), spec, Size(1000, 256, 1), NODE)
            await b.start_pod(PodId("g2"), spec, Size(1000, 256, 1), NODE)
            await b.start_pod(PodId("cpu"), spec, Size(1000, 256), NODE)
            seen = {(await b.invoke(PodId(p), cmd(op="gpus"), None, 30)).body
                    for p in ("g1", "g2")}
            assert seen == {b"0", b"1"}
            assert (await b.invoke(PodId("cpu"), cmd(op="gpus"), None, 30)).body == b""
            with pytest.raises(CapacityError, match="0 of the local node's 2"):
                await b.start_pod(PodId("g3"), spec, Size(1000, 256, 1), NODE)
            freed = b.pod_gpu_ids(PodId("g1"))
            await b.stop_pod(PodId("g1"))
            await b.start_pod(PodId("g3"), spec, Size(1000, 256, 1), NODE)
            assert b.pod_gpu_ids(PodId("g3")) == freed
        finally:
            await b.close()


class TestInvocations:
    async def test_cold_start_then_warm_invocations_are_reported(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        handle = await backend.start_pod(PodId("p"), probe_functions["probe"].spec,
                                         Size(1000, 256), NODE)
        assert handle.cold_start_ms > 0 and handle.function == "probe"
        first = await backend.invoke(PodId("p"), cmd(op="threads"), "application/json", 30)
        assert first.outcome.ok and not first.outcome.cold_start
        assert first.outcome.latency_ms > 0
        # the warm path skips interpreter start + imports: far below the cold start
        assert first.outcome.latency_ms < handle.cold_start_ms

    async def test_malformed_input_is_a_function_error_and_the_pod_lives(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        pod = await _start(backend, probe_functions, "p", 1000, 256)
        bad = await backend.invoke(pod, b"\xff not json", "application/json", 30)
        assert bad.outcome.status is OutcomeStatus.ERROR
        assert b"JSONDecodeError" in bad.body or b"UnicodeDecodeError" in bad.body
        good = await backend.invoke(pod, cmd(op="threads"), None, 30)
        assert good.outcome.ok and pod in backend.pod_ids()


@needs_cgroups
@pytest.mark.cgroups
class TestCpuLimits:
    async def test_cpu_bound_loop_at_250m_uses_about_a_quarter_core(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        pod = await _start(backend, probe_functions, "p", 250, 256)
        assert backend.pod_cpu_limit_millicores(pod) == 250
        r = await backend.invoke(pod, cmd(op="spin", seconds=1.5), None, 30)
        used = r.outcome.cpu_seconds / (r.outcome.latency_ms / 1000)
        assert 0.1 < used < 0.4, f"used {used:.2f} cores at 250m"

    async def test_in_place_resize_changes_the_speed_of_the_next_invocation(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        pod = await _start(backend, probe_functions, "p", 250, 256)
        work = cmd(op="work", iterations=6_000_000)
        slow = await backend.invoke(pod, work, None, 60)
        await backend.resize(pod, 1000)
        assert backend.pod_cpu_limit_millicores(pod) == 1000
        # best of two: other load on the machine can only slow the fast runs down
        fast = min([(await backend.invoke(pod, work, None, 60)).outcome.latency_ms
                    for _ in range(2)])
        # idle machine: ~4x faster. The machine is shared, so demand much less: the 250m run
        # was throttled to a quarter core and the resized one is clearly faster.
        slow_util = slow.outcome.cpu_seconds / (slow.outcome.latency_ms / 1000)
        assert slow_util < 0.32, f"250m run used {slow_util:.2f} cores"
        assert fast * 1.4 < slow.outcome.latency_ms, (
            f"250m: {slow.outcome.latency_ms:.0f} ms, 1000m: {fast:.0f} ms")

    async def test_worker_threads_follow_the_allocation(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        import json

        pod = await _start(backend, probe_functions, "p", 250, 256)
        before = json.loads((await backend.invoke(pod, cmd(op="threads"), None, 30)).body)
        await backend.resize(pod, 2000)
        after = json.loads((await backend.invoke(pod, cmd(op="threads"), None, 30)).body)
        assert (before["threads"], before["omp"]) == (1, "1")
        assert after["cpu"] == 2000
        assert after["threads"] == min(2, len(os.sched_getaffinity(0)))


@needs_cgroups
@pytest.mark.cgroups
class TestMemoryLimits:
    async def test_allocation_beyond_the_limit_is_reported_as_oom(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        pod = await _start(backend, probe_functions, "p", 1000, 128)
        small = await backend.invoke(pod, cmd(op="alloc", mib=16), None, 30)
        assert small.outcome.ok and small.outcome.peak_memory_mib >= 16
        with pytest.raises(OutOfMemoryError) as info:
            await backend.invoke(pod, cmd(op="alloc", mib=400), None, 60)
        assert info.value.outcome is not None
        assert info.value.outcome.status is OutcomeStatus.OOM
        assert "out of memory" in info.value.detail and "128Mi" in info.value.detail
        assert pod not in backend.pod_ids()
        # the pool recovers: a fresh pod with more memory runs the same input
        pod2 = await _start(backend, probe_functions, "p2", 1000, 256)
        ok = await backend.invoke(pod2, cmd(op="alloc", mib=100), None, 60)
        assert ok.outcome.ok


class TestFailures:
    async def test_worker_killed_mid_invocation_fails_clearly_and_pool_recovers(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        pod = await _start(backend, probe_functions, "p", 1000, 256)
        pid = backend.pod_pid(pod)

        async def kill_soon() -> None:
            await asyncio.sleep(0.3)
            os.kill(pid, signal.SIGKILL)

        killer = asyncio.create_task(kill_soon())
        with pytest.raises(FunctionFailedError) as info:
            await backend.invoke(pod, cmd(op="sleep", seconds=10), None, 30)
        await killer
        assert "SIGKILL" in info.value.detail
        assert info.value.outcome is not None
        assert info.value.outcome.status is OutcomeStatus.CRASH
        assert pod not in backend.pod_ids()
        with pytest.raises(BackendError):
            await backend.invoke(pod, cmd(op="threads"), None, 5)
        pod2 = await _start(backend, probe_functions, "p2", 1000, 256)
        assert (await backend.invoke(pod2, cmd(op="threads"), None, 30)).outcome.ok

    async def test_timeout_kills_the_worker(
            self, backend: LocalBackend, probe_functions: dict[str, BundledFunction]) -> None:
        pod = await _start(backend, probe_functions, "p", 1000, 256)
        pid = backend.pod_pid(pod)
        with pytest.raises(InvocationTimeoutError) as info:
            await backend.invoke(pod, cmd(op="sleep", seconds=30), None, 0.5)
        assert info.value.outcome is not None
        assert info.value.outcome.status is OutcomeStatus.TIMEOUT
        assert pod not in backend.pod_ids()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@needs_cgroups
@pytest.mark.cgroups
class TestCgroupCleanup:
    async def test_close_removes_every_cgroup_directory(
            self, probe_functions: dict[str, BundledFunction]) -> None:
        b = LocalBackend(probe_functions)
        await b.start()
        await _start(b, probe_functions, "a", 250, 128)
        await _start(b, probe_functions, "b", 500, 256)
        a_dirs = b.pod_cgroup_dirs(PodId("a"))
        dirs = [*b.cgroup_instance_dirs(), *a_dirs, *b.pod_cgroup_dirs(PodId("b"))]
        assert a_dirs and all(d.is_dir() for d in dirs)
        await b.stop_pod(PodId("a"))
        assert not any(d.exists() for d in a_dirs)
        await b.close()
        assert not any(d.exists() for d in dirs)

    @pytest.mark.slow
    async def test_leftovers_of_a_crashed_backend_are_removed_at_next_start(
            self, tmp_path: Path) -> None:
        root = _probe_root(tmp_path / "functions")
        script = textwrap.dedent(f"""
            import asyncio, os, sys
            from shabari.backends.local import LocalBackend
            from shabari.core import NodeId, PodId, Size
            from shabari.runtime.catalog import bundled_functions
            async def main():
                fns = bundled_functions({str(root)!r})
                b = LocalBackend(fns)
                await b.start()
                await b.start_pod(PodId("orphan"), fns["probe"].spec, Size(250, 128),
                                  NodeId("local"))
                print(*b.cgroup_instance_dirs(), sep="\\n", flush=True)
                os._exit(9)  # crash: no close(), cgroups and worker left behind
            asyncio.run(main())
        """)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 9, out.stderr
        leftovers = [Path(p) for p in out.stdout.split()]
        assert leftovers and all(p.is_dir() for p in leftovers)
        b = LocalBackend({})
        await b.start()
        try:
            assert not any(p.exists() for p in leftovers)
        finally:
            await b.close()


class TestFallbackLimits:
    async def test_one_clear_warning_per_process(self, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
        import shabari.backends.local as local

        monkeypatch.setattr(local, "_fallback_warned", False)
        for _ in range(2):
            b = LocalBackend({}, use_cgroups=False)
            await b.start()
            await b.close()
        warnings = [r for r in caplog.records if "falling back" in r.getMessage()]
        assert len(warnings) == 1
        assert "affinity" in warnings[0].getMessage() and "RLIMIT_AS" in warnings[0].getMessage()

    async def test_without_cgroups_affinity_and_rlimit_apply_and_oom_is_reported(
            self, probe_functions: dict[str, BundledFunction]) -> None:
        b = LocalBackend(probe_functions, use_cgroups=False)
        await b.start()
        try:
            assert b.limits_mode == "fallback"
            pod = await _start(b, probe_functions, "p", 250, 128)
            assert b.pod_cgroup_dirs(pod) == ()
            assert (await b.invoke(pod, cmd(op="threads"), None, 30)).outcome.ok
            with pytest.raises(OutOfMemoryError) as info:
                await b.invoke(pod, cmd(op="alloc", mib=4096), None, 60)
            assert "MemoryError" in info.value.detail
            # MemoryError is recoverable: the worker keeps serving
            assert (await b.invoke(pod, cmd(op="threads"), None, 30)).outcome.ok
        finally:
            await b.close()
