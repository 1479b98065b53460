"""A real client against the emulator: kubectl 1.35 applies the CRD and a policy, reads it back.

kubectl runs as a subprocess (asyncio, so the emulator in this event loop keeps serving);
`--validate=false` because the emulator serves no OpenAPI documents.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from k8s_emulator import FSP, Cluster

from shabari.devtools.k8sbin import ensure_tools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "shabari"


async def kubectl(cluster: Cluster, *args: str) -> str:
    tools = await asyncio.to_thread(ensure_tools, REPO / ".tools")
    proc = await asyncio.create_subprocess_exec(
        str(tools.kubectl), f"--kubeconfig={cluster.kubeconfig}", "--request-timeout=20s",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {err.decode()}"
    return out.decode()


class TestKubectl:
    async def test_apply_crd_and_policy_then_read_back(self, cluster: Cluster) -> None:
        crd = CHART / "crds" / "functionsizingpolicies.shabari.dev.yaml"
        out = await kubectl(cluster, "apply", "--validate=false", "-f", str(crd))
        assert "functionsizingpolicies.shabari.dev" in out
        stored_crd = cluster.get("apiextensions.k8s.io/v1/customresourcedefinitions", None,
                                 "functionsizingpolicies.shabari.dev")
        assert stored_crd is not None and stored_crd["spec"]["names"]["shortNames"] == ["fsp"]

        example = CHART / "examples" / "functionsizingpolicy.yaml"
        out = await kubectl(cluster, "apply", "--validate=false", "-f", str(example))
        assert "functionsizingpolicy.shabari.dev/thumbnail" in out
        stored = cluster.get(FSP, "default", "thumbnail")
        assert stored is not None and stored["spec"]["mode"] == "InPlace"

        read = json.loads(await kubectl(cluster, "get", "fsp", "thumbnail", "-n", "default",
                                        "-o", "json"))
        assert read["kind"] == "FunctionSizingPolicy"
        assert read["spec"]["sizes"]["cpu"] == ["250m", "500m", "1", "2"]
        assert read["spec"]["slo"] == {"slowdown": 1.5}

    async def test_get_fsp_prints_recommendation_columns(self, cluster: Cluster) -> None:
        """Server-side printing of the CRD's printer columns (as an API server does)."""
        crd = CHART / "crds" / "functionsizingpolicies.shabari.dev.yaml"
        await kubectl(cluster, "apply", "--validate=false", "-f", str(crd))
        example = CHART / "examples" / "functionsizingpolicy-recommend.yaml"
        await kubectl(cluster, "apply", "--validate=false", "-f", str(example))
        stored = cluster.get(FSP, "default", "thumbnail-recommend")
        assert stored is not None
        # what the operator writes from the gateway's /functions in Recommend mode
        status = {"invocations": 60, "sloAttainment": 0.97, "slo": "500ms",
                  "conditions": [{"type": "Ready", "status": "True"}],
                  "recommendation": {"size": "cpu=500m,mem=256Mi",
                                     "estimatedSavings": "cpu 62%, mem 75%"}}
        cluster.k.objects[FSP, "default", "thumbnail-recommend"].patch({"status": status})
        out = await kubectl(cluster, "get", "fsp", "-n", "default")
        header, row = out.splitlines()[0].split(), out.splitlines()[1]
        assert header[:9] == ["NAME", "TARGET", "SLO", "MODE", "INVOCATIONS", "SLO-ATTAINMENT",
                              "RECOMMENDED", "SAVINGS", "READY"]
        assert "cpu=500m,mem=256Mi" in row and "cpu 62%, mem 75%" in row
        assert row.split()[:4] == ["thumbnail-recommend", "thumbnail", "500ms", "Recommend"]
        wide = await kubectl(cluster, "get", "fsp", "-n", "default", "-o", "wide")
        assert "FUNCTION" in wide.splitlines()[0]
