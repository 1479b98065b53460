"""Measure the kubernetes backend against the emulator + test kubelet (prints, asserts nothing).

    .venv/bin/python tests/cluster/measure_kubernetes.py [--resizes N] [--invokes N]

Cold start (pod create -> Ready with a real worker), in-place resize (PATCH pods/resize ->
confirmed in the pod status) and warm invocation latency to the pod IP. These are numbers of
the emulator path, dominated by the emulator's write latency and the test kubelet, not of a
real cluster: they bound the backend's own overhead, nothing more.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import kmock

sys.path.insert(0, str(Path(__file__).parent))
from cluster_fixtures import BACKEND_TOKEN, HANDLERS, NAMESPACE, TestKubelet, free_port
from strict_api import ADMIN_TOKEN, StrictApiServer, declare_core

from shabari.backends.kubernetes import KubernetesBackend
from shabari.core import SLO, FunctionName, FunctionSpec, NodeId, PodId, Size


def _q(xs: list[float], p: float) -> float:
    return sorted(xs)[int(p * (len(xs) - 1))]


async def measure(pods: int, resizes: int, invokes: int) -> None:
    fn_dir = Path(tempfile.mkdtemp()) / "echo"
    fn_dir.mkdir()
    (fn_dir / "handler.py").write_text(textwrap.dedent(HANDLERS["echo"]))
    spec = FunctionSpec(name=FunctionName("echo"), slo=SLO(latency_ms=1000.0),
                        sizes=(Size(500, 256), Size(1000, 256)))
    async with StrictApiServer(tokens={BACKEND_TOKEN, ADMIN_TOKEN}) as emulator, \
            kmock.Server(emulator) as server:
        declare_core(emulator)  # authenticated, validated: what the tests run against
        url = str(server.url).rstrip("/")
        async with TestKubelet(url, {"echo": fn_dir}, port=free_port()) as kubelet:
            backend = KubernetesBackend({
                "api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "image_prefix": "test/",
                "port": kubelet.port, "poll_interval_s": 0.05,
            })
            await backend.start()
            colds, resize_ms, invoke_ms = [], [], []
            for i in range(pods):
                handle = await backend.start_pod(PodId(f"p{i}"), spec, Size(500, 256),
                                                 NodeId("cluster"))
                colds.append(handle.cold_start_ms)
            for i in range(resizes):
                t0 = time.perf_counter()
                await backend.resize(PodId("p0"), 1000 if i % 2 == 0 else 500)
                resize_ms.append((time.perf_counter() - t0) * 1000.0)
            for _ in range(invokes):
                result = await backend.invoke(PodId("p0"), b"x", None, 10)
                invoke_ms.append(result.outcome.latency_ms)
            await backend.close()
    print(f"cold start (create -> Ready, real worker): median "
          f"{statistics.median(colds):.0f} ms over {len(colds)} pods")
    print(f"in-place resize (PATCH -> confirmed): p50 {_q(resize_ms, .5):.0f} ms, "
          f"p90 {_q(resize_ms, .9):.0f} ms over {len(resize_ms)}")
    print(f"warm invocation to the pod IP: p50 {_q(invoke_ms, .5):.1f} ms, "
          f"p99 {_q(invoke_ms, .99):.1f} ms over {len(invoke_ms)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--resizes", type=int, default=40)
    parser.add_argument("--invokes", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(measure(args.pods, args.resizes, args.invokes))


if __name__ == "__main__":
    main()
