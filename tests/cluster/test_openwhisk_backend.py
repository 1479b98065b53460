"""The openwhisk backend against an in-test OpenWhisk controller that really runs the actions.

`FakeOpenWhisk` implements the parts of the OpenWhisk REST API the backend uses (PUT/GET
actions, blocking POST invocations returning activation records, Basic auth) and runs each
python:3 action the way an invoker would: one warm "container" (a Python process) per action,
initialised with the action's code on first use (the activation then carries `initTime`), a
memory watchdog that kills the process when its RSS passes `limits.memory` (reported as
"exhausted its memory"), and 202 when the blocking wait runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cluster_fixtures import free_port

from shabari.backends.base import Backend
from shabari.backends.openwhisk import ADAPTER, OpenWhiskBackend, action_name
from shabari.core import SLO, FunctionName, FunctionSpec, NodeId, PodId, Size
from shabari.core.errors import (
    BackendUnavailableError,
    ConfigError,
    InvocationTimeoutError,
    OutOfMemoryError,
    PayloadTooLargeError,
    ResizeRejectedError,
)
from shabari.core.types import OutcomeStatus

AUTH = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:secretkey"
#: the deployment's limits (OpenWhisk defaults; docs/reference.md "System limits")
MIN_MB, MAX_MB, PAYLOAD_MAX = 128, 512, 1024 * 1024
NODE = NodeId("openwhisk")

#: the action "container": load the code once, then serve JSON lines (like OpenWhisk's actionloop)
RUNNER = r"""
import json, sys
print(json.dumps({"started": True}), flush=True)  # the container exists; /init comes next
code = sys.stdin.readline()
scope = {"__name__": "__main__"}
exec(compile(json.loads(code), "action", "exec"), scope)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    try:
        out = scope["main"](json.loads(line))
    except Exception as exc:
        out = {"__crash": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
"""


class FakeOpenWhisk:
    def __init__(self) -> None:
        self.actions: dict[str, dict[str, Any]] = {}
        self.containers: dict[str, asyncio.subprocess.Process] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.runs: set[asyncio.Task[Any]] = set()
        self.activations: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_put("/api/v1/namespaces/{ns}/actions/{name}", self.put)
        self.app.router.add_get("/api/v1/namespaces/{ns}/actions/{name}", self.get)
        self.app.router.add_post("/api/v1/namespaces/{ns}/actions/{name}", self.invoke)
        self.app.middlewares.append(self.auth)

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        import base64

        header = request.headers.get("Authorization", "")
        ok = header == "Basic " + base64.b64encode(AUTH.encode()).decode()
        if not ok:
            return web.json_response({"error": "The supplied authentication is invalid",
                                      "code": "x"}, status=401)
        resp: web.StreamResponse = await handler(request)
        return resp

    async def put(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.actions and request.query.get("overwrite") != "true":
            return web.json_response({"error": "resource already exists"}, status=409)
        action = await request.json()
        memory = action.get("limits", {}).get("memory", 256)
        # MemoryLimit.scala with the default whisk.memory.min/max = 128 MB / 512 MB
        if memory < MIN_MB or memory > MAX_MB:
            word = "below" if memory < MIN_MB else "exceeds"
            bound = MIN_MB if memory < MIN_MB else MAX_MB
            return web.json_response({"error": f"memory {memory} MB {word} allowed threshold "
                                               f"of {bound} MB", "code": "x"}, status=400)
        self.actions[name] = action
        old = self.containers.pop(name, None)
        if old is not None:
            old.kill()
        return web.json_response(self.actions[name])

    async def get(self, request: web.Request) -> web.Response:
        action = self.actions.get(request.match_info["name"])
        if action is None:
            return web.json_response({"error": "The requested resource does not exist."},
                                     status=404)
        return web.json_response(action)

    async def _container(
        self, name: str
    ) -> tuple[asyncio.subprocess.Process, float, float | None]:
        """(container, ms to create it, ms to initialise it or None when warm)."""
        proc = self.containers.get(name)
        if proc is not None and proc.returncode is None:
            return proc, 0.0, None
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUNNER, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=8 << 20,  # results up to the payload limit
        )
        assert proc.stdin is not None and proc.stdout is not None
        await proc.stdout.readline()  # started
        created = time.perf_counter()
        create_ms = (created - t0) * 1000.0
        t0 = created
        proc.stdin.write(json.dumps(self.actions[name]["exec"]["code"]).encode() + b"\n")
        await proc.stdin.drain()
        await proc.stdout.readline()
        self.containers[name] = proc
        return proc, create_ms, (time.perf_counter() - t0) * 1000.0

    async def _watch_memory(self, proc: asyncio.subprocess.Process, limit_mib: int) -> None:
        while proc.returncode is None:
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                rss_kib = int(next(ln for ln in status.splitlines()
                                   if ln.startswith("VmRSS:")).split()[1])
                if rss_kib / 1024 > limit_mib:
                    proc.kill()
                    return
            await asyncio.sleep(0.01)

    async def invoke(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        action = self.actions.get(name)
        if action is None:
            return web.json_response({"error": "The requested resource does not exist."},
                                     status=404)
        assert request.query.get("blocking") == "true"
        raw = await request.read()
        if len(raw) > PAYLOAD_MAX:  # "Per activation payload size (Fixed: 1MB)"
            return web.json_response({"error": f"The request content was malformed: request "
                                               f"entity {len(raw)} exceeds {PAYLOAD_MAX}"},
                                     status=413)
        params = json.loads(raw)
        activation_id = uuid.uuid4().hex
        t_arrive = time.perf_counter()
        lock = self.locks.setdefault(name, asyncio.Lock())
        run = asyncio.create_task(self._run(name, action, params, lock, t_arrive))
        self.runs.add(run)
        run.add_done_callback(self.runs.discard)
        blocking_s = int(request.query.get("timeout", "60000")) / 1000.0
        done, _ = await asyncio.wait({run}, timeout=blocking_s)
        if not done:  # OpenWhisk: 202 with the activation id, the action keeps running
            return web.json_response({"activationId": activation_id}, status=202)
        response, annotations, duration = run.result()
        record = {"activationId": activation_id, "name": name, "namespace": "guest",
                  "duration": duration, "annotations": annotations, "response": response}
        self.activations.append(record)
        return web.json_response(record, status=200 if response["success"] else 502)

    async def _run(self, name: str, action: dict[str, Any], params: dict[str, Any],
                   lock: asyncio.Lock, t_arrive: float) -> tuple[dict[str, Any], list[Any], int]:
        async with lock:
            wait_ms = (time.perf_counter() - t_arrive) * 1000.0
            t0 = time.perf_counter()
            proc, create_ms, init_ms = await self._container(name)
            wait_ms += create_ms
            assert proc.stdin is not None and proc.stdout is not None
            watchdog = asyncio.create_task(self._watch_memory(proc, action["limits"]["memory"]))
            proc.stdin.write(json.dumps(params).encode() + b"\n")
            await proc.stdin.drain()
            line = await proc.stdout.readline()
            watchdog.cancel()
            duration = int((time.perf_counter() - t0) * 1000.0)
        annotations: list[Any] = [{"key": "waitTime", "value": int(wait_ms)},
                                  {"key": "limits", "value": action["limits"]}]
        if init_ms is not None:
            annotations.append({"key": "initTime", "value": int(init_ms)})
        if not line:  # the container died
            await proc.wait()
            self.containers.pop(name, None)
            error = ("The action exhausted its memory and was aborted." if proc.returncode == -9
                     else "The action did not produce a valid response and exited unexpectedly.")
            return ({"status": "action developer error", "success": False,
                     "result": {"error": error}}, annotations, duration)
        result = json.loads(line)
        if "__crash" in result:
            return ({"status": "action developer error", "success": False,
                     "result": {"error": result["__crash"]}}, annotations, duration)
        if "error" in result:
            return ({"status": "application error", "success": False, "result": result},
                    annotations, duration)
        return ({"status": "success", "success": True, "result": result}, annotations, duration)

    async def close(self) -> None:
        for run in list(self.runs):
            run.cancel()
        for proc in list(self.containers.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@pytest.fixture
async def openwhisk() -> AsyncIterator[tuple[FakeOpenWhisk, str]]:
    fake = FakeOpenWhisk()
    runner = web.AppRunner(fake.app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield fake, f"http://127.0.0.1:{port}"
    await fake.close()
    await runner.cleanup()


def spec(name: str, memories: tuple[int, ...] = (128, 256)) -> FunctionSpec:
    return FunctionSpec(
        name=FunctionName(name), slo=SLO(latency_ms=1000.0),
        sizes=tuple(Size(cpu, m) for cpu in (500, 1000) for m in memories),
    )


@pytest.fixture
async def backend(
    openwhisk: tuple[FakeOpenWhisk, str], function_dirs: dict[str, Path]
) -> AsyncIterator[OpenWhiskBackend]:
    _, url = openwhisk
    b = OpenWhiskBackend({
        "api_host": url, "auth": AUTH, "namespace": "guest",
        "code_paths": {n: str(d / "handler.py") for n, d in function_dirs.items()},
    })
    await b.start()
    yield b
    await b.close()


class TestVariants:
    def test_is_a_backend_without_resize(self) -> None:
        b = OpenWhiskBackend({"api_host": "http://x", "auth": AUTH})
        assert isinstance(b, Backend)
        assert b.supports_resize is False

    def test_bad_options_are_config_errors(self) -> None:
        with pytest.raises(ConfigError, match="api_host"):
            OpenWhiskBackend({"auth": AUTH})
        with pytest.raises(ConfigError, match="uuid:key"):
            OpenWhiskBackend({"api_host": "http://x", "auth": "no-colon"})

    def test_cpu_maps_to_a_memory_variant(self) -> None:
        b = OpenWhiskBackend({"api_host": "http://x", "auth": AUTH, "memory_per_vcpu_mib": 512})
        assert b.variant_memory(Size(500, 128)) == 256  # 0.5 vCPU needs the 256 MiB share
        assert b.variant_memory(Size(500, 1024)) == 1024
        plain = OpenWhiskBackend({"api_host": "http://x", "auth": AUTH})
        assert plain.variant_memory(Size(2000, 128)) == 128

    async def test_prepare_creates_one_action_per_memory(
        self, backend: OpenWhiskBackend, openwhisk: tuple[FakeOpenWhisk, str]
    ) -> None:
        fake, _ = openwhisk
        async with asyncio.timeout(20):
            await backend.prepare(spec("echo"))
        assert set(fake.actions) == {"echo@128", "echo@256"}
        action = fake.actions[action_name("echo", 256)]
        assert action["limits"]["memory"] == 256
        assert action["exec"]["kind"] == "python:3"
        assert action["exec"]["code"].endswith(ADAPTER)
        assert "def handle" in action["exec"]["code"]

    async def test_gpu_sizes_are_refused(self, backend: OpenWhiskBackend) -> None:
        gpu_spec = FunctionSpec(name=FunctionName("echo"), slo=SLO(latency_ms=1.0),
                                sizes=(Size(1000, 256, 1),), gpu_capable=True)
        with pytest.raises(ConfigError, match="GPU"):
            await backend.prepare(gpu_spec)

    async def test_resize_is_rejected_for_a_fallback(self, backend: OpenWhiskBackend) -> None:
        await backend.start_pod(PodId("p"), spec("echo"), Size(500, 128), NODE)
        with pytest.raises(ResizeRejectedError) as info:
            await backend.resize(PodId("p"), 1000)
        assert info.value.reason == "Unsupported"


class TestInvocations:
    async def test_cold_then_warm(self, backend: OpenWhiskBackend) -> None:
        async with asyncio.timeout(30):
            handle = await backend.start_pod(PodId("p"), spec("echo"), Size(500, 128), NODE)
            assert handle.cold_start_ms == 0.0
            first = await backend.invoke(PodId("p"), b"\x00\xffhi", "application/x-bin", 20)
            assert first.body == b"echo:\x00\xffhi:cpu=500"
            assert first.content_type == "text/plain"
            assert first.outcome.cold_start and first.outcome.cold_start_ms > 0
            second = await backend.invoke(PodId("p"), b"again", None, 20)
            assert second.outcome.status is OutcomeStatus.OK
            assert not second.outcome.cold_start
            assert "waitTime" in second.outcome.detail

    async def test_function_error_is_an_error_outcome(self, backend: OpenWhiskBackend) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("f"), spec("failing"), Size(500, 128), NODE)
            result = await backend.invoke(PodId("f"), b"zzz", None, 20)
            assert result.outcome.status is OutcomeStatus.ERROR
            assert b"ValueError: bad input: zzz" in result.body

    async def test_memory_exhausted_is_oom(self, backend: OpenWhiskBackend) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("b"), spec("bloat"), Size(500, 128), NODE)
            with pytest.raises(OutOfMemoryError, match="exhausted its memory") as info:
                await backend.invoke(PodId("b"), b"300", None, 20)
            assert info.value.outcome.status is OutcomeStatus.OOM

    async def test_still_running_after_blocking_wait_is_a_timeout(
        self, backend: OpenWhiskBackend
    ) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("s"), spec("sleepy"), Size(500, 128), NODE)
            t0 = time.monotonic()
            with pytest.raises(InvocationTimeoutError, match="still running as activation"):
                await backend.invoke(PodId("s"), b"5", None, 1.0)
            assert time.monotonic() - t0 < 4


class TestPlatformFailures:
    async def test_wrong_credentials(
        self, openwhisk: tuple[FakeOpenWhisk, str], function_dirs: dict[str, Path]
    ) -> None:
        _, url = openwhisk
        b = OpenWhiskBackend({
            "api_host": url, "auth": "someone:wrong",
            "code_paths": {"echo": str(function_dirs["echo"] / "handler.py")},
        })
        await b.start()
        try:
            async with asyncio.timeout(10):
                with pytest.raises(BackendUnavailableError, match="authentication failed"):
                    await b.prepare(spec("echo"))
        finally:
            await b.close()

    async def test_unreachable_api(self, function_dirs: dict[str, Path]) -> None:
        b = OpenWhiskBackend({
            "api_host": f"http://127.0.0.1:{free_port()}", "auth": AUTH, "api_timeout_s": 2,
            "code_paths": {"echo": str(function_dirs["echo"] / "handler.py")},
        })
        await b.start()
        try:
            async with asyncio.timeout(10):
                with pytest.raises(BackendUnavailableError, match="unavailable"):
                    await b.prepare(spec("echo"))
        finally:
            await b.close()


class TestPlatformLimits:
    """Issue #17, item 13: OpenWhisk's limits are met before they become a 400 or a 413."""

    async def test_memory_above_the_deployments_maximum_is_refused_at_prepare(
        self, backend: OpenWhiskBackend, openwhisk: tuple[FakeOpenWhisk, str]
    ) -> None:
        fake, _ = openwhisk
        with pytest.raises(ConfigError, match=r"1024 MiB, outside .*\[128, 512\]") as info:
            await backend.prepare(spec("echo", memories=(256, 1024)))
        assert "whisk.memory.max" in info.value.detail
        assert fake.actions == {}  # nothing half-created

    async def test_a_bigger_maximum_is_an_option(
        self, openwhisk: tuple[FakeOpenWhisk, str], function_dirs: dict[str, Path]
    ) -> None:
        _, url = openwhisk
        b = OpenWhiskBackend({"api_host": url, "auth": AUTH, "max_memory_mib": 2048,
                              "code_paths": {"echo": str(function_dirs["echo"] / "handler.py")}})
        await b.start()
        try:
            # the backend lets it through; this (default) deployment answers 400: said plainly
            with pytest.raises(ConfigError, match="OpenWhisk refused") as info:
                await b.prepare(spec("echo", memories=(1024,)))
            assert "exceeds allowed threshold" in info.value.detail
        finally:
            await b.close()

    async def test_payload_limit_counts_the_base64_growth(
        self, backend: OpenWhiskBackend, openwhisk: tuple[FakeOpenWhisk, str]
    ) -> None:
        fake, _ = openwhisk
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("p"), spec("echo"), Size(500, 128), NODE)
            fits = await backend.invoke(PodId("p"), b"x" * 700_000, None, 20)
            assert fits.outcome.status is OutcomeStatus.OK
            calls = len(fake.activations)
            # 900 kB is under 1 MB, but 1.2 MB once base64-encoded
            with pytest.raises(PayloadTooLargeError, match="too large") as info:
                await backend.invoke(PodId("p"), b"x" * 900_000, None, 20)
        assert info.value.http_status == 413
        assert "base64" in info.value.detail
        assert len(fake.activations) == calls  # refused before any call

    async def test_cold_start_includes_container_creation(
        self, backend: OpenWhiskBackend, openwhisk: tuple[FakeOpenWhisk, str]
    ) -> None:
        fake, _ = openwhisk
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("p"), spec("echo"), Size(500, 128), NODE)
            first = await backend.invoke(PodId("p"), b"hi", None, 20)
        notes = {a["key"]: a["value"] for a in fake.activations[-1]["annotations"]}
        assert first.outcome.cold_start
        assert first.outcome.cold_start_ms == notes["waitTime"] + notes["initTime"]
        assert notes["waitTime"] > 0  # the container's creation (a real process start)
