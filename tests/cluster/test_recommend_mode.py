"""Recommend mode end to end on the kubernetes backend and the test kubelet.

The gateway decides and learns for every invocation, but each one runs in a pod of the
target's own size (limits cpu 2 / memory 1Gi: the derived grid's default size); the
recommendations, the estimated savings and the SLO effect appear in `GET /functions`, and the
operator's status code (`stats_from_gateway`) turns them into the policy's status.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import kmock
from aiohttp.test_utils import TestClient, TestServer
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE, TestKubelet

from shabari.backends.registry import create_backend
from shabari.core.specdict import spec_from_mapping
from shabari.gateway.app import make_app
from shabari.gateway.cli import build_gateway, make_policy
from shabari.gateway.config import FunctionEntry
from shabari.k8s import reconcile as rc
from shabari.k8s.sizing import DefaultSizes, derived_sizes, target_container


async def test_pods_keep_the_target_size_while_status_shows_recommendations(
    k8s_api: tuple[kmock.KubernetesEmulator, str], kubelet: TestKubelet,
    function_dirs: dict[str, Path],
) -> None:
    _, url = k8s_api
    # what the operator publishes for an SLO-only policy in Recommend mode on a Service
    # whose container has limits cpu 2 / memory 1Gi
    service = {"spec": {"template": {"spec": {"containers": [
        {"name": "user-container", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}]}}}}
    grid = derived_sizes(target_container(service), DefaultSizes())  # type: ignore[arg-type]
    spec = spec_from_mapping("echo", {**grid, "slo": {"latencyMs": 2000}, "mode": "Recommend"})
    assert spec.recommend_only and str(spec.safe_default) == "cpu=2000m,mem=1024Mi"
    entries = {"echo": FunctionEntry(spec=spec, directory=function_dirs["echo"])}
    backend = create_backend("kubernetes", {
        "api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "image_prefix": "test/",
        "port": kubelet.port, "ready_timeout_s": 30, "poll_interval_s": 0.2,
    })
    pods_before = set(kubelet.workers)
    resizes_before = len(kubelet.resizes)
    gateway = build_gateway(entries, policy=make_policy("shabari", 3), backend=backend)
    async with asyncio.timeout(120), TestClient(TestServer(make_app(gateway))) as client:
        recommended = []
        for i in range(12):
            resp = await client.post("/invoke/echo", data=f"input-{i}".encode(),
                                     headers={"Content-Type": "text/plain"})
            body = await resp.read()
            assert resp.status == 200, body
            # every invocation ran at the target's own size, in a pod of that size
            assert resp.headers["X-Shabari-Cpu-Millicores"] == "2000"
            assert resp.headers["X-Shabari-Memory-Mib"] == "1024"
            assert body.endswith(b":cpu=2000")
            recommended.append(resp.headers["X-Shabari-Recommended"])
        new_pods = set(kubelet.workers) - pods_before
        assert new_pods and all(kubelet.applied_cpu[p] == 2000 for p in new_pods)
        assert len(kubelet.resizes) == resizes_before  # nothing was resized either

        resp = await client.get("/functions")
        [entry] = [f for f in await resp.json() if f["name"] == "echo"]
        assert entry["mode"] == "Recommend"
        rec = entry["recommendation"]
        assert rec["invocations"] == 12 and rec["runSize"] == "cpu=2,mem=1Gi"
        # the outcomes at 2 vCPUs taught the model that this function needs far less
        assert rec["size"] != "cpu=2,mem=1Gi", recommended
        assert rec["estimatedSavingsFraction"] > 0.0
        assert rec["estimatedSavings"].startswith("cpu ")
        assert 0.0 <= rec["estimatedSloAttainment"] <= 1.0
        assert rec["observedSloAttainment"] == 1.0

        resp = await client.get("/metrics")
        text = await resp.text()
        assert 'shabari_recommended_savings_ratio{function="echo"}' in text

        # what the operator writes into the FunctionSizingPolicy's status
        status, cond = rc.stats_from_gateway([entry], "echo", 1)
        assert cond["status"] == "True"
        assert status["recommendation"]["size"] == rec["size"]
        assert status["recommendation"]["estimatedSavings"] == rec["estimatedSavings"]
