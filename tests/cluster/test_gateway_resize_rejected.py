"""A rejected in-place resize on the kubernetes backend: the pod stays, the invocation goes on.

The test kubelet answers a resize beyond its node's CPU with `PodResizePending: Infeasible`,
while the gateway's scheduler believes the node is larger (the `nodes` option): exactly the
disagreement a real cluster produces when something else took the node's CPU. The gateway
must keep the pod (still usable at its old size), run the invocation elsewhere (here: a cold
start of the decided size) and later reuse the kept pod warm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import kmock
from aiohttp.test_utils import TestClient, TestServer
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE, TestKubelet, free_port

from shabari.backends.kubernetes import pod_name_for
from shabari.backends.registry import create_backend
from shabari.core import (
    SLO,
    Decision,
    DecisionContext,
    DecisionId,
    FunctionName,
    FunctionSpec,
    Outcome,
    Size,
)
from shabari.gateway.app import make_app
from shabari.gateway.cli import build_gateway
from shabari.gateway.config import FunctionEntry

SMALL = Size(250, 256)
BIG = Size(2000, 256)


class ScriptedPolicy:
    """Decides the given sizes in order (the test needs a small pod, then a resize up)."""

    name = "scripted"

    def __init__(self, sizes: Sequence[Size]) -> None:
        self.sizes = list(sizes)
        self.n = 0
        self.learned: list[tuple[Size, Outcome]] = []

    def decide(self, ctx: DecisionContext) -> Decision:
        size = self.sizes[self.n]
        self.n += 1
        return Decision(DecisionId(f"d{self.n}"), ctx.spec.name, size,
                        ctx.spec.sizes.index(size), 1.0, 0, "scripted", policy=self.name)

    def learn(self, ctx: DecisionContext, decision: Decision, outcome: Outcome) -> None:
        self.learned.append((decision.size, outcome))


class TestResizeRejected:
    async def test_infeasible_resize_keeps_pod_and_cold_starts_decided_size(
        self, k8s_api: tuple[kmock.KubernetesEmulator, str], function_dirs: dict[str, Path],
    ) -> None:
        emulator, url = k8s_api
        spec = FunctionSpec(name=FunctionName("echo"), slo=SLO(latency_ms=5000.0),
                            sizes=(SMALL, BIG))
        entries = {"echo": FunctionEntry(spec=spec, directory=function_dirs["echo"])}
        policy = ScriptedPolicy([SMALL, BIG, SMALL])
        async with TestKubelet(url, function_dirs, port=free_port(),
                               node_cpu_millicores=1000) as kubelet:
            backend = create_backend("kubernetes", {
                "api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "image_prefix": "test/",
                "port": kubelet.port, "ready_timeout_s": 30, "poll_interval_s": 0.1,
                "resize_timeout_s": 10,
                # the scheduler's view: room for 2 CPUs; the kubelet's node: 1 CPU
                "nodes": [{"name": "n1", "cpu": "4", "memory": "8Gi"}],
            })
            gateway = build_gateway(entries, policy=policy, backend=backend)
            async with asyncio.timeout(120), TestClient(TestServer(make_app(gateway))) as client:
                async def call(i: int) -> dict[str, str]:
                    resp = await client.post("/invoke/echo", data=f"n{i}".encode(),
                                             headers={"Content-Type": "text/plain"})
                    body = await resp.read()
                    assert resp.status == 200, body
                    cpu = resp.headers["X-Shabari-Cpu-Millicores"]
                    assert body == f"echo:n{i}:cpu={cpu}".encode()
                    return dict(resp.headers)

                first = await call(1)
                assert first["X-Shabari-Placement"] == "cold"
                (small_pod,) = [p.pod_id for p in gateway.scheduler.pods()]

                # resize of the idle 250m pod to 2 CPUs: Infeasible on this node
                second = await call(2)
                assert second["X-Shabari-Cpu-Millicores"] == "2000"
                assert second["X-Shabari-Placement"] == "cold"
                assert second["X-Shabari-Pod-Size"].startswith("2000m")
                assert not kubelet.resizes  # nothing was resized

                # the rejected pod is kept, idle at its real size, and still exists
                pods = {p.pod_id: p for p in gateway.scheduler.pods()}
                assert len(pods) == 2
                kept = pods[small_pod]
                assert kept.size == SMALL and not kept.busy
                name = pod_name_for("echo", small_pod)
                assert not emulator.objects["v1/pods", NAMESPACE, name].deleted

                # and serves the next small invocation warm, without any resize
                third = await call(3)
                assert third["X-Shabari-Placement"] == "warm"
                assert third["X-Shabari-Cold-Start"] == "false"
                assert third["X-Shabari-Pod-Size"].startswith("250m")

                metrics = (await (await client.get("/metrics")).read()).decode()
                assert ('shabari_resizes_rejected_total{function="echo",reason="Infeasible"} '
                        '1.0') in metrics
            # every invocation ran, so each one was learned from
            assert [s for s, _ in policy.learned] == [SMALL, BIG, SMALL]
