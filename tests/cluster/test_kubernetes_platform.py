"""The kubernetes backend against what only a real cluster does (issue #17, items 2, 3, 5, 6, 11).

Each test drives the backend through the strict emulator and the test kubelet, which model one
behaviour of the real platform: the API server's pod validation, an OOM kill with restartPolicy
Never, a ResourceQuota, a kubelet with the static CPU manager policy, a runtime that fails a
resize, and resize answers stamped with `observedGeneration`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE, TestKubelet
from strict_api import StrictApiServer, object_errors, schema_errors

from shabari.backends._k8s_api import KubeApi, KubeConfig
from shabari.backends.base import platform_limitations
from shabari.backends.kubernetes import (
    STATIC_CPU_MANAGER_REASON,
    KubernetesBackend,
    _resize_state,
    pod_name_for,
)
from shabari.core import SLO, FunctionName, FunctionSpec, NodeId, PodId, Size
from shabari.core.errors import (
    CapacityError,
    FunctionFailedError,
    OutOfMemoryError,
    ResizeRejectedError,
)
from shabari.core.types import OutcomeStatus
from shabari.gateway.metrics import GatewayMetrics

NODE = NodeId("cluster")


def spec(name: str = "echo") -> FunctionSpec:
    return FunctionSpec(name=FunctionName(name), slo=SLO(latency_ms=1000.0),
                        sizes=(Size(500, 256), Size(1000, 256), Size(2000, 256)))


@pytest.fixture
async def backend(
    k8s_api: tuple[StrictApiServer, str], kubelet: TestKubelet
) -> AsyncIterator[KubernetesBackend]:
    _, url = k8s_api
    b = KubernetesBackend({
        "api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE,
        "image_prefix": "test/", "port": kubelet.port, "ready_timeout_s": 30,
        "resize_timeout_s": 5, "resize_deferred_wait_s": 0.5, "poll_interval_s": 0.2,
        "api_timeout_s": 3,
    })
    await b.start()
    yield b
    await b.close()


class TestPodsPassValidation:
    """Item 2: every pod the backend creates is one a real API server accepts."""

    @pytest.mark.parametrize("template", [
        {},
        {"spec": {"restartPolicy": "Always"}},
        {"metadata": {"labels": {"team": "ml"}},
         "spec": {"containers": [{"name": "function", "env": [{"name": "A", "value": "1"}]}]}},
    ])
    def test_manifest_passes_the_api_servers_rules(self, template: dict[str, Any]) -> None:
        config = KubeConfig(server="http://127.0.0.1:1", namespace=NAMESPACE)
        b = KubernetesBackend({"pod_templates": {"echo": template}}, config=config)
        b._api = KubeApi(config)  # never started: building a manifest makes no call
        for size in (Size(500, 256), Size(2000, 1024, 1)):
            pod = b._pod_manifest(PodId("p" * 40), spec(), size, NODE)
            assert object_errors(pod) == []
            assert schema_errors(pod) == []
            policies = {p["resourceName"]: p["restartPolicy"]
                        for p in pod["spec"]["containers"][0]["resizePolicy"]}
            assert policies["cpu"] == "NotRequired"

    async def test_created_pods_were_accepted(
        self, backend: KubernetesBackend, k8s_api: tuple[StrictApiServer, str]
    ) -> None:
        emulator, _ = k8s_api
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("v1"), spec(), Size(500, 256), NODE)
        assert emulator.rejections == []


class TestOOMKilled:
    """Item 5: an OOM-killed container is an OOM, and its Failed pod is gone for good."""

    async def test_oom_kill_mid_invocation_is_reported_as_oom(
        self, backend: KubernetesBackend, kubelet: TestKubelet
    ) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("o1"), spec("sleepy"), Size(500, 256), NODE)
            call = asyncio.create_task(backend.invoke(PodId("o1"), b"20", None, 25))
            await asyncio.sleep(0.5)
            await kubelet.oom_kill(pod_name_for("sleepy", "o1"))
            with pytest.raises(OutOfMemoryError, match="out of memory") as info:
                await call
        assert info.value.outcome is not None
        assert info.value.outcome.status is OutcomeStatus.OOM
        assert "OOMKilled" in info.value.detail

    async def test_failed_idle_pod_is_gone_not_warm(
        self, backend: KubernetesBackend, kubelet: TestKubelet
    ) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("o2"), spec(), Size(500, 256), NODE)
            name = pod_name_for("echo", "o2")
            await kubelet.oom_kill(name)
            pod = backend._pods[PodId("o2")]
            await asyncio.wait_for(pod.deleted.wait(), 10)
            assert pod.terminated == "OOMKilled"
            # not this input's OOM: a pod that is gone, said at once (no connection timeout)
            with pytest.raises(FunctionFailedError, match="terminated \\(OOMKilled\\)"):
                await backend.invoke(PodId("o2"), b"x", None, 5)


class TestQuota:
    """Item 6: ResourceQuota refusals are capacity / resize rejections, not RBAC errors."""

    async def test_pod_over_quota_is_a_capacity_error(
        self, backend: KubernetesBackend, k8s_api: tuple[StrictApiServer, str]
    ) -> None:
        emulator, _ = k8s_api
        emulator.cpu_quota[NAMESPACE] = 1000
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("q1"), spec(), Size(1000, 256), NODE)
            with pytest.raises(CapacityError, match="no quota left") as info:
                await backend.start_pod(PodId("q2"), spec(), Size(500, 256), NODE)
        assert "exceeded quota" in info.value.detail

    async def test_resize_over_quota_is_a_rejected_resize(
        self, backend: KubernetesBackend, k8s_api: tuple[StrictApiServer, str],
        kubelet: TestKubelet,
    ) -> None:
        emulator, _ = k8s_api
        emulator.cpu_quota[NAMESPACE] = 1000
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("q3"), spec(), Size(500, 256), NODE)
            with pytest.raises(ResizeRejectedError) as info:
                await backend.resize(PodId("q3"), 2000)
            assert info.value.reason == "Quota"
            result = await backend.invoke(PodId("q3"), b"still", None, 5)  # still a warm pod
        assert result.body.startswith(b"echo:still:cpu=500")
        assert kubelet.resizes == []


class TestStaticCPUManager:
    """Item 3: detected at the first Infeasible answer, reported, and not retried."""

    async def test_detected_reported_and_no_more_patches(
        self, backend: KubernetesBackend, kubelet: TestKubelet,
        k8s_api: tuple[StrictApiServer, str], caplog: pytest.LogCaptureFixture,
    ) -> None:
        emulator, _ = k8s_api
        kubelet.static_cpu_manager = True
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("s1"), spec(), Size(500, 256), NODE)
            backend._pods[PodId("s1")].node_name = "node-a"
            with pytest.raises(ResizeRejectedError) as first:
                await backend.resize(PodId("s1"), 1000)
            assert first.value.reason == "Infeasible"
            assert STATIC_CPU_MANAGER_REASON in backend.limitations()
            patches = [p for m, p, *_ in emulator.auth_log if m == "PATCH"]
            with pytest.raises(ResizeRejectedError) as second:
                await backend.resize(PodId("s1"), 2000)
            assert second.value.reason == STATIC_CPU_MANAGER_REASON
            assert [p for m, p, *_ in emulator.auth_log if m == "PATCH"] == patches
        warnings = [r for r in caplog.records if "static CPU manager" in r.getMessage()]
        assert len(warnings) == 1 and "node-a" in warnings[0].getMessage()
        # what the gateway exports from it (metric) and shows in /readyz (platform_limitations)
        metrics = GatewayMetrics()
        metrics.report_limitations(backend.name, platform_limitations(backend))
        assert ('shabari_platform_limitation{backend="kubernetes",limitation="StaticCPUManager"}'
                ' 1.0') in metrics.render().decode()


class TestResizeAnswers:
    """Item 11: only answers to this resize count, and a runtime error fails fast."""

    def pod(self, conditions: list[dict[str, Any]], cpu: str = "500m",
            observed: int | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {"conditions": conditions, "containerStatuses": [{
            "name": "function", "resources": {"requests": {"cpu": cpu}}}]}
        if observed is not None:
            status["observedGeneration"] = observed
        return {"status": status}

    def test_stale_pending_condition_is_ignored(self) -> None:
        stale = {"type": "PodResizePending", "status": "True", "reason": "Infeasible",
                 "observedGeneration": 2}
        assert _resize_state(self.pod([stale]), "function", 1000, 3)[0] == "in-progress"
        assert _resize_state(self.pod([stale]), "function", 1000, 2)[:2] == ("pending",
                                                                              "Infeasible")

    def test_status_of_an_older_generation_is_not_done(self) -> None:
        # the kubelet has not seen the new spec: the old allocation happens to match
        assert _resize_state(self.pod([], "1", observed=4), "function", 1000, 5)[0] == (
            "in-progress")
        assert _resize_state(self.pod([], "1", observed=5), "function", 1000, 5)[0] == "done"

    async def test_runtime_error_fails_fast(
        self, backend: KubernetesBackend, kubelet: TestKubelet
    ) -> None:
        kubelet.fail_resizes = True
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("e1"), spec(), Size(500, 256), NODE)
            t0 = asyncio.get_running_loop().time()
            with pytest.raises(ResizeRejectedError) as info:
                await backend.resize(PodId("e1"), 1000)
            assert info.value.reason == "Error"
            assert asyncio.get_running_loop().time() - t0 < 4  # not the 5 s resize timeout

    async def test_left_over_infeasible_does_not_answer_a_new_resize(
        self, backend: KubernetesBackend, kubelet: TestKubelet,
    ) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("g1"), spec(), Size(500, 256), NODE)
            name = pod_name_for("echo", "g1")
            # a PodResizePending left by an earlier resize (generation 1); the kubelet of
            # this node is slow to look at the new one
            kubelet.resize_delay_s = 1.0
            await kubelet._patch_status(NAMESPACE, name, {"conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"},
                {"type": "PodResizePending", "status": "True", "reason": "Infeasible",
                 "observedGeneration": 1, "message": "old"}]})
            await backend._refresh(backend._pods[PodId("g1")])
            await backend.resize(PodId("g1"), 1000)
        assert kubelet.applied_cpu[name] == 1000
