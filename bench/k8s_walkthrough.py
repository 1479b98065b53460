"""The user guide's walkthrough, for real: docs/user-guide.md pastes what this prints.

    PYTHONPATH=. .venv/bin/python bench/k8s_walkthrough.py [--invocations N] [--out DIR]

Against the kmock Kubernetes emulator (tests/k8s/k8s_emulator.py) it runs the operator,
applies the CRD and a Deployment `thumbnail` (limits cpu 2 / memory 1Gi) annotated with one
SLO annotation plus `shabari.dev/mode: Recommend` with kubectl 1.35, serves the operator's
registry with a real gateway (local backend: the bundled thumbnail function's code, real
worker processes; the operator reads the gateway's statistics back), sends generated images,
shows `kubectl get fsp`, `shabari explain`, `shabari evaluate`, then switches the annotation
to InPlace, sends the same traffic again and evaluates alternatives on that log.
Not a test: it prints; the assertions live in tests/k8s, tests/cluster and tests/evaluation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "k8s"))
sys.path.insert(0, str(REPO / "functions" / "thumbnail"))
os.environ["SHABARI_STATS_INTERVAL_S"] = "1"
os.environ["SHABARI_RETRY_S"] = "1"

import aiohttp  # noqa: E402
import yaml  # noqa: E402

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: thumbnail
  namespace: default
  annotations:
    shabari.dev/slo-latency-ms: "300"
    shabari.dev/mode: Recommend
spec:
  selector: {matchLabels: {app: thumbnail}}
  template:
    metadata: {labels: {app: thumbnail}}
    spec:
      containers:
        - name: thumbnail
          image: ghcr.io/shabari/functions-thumbnail:0.1.0
          resources:
            limits: {cpu: "2", memory: 1Gi}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def show(title: str, text: str) -> None:
    print(f"\n$ {title}\n{text.rstrip()}", flush=True)


async def run_tool(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    out, _ = await proc.communicate()
    return out.decode()


async def main(n: int, out_dir: Path) -> None:
    import kmock
    from aiohttp import web
    from inputs import generate
    from k8s_emulator import (
        FSP,
        SYSTEM_NS,
        ApiServerEmulator,
        Cluster,
        declare_resources,
        running_operator,
        write_kubeconfig,
    )

    from shabari.agent import make_policy
    from shabari.devtools.k8sbin import ensure_tools
    from shabari.gateway.app import make_app
    from shabari.gateway.cli import build_gateway, make_backend
    from shabari.gateway.config import GatewayConfig, load_gateway_file

    tools = ensure_tools(REPO / ".tools")
    port = free_port()
    images = generate(1, n)
    out_dir.mkdir(parents=True, exist_ok=True)
    window = generate(2, 2 * n)  # the exploration window's traffic
    async with ApiServerEmulator() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator, knative=False)
        url = str(server.url).rstrip("/")
        kubeconfig = write_kubeconfig(out_dir / "kubeconfig", url)
        cluster = Cluster(emulator, url, kubeconfig)
        os.environ.update(KUBECONFIG=str(kubeconfig), SHABARI_NAMESPACE=SYSTEM_NS,
                          SHABARI_GATEWAY_URL=f"http://127.0.0.1:{port}")

        async def kubectl(*args: str, echo: bool = True) -> str:
            text = await run_tool(str(tools.kubectl), f"--kubeconfig={kubeconfig}", *args)
            if echo:
                show("kubectl " + " ".join(args), text)
            return text

        (out_dir / "thumbnail.yaml").write_text(DEPLOYMENT)
        crd = REPO / "charts/shabari/crds/functionsizingpolicies.shabari.dev.yaml"
        await kubectl("apply", "--validate=false", "-f", str(crd), echo=False)
        async with running_operator(cluster):
            await kubectl("apply", "--validate=false", "-f", str(out_dir / "thumbnail.yaml"))

            def registry() -> dict[str, Any]:
                cm = cluster.get("v1/configmaps", SYSTEM_NS, "shabari-functions")
                doc = yaml.safe_load(cm["data"]["functions.yaml"]) if cm else None
                return dict((doc or {}).get("functions") or {})

            await cluster.wait(lambda: "thumbnail" in registry(), 30, "published")
            await kubectl("get", "fsp", "thumbnail", "-o", "yaml")

            async def serve(state: Path, label: str, policy: str = "shabari",
                            traffic: list[tuple[bytes, str, str]] | None = None
                            ) -> dict[str, Any]:
                functions = registry()
                functions["thumbnail"]["directory"] = str(REPO / "functions" / "thumbnail")
                path = state / "functions.yaml"
                state.mkdir(parents=True, exist_ok=True)
                path.write_text(yaml.safe_dump({"functions": functions}))
                entries = load_gateway_file(path).functions
                gateway = build_gateway(
                    entries, policy=make_policy(policy, 1),
                    backend=make_backend("local", entries),
                    config=GatewayConfig(state_dir=state, checkpoint_interval_s=1.0))
                runner = web.AppRunner(make_app(gateway))
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", port).start()
                sizes: dict[str, int] = {}
                try:
                    async with aiohttp.ClientSession() as s:
                        for body, ctype, _ in traffic or images:
                            async with s.post(f"http://127.0.0.1:{port}/invoke/thumbnail",
                                              data=body, headers={"Content-Type": ctype}) as r:
                                await r.read()
                                key = r.headers.get("X-Shabari-Cpu-Millicores", "?")
                                sizes[key] = sizes.get(key, 0) + 1
                        async with s.get(f"http://127.0.0.1:{port}/functions") as r:
                            listed = await r.json()
                        await asyncio.sleep(3)  # the operator reads /functions every second
                        show(f"# {label}: {len(traffic or images)} invocations ran at CPU "
                             "millicores", json.dumps(
                            sizes, sort_keys=True))
                        body, ctype, _ = images[0]
                        async with s.post(
                                f"http://127.0.0.1:{port}/functions/thumbnail/explain",
                                data=body, headers={"Content-Type": ctype}) as r:
                            (state / "explain.json").write_text(await r.text())
                finally:
                    await runner.cleanup()
                return dict(next(f for f in listed if f["name"] == "thumbnail"))

            rec_state = out_dir / "recommend"
            entry = await serve(rec_state, "Recommend")
            show("curl -s $GATEWAY/functions | jq '.[0].recommendation'",
                 json.dumps(entry.get("recommendation"), indent=2))
            await cluster.wait(lambda: (cluster.get(FSP, "default", "thumbnail") or {}).get(
                "status", {}).get("recommendation"), 30, "recommendation in the status")
            await kubectl("get", "fsp")
            (out_dir / "input.jpg").write_bytes(images[0][0])
            show(f"shabari explain thumbnail --input input.jpg --content-type {images[0][1]} "
                 "--config functions.yaml --state-dir recommend",
                 await run_tool(sys.executable, "-m", "shabari.cli", "explain", "thumbnail",
                                "--input", str(out_dir / "input.jpg"), "--content-type",
                                images[0][1], "--config", str(rec_state / "functions.yaml"),
                                "--state-dir", str(rec_state)))
            show("shabari evaluate --log recommend/decisions.jsonl --policy recommended "
                 "--policy static-max",
                 await run_tool(sys.executable, "-m", "shabari.cli", "evaluate", "--log",
                                str(rec_state / "decisions.jsonl"), "--policy", "recommended",
                                "--policy", "static-max"))

            await kubectl("annotate", "deployment", "thumbnail", "shabari.dev/mode=InPlace",
                          "--overwrite")
            await cluster.wait(lambda: registry().get("thumbnail", {}).get("mode", "InPlace")
                               == "InPlace", 30, "InPlace published")
            ip_state = out_dir / "inplace"
            await serve(ip_state, "InPlace")
            await kubectl("get", "fsp")
            show("shabari explain thumbnail --input input.jpg --content-type "
                 f"{images[0][1]} --config functions.yaml --state-dir inplace",
                 await run_tool(sys.executable, "-m", "shabari.cli", "explain", "thumbnail",
                                "--input", str(out_dir / "input.jpg"), "--content-type",
                                images[0][1], "--config", str(ip_state / "functions.yaml"),
                                "--state-dir", str(ip_state)))
            policies = ["--policy", "static-max", "--policy", "cpu=1", "--policy", "cpu=500m",
                        "--policy", "cpu=250m"]
            show("shabari evaluate --log inplace/decisions.jsonl --config functions.yaml "
                 + " ".join(policies),
                 await run_tool(sys.executable, "-m", "shabari.cli", "evaluate", "--log",
                                str(ip_state / "decisions.jsonl"), "--config",
                                str(ip_state / "functions.yaml"), *policies))
            # an exploration window: the gateway's `random` policy on the same traffic
            rnd_state = out_dir / "random"
            await serve(rnd_state, "random (an exploration window)", policy="random",
                        traffic=window)
            show("shabari evaluate --log random/decisions.jsonl --config functions.yaml "
                 + " ".join(policies),
                 await run_tool(sys.executable, "-m", "shabari.cli", "evaluate", "--log",
                                str(rnd_state / "decisions.jsonl"), "--config",
                                str(rnd_state / "functions.yaml"), *policies))
            learned = ["--policy", "shabari", "--policy", "shabari:enabled=false",
                       "--policy", "cpu=250m", "--policy", "cpu=1"]
            show("shabari evaluate --log random/decisions.jsonl --config functions.yaml "
                 "--state-dir inplace " + " ".join(learned),
                 await run_tool(sys.executable, "-m", "shabari.cli", "evaluate", "--log",
                                str(rnd_state / "decisions.jsonl"), "--config",
                                str(ip_state / "functions.yaml"), "--state-dir",
                                str(ip_state), *learned))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=80)
    parser.add_argument("--out", default=None, help="where to keep the state (default: tmp)")
    a = parser.parse_args()
    asyncio.run(main(a.invocations, Path(a.out or tempfile.mkdtemp(prefix="shabari-walk-"))))
