"""The whole path on the kubernetes backend: HTTP client -> gateway -> emulated API server ->
pod started by the test kubelet -> real worker, with in-place resizes between invocations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import kmock
from aiohttp.test_utils import TestClient, TestServer
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE, TestKubelet

from shabari.backends.registry import create_backend
from shabari.core import SLO, FunctionName, FunctionSpec, Size
from shabari.gateway.app import make_app
from shabari.gateway.cli import build_gateway, make_policy
from shabari.gateway.config import FunctionEntry


class TestGatewayOnKubernetes:
    async def test_invocations_flow_through_pods_and_resizes(
        self, k8s_api: tuple[kmock.KubernetesEmulator, str], kubelet: TestKubelet,
        function_dirs: dict[str, Path],
    ) -> None:
        _, url = k8s_api
        spec = FunctionSpec(name=FunctionName("echo"), slo=SLO(latency_ms=2000.0),
                            sizes=(Size(250, 256), Size(1000, 256), Size(2000, 256)))
        entries = {"echo": FunctionEntry(spec=spec, directory=function_dirs["echo"])}
        backend = create_backend("kubernetes", {
            "api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "image_prefix": "test/",
            "port": kubelet.port, "ready_timeout_s": 30, "poll_interval_s": 0.2,
        })
        gateway = build_gateway(entries, policy=make_policy("random", 7), backend=backend)
        async with asyncio.timeout(90), TestClient(TestServer(make_app(gateway))) as client:
            colds = []
            for i in range(8):
                resp = await client.post("/invoke/echo", data=f"n{i}".encode(),
                                         headers={"Content-Type": "text/plain"})
                body = await resp.read()
                assert resp.status == 200, body
                cpu = resp.headers["X-Shabari-Cpu-Millicores"]
                # the worker in the pod ran with the CPU the gateway decided for this call
                assert body == f"echo:n{i}:cpu={cpu}".encode()
                colds.append(resp.headers["X-Shabari-Cold-Start"])
            assert colds[0] == "true" and "false" in colds
            assert kubelet.resizes, "no warm pod was resized in place"
            assert kubelet.workers  # pods of the gateway run as real workers
