"""The kubernetes backend end to end: backend -> emulated API server -> test kubelet -> worker.

Every invocation here runs a real function in a real worker process reached over HTTP at the
pod IP the kubelet published; resizes travel as real PATCHes of `pods/{name}/resize` and are
confirmed through the pod status. Every test is bounded by `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import pytest
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE, TestKubelet, free_port
from strict_api import admin_headers

from shabari.backends.base import Backend
from shabari.backends.cgroups import CgroupManager, CgroupMode
from shabari.backends.kubernetes import (
    KubernetesBackend,
    _readiness,
    _resize_state,
    pod_name_for,
)
from shabari.core import SLO, FunctionName, FunctionSpec, NodeId, PodId, Size
from shabari.core.errors import (
    BackendUnavailableError,
    FunctionFailedError,
    InvocationTimeoutError,
    OutOfMemoryError,
    ResizeRejectedError,
)
from shabari.core.types import OutcomeStatus

NODE = NodeId("cluster")


def spec(name: str) -> FunctionSpec:
    return FunctionSpec(
        name=FunctionName(name), slo=SLO(latency_ms=1000.0),
        sizes=(Size(500, 256), Size(1000, 256), Size(2000, 256)),
    )


@pytest.fixture
async def backend(
    k8s_api: tuple[kmock.KubernetesEmulator, str], kubelet: TestKubelet
) -> AsyncIterator[KubernetesBackend]:
    _, url = k8s_api
    b = KubernetesBackend({
        "api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "image_prefix": "test/",
        "port": kubelet.port, "ready_timeout_s": 30, "resize_timeout_s": 5,
        "resize_deferred_wait_s": 0.5, "poll_interval_s": 0.2, "api_timeout_s": 3,
    })
    await b.start()
    yield b
    await b.close()


class TestProtocol:
    def test_is_a_backend(self) -> None:
        assert isinstance(KubernetesBackend({"api_url": "http://127.0.0.1:1"}), Backend)

    def test_pod_names_are_dns_labels(self) -> None:
        name = pod_name_for("Image_Resize", "pod/7" + "x" * 80)
        assert len(name) <= 63
        assert name == name.lower() and all(c.isalnum() or c == "-" for c in name)
        assert pod_name_for("f", "a") != pod_name_for("f", "b")


class TestStatusReading:
    """How pod status is read (pure functions over the pod object)."""

    def pod(self, conditions: list[dict[str, str]], cpu: str | None = None,
            alloc: str | None = None, phase: str = "Running") -> dict[str, Any]:
        cs: dict[str, Any] = {"name": "function"}
        if cpu is not None:
            cs["resources"] = {"requests": {"cpu": cpu}}
        if alloc is not None:
            cs["allocatedResources"] = {"cpu": alloc}
        return {"metadata": {"name": "p"}, "status": {
            "phase": phase, "podIP": "10.0.0.1", "conditions": conditions,
            "containerStatuses": [cs]}}

    def test_resize_states(self) -> None:
        assert _resize_state(self.pod([], cpu="1"), "function", 1000)[0] == "done"
        assert _resize_state(self.pod([], alloc="500m"), "function", 500)[0] == "done"
        assert _resize_state(self.pod([], cpu="500m"), "function", 1000)[0] == "in-progress"
        pending = self.pod([{"type": "PodResizePending", "status": "True",
                             "reason": "Infeasible", "message": "too big"}], cpu="1")
        assert _resize_state(pending, "function", 1000) == ("pending", "Infeasible", "too big")
        busy = self.pod([{"type": "PodResizeInProgress", "status": "True"}], cpu="1")
        assert _resize_state(busy, "function", 1000)[0] == "in-progress"

    def test_readiness(self) -> None:
        ready = self.pod([{"type": "Ready", "status": "True"}])
        assert _readiness(ready) == (True, "ready")
        unschedulable = self.pod([{"type": "PodScheduled", "status": "False",
                                   "message": "0/3 nodes have enough cpu"}], phase="Pending")
        ok, why = _readiness(unschedulable)
        assert not ok and "0/3 nodes" in why
        with pytest.raises(FunctionFailedError, match="failed before it became ready"):
            _readiness(self.pod([], phase="Failed"))


class TestPodLifecycle:
    async def test_start_invoke_stop(
        self, backend: KubernetesBackend, k8s_api: tuple[kmock.KubernetesEmulator, str],
        kubelet: TestKubelet,
    ) -> None:
        emulator, _ = k8s_api
        async with asyncio.timeout(60):
            await backend.prepare(spec("echo"))
            handle = await backend.start_pod(PodId("p1"), spec("echo"), Size(500, 256), NODE)
            assert handle.cold_start_ms > 0
            name = pod_name_for("echo", "p1")
            pod = emulator.objects["v1/pods", NAMESPACE, name]
            res = pod["spec"]["containers"][0]["resources"]
            assert dict(res["requests"]) == dict(res["limits"]) == {"cpu": "500m",
                                                                    "memory": "256Mi"}
            policy = {p["resourceName"]: p["restartPolicy"]
                      for p in pod["spec"]["containers"][0]["resizePolicy"]}
            assert policy["cpu"] == "NotRequired"
            assert pod["metadata"]["labels"]["shabari.dev/function"] == "echo"

            result = await backend.invoke(PodId("p1"), b"hi", "text/plain", 10)
            assert result.body == b"echo:hi:cpu=500"
            assert result.outcome.status is OutcomeStatus.OK
            assert result.outcome.latency_ms > 0

            await backend.stop_pod(PodId("p1"))
            for _ in range(50):
                if name not in kubelet.workers:
                    break
                await asyncio.sleep(0.05)
            assert name not in kubelet.workers
            assert ("v1/pods", NAMESPACE, name) not in emulator.objects or \
                emulator.objects["v1/pods", NAMESPACE, name].deleted

    async def test_function_error_and_oom_are_reported(self, backend: KubernetesBackend) -> None:
        async with asyncio.timeout(60):
            await backend.start_pod(PodId("f1"), spec("failing"), Size(500, 256), NODE)
            result = await backend.invoke(PodId("f1"), b"xyz", None, 10)
            assert result.outcome.status is OutcomeStatus.ERROR
            assert b"bad input: xyz" in result.body
            await backend.start_pod(PodId("h1"), spec("hog"), Size(500, 256), NODE)
            with pytest.raises(OutOfMemoryError) as info:
                await backend.invoke(PodId("h1"), b"", None, 10)
            assert info.value.outcome.status is OutcomeStatus.OOM

    async def test_unknown_image_fails_start_clearly(
        self, backend: KubernetesBackend, k8s_api: tuple[kmock.KubernetesEmulator, str]
    ) -> None:
        emulator, _ = k8s_api
        async with asyncio.timeout(30):
            with pytest.raises(FunctionFailedError, match="ErrImagePull"):
                await backend.start_pod(PodId("x"), spec("no-such-fn"), Size(500, 256), NODE)
            name = pod_name_for("no-such-fn", "x")
            assert emulator.objects["v1/pods", NAMESPACE, name].deleted

    async def test_pod_never_ready_times_out(
        self, k8s_api: tuple[kmock.KubernetesEmulator, str], kubelet: TestKubelet
    ) -> None:
        _, url = k8s_api
        kubelet.hold_pods = True
        b = KubernetesBackend({"api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "ready_timeout_s": 1,
                               "poll_interval_s": 0.2})
        await b.start()
        try:
            async with asyncio.timeout(15):
                with pytest.raises(BackendUnavailableError, match="not ready within 1 s"):
                    await b.start_pod(PodId("slow"), spec("echo"), Size(500, 256), NODE)
        finally:
            await b.close()


class TestReclaim:
    async def test_leftover_pods_of_this_gateway_are_deleted_at_start(
        self, k8s_api: tuple[kmock.KubernetesEmulator, str]
    ) -> None:
        emulator, url = k8s_api
        labels = {"app.kubernetes.io/managed-by": "shabari", "shabari.dev/gateway": "gw-a"}
        async with aiohttp.ClientSession(headers=admin_headers()) as s:
            for name, owner in (("stale", "gw-a"), ("other", "gw-b")):
                pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": name, "namespace": NAMESPACE,
                    "labels": {**labels, "shabari.dev/gateway": owner}},
                    "spec": {"containers": [{"name": "function", "image": "test/echo"}]}}
                async with s.post(f"{url}/api/v1/namespaces/{NAMESPACE}/pods",
                                  json=pod) as resp:
                    assert resp.status in (200, 201)
        b = KubernetesBackend({"api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "gateway_id": "gw-a"})
        async with asyncio.timeout(10):
            await b.start()
            await b.close()
        assert emulator.objects["v1/pods", NAMESPACE, "stale"].deleted
        assert not emulator.objects["v1/pods", NAMESPACE, "other"].deleted


class TestInPlaceResize:
    async def test_resize_is_applied_before_the_next_invocation(
        self, backend: KubernetesBackend, kubelet: TestKubelet
    ) -> None:
        async with asyncio.timeout(60):
            await backend.start_pod(PodId("r1"), spec("echo"), Size(500, 256), NODE)
            await backend.resize(PodId("r1"), 2000)
            assert (pod_name_for("echo", "r1"), 2000) in kubelet.resizes
            result = await backend.invoke(PodId("r1"), b"x", None, 10)
            # the worker got the new allocation with the request and sized its pools by it
            assert result.body == b"echo:x:cpu=2000"

    @pytest.mark.cgroups
    async def test_resize_rewrites_the_cpu_quota_of_the_running_worker(
        self, backend: KubernetesBackend, kubelet: TestKubelet
    ) -> None:
        if not kubelet.cgroups and CgroupManager().mode is CgroupMode.NONE:
            pytest.skip("needs writable cgroups (root)")
        async with asyncio.timeout(60):
            await backend.start_pod(PodId("q1"), spec("echo"), Size(500, 256), NODE)
            name = pod_name_for("echo", "q1")
            cg = kubelet.cgroups[name]
            assert cg.cpu_limit_millicores() == 500
            pid = kubelet.workers[name].pid
            await backend.resize(PodId("q1"), 2000)
            assert cg.cpu_limit_millicores() == 2000
            assert pid in cg.pids()  # the same process: resized, not restarted

    async def test_infeasible_resize_falls_back_and_pod_stays_usable(
        self, backend: KubernetesBackend, kubelet: TestKubelet,
        k8s_api: tuple[kmock.KubernetesEmulator, str],
    ) -> None:
        emulator, _ = k8s_api
        async with asyncio.timeout(60):
            await backend.start_pod(PodId("r2"), spec("echo"), Size(1000, 256), NODE)
            with pytest.raises(ResizeRejectedError) as info:
                await backend.resize(PodId("r2"), 8000)  # the test node has 4 CPUs
            assert info.value.reason == "Infeasible"
            assert info.value.pod_id == "r2"
            # the spec was patched back: the pod keeps serving at its old size
            name = pod_name_for("echo", "r2")
            pod = emulator.objects["v1/pods", NAMESPACE, name]
            assert pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "1"
            result = await backend.invoke(PodId("r2"), b"y", None, 10)
            assert result.body == b"echo:y:cpu=1000"

    async def test_deferred_resize_falls_back_after_the_grace(
        self, backend: KubernetesBackend, kubelet: TestKubelet
    ) -> None:
        async with asyncio.timeout(60):
            await backend.start_pod(PodId("r4"), spec("echo"), Size(500, 256), NODE)
            kubelet.defer_resizes = True
            t0 = time.monotonic()
            with pytest.raises(ResizeRejectedError, match="deferred") as info:
                await backend.resize(PodId("r4"), 1000)
            assert info.value.reason == "Deferred"
            assert time.monotonic() - t0 < 5  # resize_deferred_wait_s is 0.5 s here
            kubelet.defer_resizes = False
            await backend.resize(PodId("r4"), 1000)  # the pod is still usable and resizable
            result = await backend.invoke(PodId("r4"), b"z", None, 10)
            assert result.body == b"echo:z:cpu=1000"

    async def test_resize_of_a_pod_deleted_behind_our_back(
        self, backend: KubernetesBackend, k8s_api: tuple[kmock.KubernetesEmulator, str]
    ) -> None:
        _, url = k8s_api
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("r3"), spec("echo"), Size(500, 256), NODE)
            name = pod_name_for("echo", "r3")
            async with aiohttp.ClientSession(headers=admin_headers()) as s, \
                    s.delete(f"{url}/api/v1/namespaces/{NAMESPACE}/pods/{name}") as resp:
                assert resp.status == 200
            with pytest.raises(FunctionFailedError, match="deleted"):
                await backend.resize(PodId("r3"), 1000)


class TestFailures:
    async def test_pod_deleted_mid_invocation(
        self, backend: KubernetesBackend, k8s_api: tuple[kmock.KubernetesEmulator, str]
    ) -> None:
        _, url = k8s_api
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("d1"), spec("sleepy"), Size(500, 256), NODE)
            call = asyncio.create_task(backend.invoke(PodId("d1"), b"20", None, 25))
            await asyncio.sleep(0.5)
            name = pod_name_for("sleepy", "d1")
            t0 = time.monotonic()
            async with aiohttp.ClientSession(headers=admin_headers()) as s, \
                    s.delete(f"{url}/api/v1/namespaces/{NAMESPACE}/pods/{name}") as resp:
                assert resp.status == 200
            with pytest.raises(FunctionFailedError, match="deleted mid-invocation") as info:
                await call
            assert time.monotonic() - t0 < 10  # noticed promptly, not after the 25 s timeout
            outcome = info.value.outcome
            assert outcome.status is OutcomeStatus.CRASH
            assert "deleted" in outcome.detail

    async def test_invocation_timeout(self, backend: KubernetesBackend) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("t1"), spec("sleepy"), Size(500, 256), NODE)
            t0 = time.monotonic()
            with pytest.raises(InvocationTimeoutError) as info:
                await backend.invoke(PodId("t1"), b"10", None, 1.0)
            assert time.monotonic() - t0 < 5
            assert info.value.outcome is not None
            assert info.value.outcome.status is OutcomeStatus.TIMEOUT

    async def test_api_server_unreachable(self) -> None:
        port = free_port()  # nothing listens there
        b = KubernetesBackend({"api_url": f"http://127.0.0.1:{port}", "api_timeout_s": 2})
        async with asyncio.timeout(10):
            with pytest.raises(BackendUnavailableError, match="unavailable"):
                await b.start()

    async def test_api_server_going_away_after_start(self) -> None:
        async with kmock.KubernetesEmulator() as emulator:
            emulator.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
            server = kmock.Server(emulator)
            await server.__aenter__()
            b = KubernetesBackend({"api_url": str(server.url), "namespace": NAMESPACE,
                                   "api_timeout_s": 2})
            await b.start()
            try:
                await server.__aexit__(None, None, None)
                async with asyncio.timeout(10):
                    with pytest.raises(BackendUnavailableError, match="unavailable"):
                        await b.start_pod(PodId("gone"), spec("echo"), Size(500, 256), NODE)
            finally:
                async with asyncio.timeout(10):
                    await b.close()  # also bounded with the API server gone

    async def test_api_server_that_never_answers(self) -> None:
        # accepts connections but never replies: the API timeout must bound the wait
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            port = srv.getsockname()[1]
            b = KubernetesBackend({"api_url": f"http://127.0.0.1:{port}", "api_timeout_s": 1})
            t0 = time.monotonic()
            async with asyncio.timeout(10):
                with pytest.raises(BackendUnavailableError, match="timed out"):
                    await b.start()
            assert time.monotonic() - t0 < 5

    async def test_authentication_failure(self) -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            emulator["get /api/v1/nodes"] << 401 << {"kind": "Status", "message": "Unauthorized"}
            b = KubernetesBackend({"api_url": str(server.url), "token": "wrong"})
            async with asyncio.timeout(10):
                with pytest.raises(BackendUnavailableError, match="authentication failed"):
                    await b.start()
