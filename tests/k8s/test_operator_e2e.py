"""The operator end to end: kopf against kmock's KubernetesEmulator over HTTP.

Policies and annotated workloads are written through the emulator's HTTP API (as kubectl
would), and the assertions read what the operator wrote back: status, derived policies,
the gateway registry ConfigMap, Knative variants, resize policies and Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from k8s_emulator import (
    CONFIGMAPS,
    DEPLOY,
    FSP,
    KCONFIG,
    KROUTE,
    KSVC,
    SYSTEM_NS,
    Cluster,
    running_operator,
)

NS = "default"


def policy(name: str, target: str, mode: str = "Variants", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": target},
        "mode": mode,
        "slo": {"latencyMs": 200},
        "sizes": {"cpu": ["250m", "1"], "memory": ["256Mi", "1Gi"]},
    }
    body.update(spec)
    return {"apiVersion": "shabari.dev/v1alpha1", "kind": "FunctionSizingPolicy",
            "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": f"uid-{name}"},
            "spec": body}


def knative_service(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                         "annotations": annotations or {}},
            "spec": {"template": {"metadata": {"name": f"{name}-00001"},
                                  "spec": {"containers": [{"name": "user-container",
                                                           "image": "example/fn:1"}]}}}}


def deployment(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                         "annotations": annotations or {}},
            "spec": {"template": {"spec": {"containers": [{"name": "fn", "image": "x:1"},
                                                          {"name": "sidecar", "image": "y:1"}]}}}}


def _path(resource: str, name: str | None = None) -> str:
    group_version, _, plural = resource.rpartition("/")
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{NS}/{plural}" + (f"/{name}" if name else "")


async def api(cluster: Cluster, method: str, resource: str, name: str | None = None,
              body: Any = None) -> Any:
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    async with aiohttp.ClientSession() as s, s.request(
        method, cluster.url + _path(resource, name), json=body, headers=headers
    ) as rsp:
        assert rsp.status < 300, await rsp.text()
        return await rsp.json()


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return dict(c)
    return {}


def registry(cluster: Cluster) -> dict[str, Any]:
    cm = cluster.get(CONFIGMAPS, SYSTEM_NS, "shabari-functions")
    if cm is None:
        return {}
    return dict(yaml.safe_load(cm["data"]["functions.yaml"])["functions"] or {})


class TestPolicies:
    async def test_create_publishes_prepares_and_reports(self, operator: Cluster) -> None:
        await api(operator, "POST", DEPLOY, body=deployment("resize"))
        body = policy("resize-policy", "resize", mode="InPlace")
        body["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "resize"}
        await api(operator, "POST", FSP, body=body)
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "resize-policy"))
            and condition(p, "Ready").get("status") == "True" and p, what="Ready=True")
        status = fsp["status"]
        assert status["function"] == "resize"
        assert status["slo"] == "200ms"
        assert status["observedGeneration"] == 1
        assert status["allocation"]["gridSizes"] == 4
        assert condition(fsp, "PlatformReady")["reason"] == "InPlaceByGateway"
        assert condition(fsp, "GatewayStats")["reason"] == "GatewayNotConfigured"
        entry = registry(operator)["resize"]
        assert entry["slo"] == {"latencyMs": 200.0}
        assert entry["sizes"]["cpu"] == ["250m", "1"]
        target = operator.get(DEPLOY, NS, "resize")
        assert target is not None
        # never patched: the gateway resizes pods of its own (a patch would restart them all)
        assert target["spec"] == deployment("resize")["spec"]
        assert "status" not in target

    async def test_inplace_on_a_knative_service_is_refused_loudly(
        self, operator: Cluster
    ) -> None:
        await api(operator, "POST", KSVC, body=knative_service("kn"))
        await api(operator, "POST", FSP, body=policy("kn-policy", "kn", mode="InPlace"))
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "kn-policy"))
            and condition(p, "PlatformReady").get("status") == "False" and p,
            what="PlatformReady=False")
        assert condition(fsp, "PlatformReady")["reason"] == "InPlaceUnsupportedOnKnative"
        assert condition(fsp, "Ready")["status"] == "False"
        await operator.wait(lambda: operator.events("InPlaceUnsupportedOnKnative"),
                            what="a Warning Event")
        svc = operator.get(KSVC, NS, "kn")
        assert svc is not None and svc["spec"] == knative_service("kn")["spec"]

    async def test_variants_then_update_then_delete(self, operator: Cluster) -> None:
        await api(operator, "POST", KSVC, body=knative_service("thumb"))
        await api(operator, "POST", FSP, body=policy("thumb", "thumb", mode="Variants"))
        await operator.wait(lambda: len(operator.names(KCONFIG, NS)) == 4, what="4 variants")
        route = await operator.wait(lambda: operator.get(KROUTE, NS, "thumb-shabari"))
        traffic = route["spec"]["traffic"]
        assert sorted(t["tag"] for t in traffic) == sorted(
            ["cpu250m-mem256mi", "cpu250m-mem1024mi", "cpu1000m-mem256mi",
             "cpu1000m-mem1024mi"])
        assert sum(t["percent"] for t in traffic) == 100
        config = operator.get(KCONFIG, NS, "thumb-cpu250m-mem256mi")
        assert config is not None
        container = config["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"] == {"cpu": "250m", "memory": "256Mi"}
        assert config["metadata"]["ownerReferences"][0]["name"] == "thumb"

        # shrink the grid: the stale variants go, the registry follows
        await api(operator, "PATCH", FSP, "thumb", {
            "metadata": {"generation": 2},
            "spec": {"sizes": {"cpu": ["500m"], "memory": ["512Mi"]}}})
        await operator.wait(lambda: operator.names(KCONFIG, NS) == {"thumb-cpu500m-mem512mi"},
                            what="variants follow the new grid")
        await operator.wait(lambda: registry(operator).get("thumb", {}).get("sizes", {}).get(
            "cpu") == ["500m"], what="registry updated")
        await operator.wait(lambda: (operator.get(FSP, NS, "thumb") or {}).get(
            "status", {}).get("observedGeneration") == 2, what="observedGeneration 2")

        # retarget: the registry entry follows the function's new name
        await api(operator, "POST", KSVC, body=knative_service("thumb2"))
        await api(operator, "PATCH", FSP, "thumb", {"spec": {"targetRef": {"name": "thumb2"}}})
        await operator.wait(lambda: "thumb2" in registry(operator)
                            and "thumb" not in registry(operator), what="entry renamed")
        await operator.wait(lambda: operator.get(KROUTE, NS, "thumb2-shabari") is not None
                            and operator.get(KROUTE, NS, "thumb-shabari") is None,
                            what="route follows the target")

        await api(operator, "DELETE", FSP, "thumb")
        await operator.wait(lambda: operator.get(FSP, NS, "thumb") is None, what="deleted")
        await operator.wait(lambda: "thumb2" not in registry(operator), what="unpublished")
        assert operator.names(KCONFIG, NS) == set()
        assert operator.get(KROUTE, NS, "thumb2-shabari") is None

    async def test_invalid_spec_gives_event_and_condition(self, operator: Cluster) -> None:
        bad = policy("bad", "nothing", sizes={"cpu": ["2x"], "memory": ["256Mi"]})
        await api(operator, "POST", FSP, body=bad)
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "bad")) and condition(p, "SpecValid") and p,
            what="SpecValid condition")
        spec_valid = condition(fsp, "SpecValid")
        assert spec_valid["status"] == "False"
        assert spec_valid["reason"] == "InvalidSpec"
        assert "sizes.cpu[0]" in spec_valid["message"]
        assert condition(fsp, "Ready")["status"] == "False"
        events = await operator.wait(lambda: operator.events("InvalidSpec"), what="an Event")
        assert "sizes.cpu[0]" in events[0]["message"]
        assert events[0]["type"] == "Warning"
        assert "bad" not in registry(operator) and "nothing" not in registry(operator)

    async def test_missing_target_is_reported_not_fatal(self, operator: Cluster) -> None:
        await api(operator, "POST", FSP, body=policy("lonely", "ghost"))
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "lonely")) and condition(p, "PlatformReady")
            and p, what="PlatformReady")
        assert condition(fsp, "PlatformReady")["reason"] == "TargetNotFound"
        assert condition(fsp, "Ready")["status"] == "False"
        # the target appears later: the policy is retried and becomes Ready
        await api(operator, "POST", KSVC, body=knative_service("ghost"))
        await operator.wait(lambda: condition(operator.get(FSP, NS, "lonely"), "Ready").get(
            "status") == "True", what="Ready once the target exists")


class TestAnnotations:
    async def test_annotated_service_gets_a_derived_policy(self, operator: Cluster) -> None:
        annotations = {"shabari.dev/slo-latency-ms": "300",
                       "shabari.dev/sizes": "cpu=250m,500m,1,2;memory=256Mi,512Mi,1Gi"}
        await api(operator, "POST", KSVC, body=knative_service("annotated", annotations))
        fsp = await operator.wait(lambda: operator.get(FSP, NS, "annotated"),
                                  what="derived policy")
        assert fsp["metadata"]["labels"]["shabari.dev/derived-from"] == "annotated"
        owner = fsp["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Service", "annotated",
                                                                "uid-annotated")
        assert fsp["spec"]["sizes"]["cpu"] == ["250m", "500m", "1", "2"]
        await operator.wait(lambda: condition(operator.get(FSP, NS, "annotated"), "Ready").get(
            "status") == "True", what="derived policy Ready")
        assert registry(operator)["annotated"]["slo"] == {"latencyMs": 300.0}

        # change the annotation: the derived policy follows
        await api(operator, "PATCH", KSVC, "annotated", {"metadata": {"annotations": {
            "shabari.dev/slo-latency-ms": "150"}}})
        await operator.wait(lambda: registry(operator).get("annotated", {}).get("slo") == {
            "latencyMs": 150.0}, what="registry follows the annotation")

        # remove the annotations: the derived policy goes away
        await api(operator, "PATCH", KSVC, "annotated", {"metadata": {"annotations": {
            "shabari.dev/slo-latency-ms": None, "shabari.dev/sizes": None}}})
        await operator.wait(lambda: operator.get(FSP, NS, "annotated") is None,
                            what="derived policy removed")
        await operator.wait(lambda: "annotated" not in registry(operator), what="unpublished")

    async def test_invalid_annotation_event_and_condition(self, operator: Cluster) -> None:
        annotations = {"shabari.dev/sizes": "cpu=250m,2x;memory=256Mi",
                       "shabari.dev/slo-latency-ms": "100"}
        await api(operator, "POST", DEPLOY, body=deployment("broken", annotations))
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "broken")) and condition(p, "SpecValid") and p,
            what="derived policy with a condition")
        cond = condition(fsp, "SpecValid")
        assert (cond["status"], cond["reason"]) == ("False", "InvalidAnnotations")
        assert cond["message"].startswith("shabari.dev/sizes: sizes.cpu[1]")
        assert fsp["spec"]["mode"] == "Off"
        events = await operator.wait(lambda: [
            e for e in operator.events("InvalidAnnotations")
            if e["involvedObject"]["name"] == "broken"], what="an Event on the Deployment")
        assert events[0]["involvedObject"]["kind"] == "Deployment"
        assert "broken" not in registry(operator)

        # fixing the annotation heals the policy
        await api(operator, "PATCH", DEPLOY, "broken", {"metadata": {"annotations": {
            "shabari.dev/sizes": "cpu=250m,2;memory=256Mi"}}})
        await operator.wait(lambda: condition(operator.get(FSP, NS, "broken"), "Ready").get(
            "status") == "True", what="healed")
        deploy = operator.get(DEPLOY, NS, "broken")
        assert deploy is not None
        for c in deploy["spec"]["template"]["spec"]["containers"]:
            assert "resizePolicy" not in c  # InPlace leaves the Deployment unchanged

    async def test_deleting_the_workload_removes_its_policy(self, operator: Cluster) -> None:
        annotations = {"shabari.dev/slo-slowdown": "1.5",
                       "shabari.dev/sizes": "cpu=1;memory=1Gi"}
        await api(operator, "POST", DEPLOY, body=deployment("gone", annotations))
        await operator.wait(lambda: operator.get(FSP, NS, "gone"), what="derived")
        await api(operator, "DELETE", DEPLOY, "gone")
        await operator.wait(lambda: operator.get(FSP, NS, "gone") is None, what="removed")

    async def test_unannotated_workloads_are_left_alone(self, operator: Cluster) -> None:
        await api(operator, "POST", DEPLOY, body=deployment("plain"))
        await api(operator, "POST", KSVC, body=knative_service("marker", {
            "shabari.dev/sizes": "cpu=1;memory=1Gi"}))
        await operator.wait(lambda: operator.get(FSP, NS, "marker"), what="marker derived")
        assert operator.get(FSP, NS, "plain") is None
        plain = operator.get(DEPLOY, NS, "plain")
        assert plain is not None and "resizePolicy" not in plain["spec"]["template"]["spec"][
            "containers"][0]


class TestGatewayStatistics:
    async def test_status_reads_gateway_functions(self, cluster: Cluster, operator_env: None,
                                                  monkeypatch: Any, unused_tcp_port: int
                                                  ) -> None:
        async def functions(_: web.Request) -> web.Response:
            return web.json_response([{"name": "stats", "slo": {"latencyMs": 200},
                                       "sizes": [], "stats": {"invocations": 40,
                                                              "slo_violations": 2,
                                                              "slo_attainment": 0.95}}])

        app = web.Application()
        app.router.add_get("/functions", functions)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", unused_tcp_port)
        await site.start()
        monkeypatch.setenv("SHABARI_GATEWAY_URL", f"http://127.0.0.1:{unused_tcp_port}")
        try:
            async with running_operator(cluster):
                await api(cluster, "POST", KSVC, body=knative_service("stats"))
                await api(cluster, "POST", FSP, body=policy("stats", "stats"))
                fsp = await cluster.wait(
                    lambda: (p := cluster.get(FSP, NS, "stats"))
                    and p.get("status", {}).get("invocations") == 40 and p,
                    what="invocations from the gateway")
                assert fsp["status"]["sloAttainment"] == 0.95
                assert fsp["status"]["sloViolations"] == 2
                assert condition(fsp, "GatewayStats")["status"] == "True"
        finally:
            await runner.cleanup()

    async def test_unreachable_gateway_is_a_condition(self, cluster: Cluster,
                                                      operator_env: None, monkeypatch: Any,
                                                      unused_tcp_port: int) -> None:
        monkeypatch.setenv("SHABARI_GATEWAY_URL", f"http://127.0.0.1:{unused_tcp_port}")
        async with running_operator(cluster):
            await api(cluster, "POST", KSVC, body=knative_service("down"))
            await api(cluster, "POST", FSP, body=policy("down", "down"))
            fsp = await cluster.wait(
                lambda: (p := cluster.get(FSP, NS, "down"))
                and condition(p, "GatewayStats").get("reason") == "GatewayUnreachable"
                and condition(p, "Ready") and p, what="GatewayUnreachable")
            assert condition(fsp, "Ready")["status"] == "True"  # stats do not gate readiness


class TestShabariOperatorCommand:
    async def test_cli_process_reconciles_and_stops_on_sigterm(self, cluster: Cluster,
                                                               tmp_path: Path) -> None:
        """`shabari operator` as a real process: kubeconfig login, reconcile, clean exit."""
        shabari = Path(sys.executable).with_name("shabari")
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
               "SHABARI_NAMESPACE": SYSTEM_NS, "SHABARI_STATS_INTERVAL_S": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env.pop("SHABARI_GATEWAY_URL", None)
        log = (tmp_path / "operator.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            str(shabari), "operator", "--", "--standalone", "--quiet", env=env,
            stdout=log, stderr=asyncio.subprocess.STDOUT)
        try:
            await api(cluster, "POST", KSVC, body=knative_service("cli"))
            await api(cluster, "POST", FSP, body=policy("cli", "cli"))
            await cluster.wait(lambda: condition(cluster.get(FSP, NS, "cli"), "Ready").get(
                "status") == "True", timeout=30, what="Ready from the CLI process")
            assert "cli" in registry(cluster)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), timeout=30)
            log.close()
        assert rc == 0, (tmp_path / "operator.log").read_text()


class TestIdempotency:
    async def test_restarted_operator_rewrites_nothing(self, cluster: Cluster,
                                                       operator_env: None) -> None:
        """Resume handlers on a reconciled cluster leave workloads, variants and registry alone."""
        async with running_operator(cluster):
            await api(cluster, "POST", KSVC, body=knative_service("idem"))
            await api(cluster, "POST", FSP, body=policy("idem", "idem", mode="Variants"))
            await api(cluster, "POST", DEPLOY, body=deployment("idem-deploy", {
                "shabari.dev/sizes": "cpu=1;memory=1Gi"}))
            await cluster.wait(lambda: condition(cluster.get(FSP, NS, "idem"), "Ready").get(
                "status") == "True", what="Variants ready")
            await cluster.wait(lambda: condition(cluster.get(FSP, NS, "idem-deploy"),
                                                 "Ready").get("status") == "True",
                               what="derived policy ready")

        def versions() -> dict[str, str]:
            out = {}
            for (res, ns, name), obj in cluster.k.objects.items():
                if not obj.deleted and res.plural not in {"events", "functionsizingpolicies"}:
                    out[f"{res.plural}/{ns}/{name}"] = obj.raw["metadata"]["resourceVersion"]
            return out

        before = versions()
        assert "configmaps/shabari-system/shabari-functions" in before
        assert sum(k.startswith("configurations/") for k in before) == 4
        policy_version = cluster.get(FSP, NS, "idem")["metadata"]["resourceVersion"]  # type: ignore[index]
        async with running_operator(cluster):
            # the resumed reconciliation re-writes the policy's status, and only that
            await cluster.wait(lambda: (cluster.get(FSP, NS, "idem") or {}).get(
                "metadata", {}).get("resourceVersion") != policy_version, what="resumed")
        assert versions() == before


class TestWithoutKnative:
    @pytest.mark.parametrize("cluster", [False], ids=["no-knative"], indirect=True)
    async def test_deployments_only_cluster(self, operator: Cluster) -> None:
        """kopf keeps running when the Knative CRDs are absent; Deployments still work."""
        await api(operator, "POST", DEPLOY, body=deployment("plain-app", {
            "shabari.dev/sizes": "cpu=1;memory=1Gi", "shabari.dev/slo-slowdown": "2"}))
        await operator.wait(lambda: condition(operator.get(FSP, NS, "plain-app"), "Ready").get(
            "status") == "True", what="derived policy Ready without Knative")
        assert "plain-app" in registry(operator)


# --------------------------------------------------------------------------- issue 15


def _ns_path(resource: str, namespace: str, name: str | None = None) -> str:
    group_version, _, plural = resource.rpartition("/")
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


async def api_in(cluster: Cluster, namespace: str, method: str, resource: str,
                 body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(
        method, cluster.url + _ns_path(resource, namespace), json=body) as rsp:
        assert rsp.status < 300, await rsp.text()
        return await rsp.json()


def limited_service(name: str, namespace: str, annotations: dict[str, str],
                    limits: dict[str, str] | None = None) -> dict[str, Any]:
    body = knative_service(name, annotations)
    body["metadata"]["namespace"] = namespace
    body["metadata"]["uid"] = f"uid-{namespace}-{name}"
    if limits is not None:
        body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": limits}
    return body


class TestOneAnnotationIsEnough:
    async def test_slo_only_service_gets_a_grid_up_to_its_limits(self, operator: Cluster
                                                                 ) -> None:
        await api(operator, "POST", KSVC, body=limited_service(
            "slim", NS, {"shabari.dev/slo-latency-ms": "500"}, {"cpu": "2", "memory": "1Gi"}))
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "slim"))
            and condition(p, "Ready").get("status") == "True" and p, what="Ready")
        assert "sizes" not in fsp["spec"] and "resourcePolicy" not in fsp["spec"]
        assert condition(fsp, "SpecValid")["reason"] == "Valid"
        allocation = fsp["status"]["allocation"]
        assert (allocation["maxCpu"], allocation["maxMemory"]) == ("2", "1Gi")
        assert (allocation["minCpu"], allocation["minMemory"]) == ("250m", "128Mi")
        assert allocation["defaultSize"] == "cpu=2000m,mem=1024Mi"  # the container's own size
        entry = registry(operator)["slim"]
        assert entry["sizes"]["cpu"] == ["250m", "500m", "1", "2"]
        assert entry["sizes"]["memory"] == ["128Mi", "256Mi", "512Mi", "1Gi"]
        assert entry["slo"] == {"latencyMs": 500.0}

        # raising the limit raises the grid's top: the derived grid follows the container
        await api(operator, "PATCH", KSVC, "slim", {"spec": {"template": {"spec": {
            "containers": [{"name": "user-container", "image": "example/fn:1",
                            "resources": {"limits": {"cpu": "4", "memory": "1Gi"}}}]}}}})
        await operator.wait(lambda: registry(operator).get("slim", {}).get("sizes", {}).get(
            "cpu", [])[-1:] == ["4"], what="grid follows the new limit")

    async def test_invalid_slo_value_gives_event_and_condition(self, operator: Cluster
                                                               ) -> None:
        await api(operator, "POST", KSVC, body=limited_service(
            "typo", NS, {"shabari.dev/slo-latency-ms": "fast"}, {"cpu": "2", "memory": "1Gi"}))
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "typo")) and condition(p, "SpecValid") and p,
            what="SpecValid condition")
        cond = condition(fsp, "SpecValid")
        assert (cond["status"], cond["reason"]) == ("False", "InvalidAnnotations")
        assert cond["message"].startswith("shabari.dev/slo-latency-ms: slo.latencyMs")
        events = await operator.wait(lambda: [
            e for e in operator.events("InvalidAnnotations")
            if e["involvedObject"]["name"] == "typo"], what="a Warning Event")
        assert events[0]["type"] == "Warning" and "must be a number" in events[0]["message"]
        assert "typo" not in registry(operator)

    async def test_policy_without_sizes_waits_for_its_target(self, operator: Cluster) -> None:
        body = policy("later", "later")
        del body["spec"]["sizes"]
        await api(operator, "POST", FSP, body=body)
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "later")) and condition(p, "SpecValid") and p,
            what="SizesPending")
        assert condition(fsp, "SpecValid")["reason"] == "SizesPending"
        assert not operator.events("InvalidSpec")  # waiting for a target is not an error
        await api(operator, "POST", KSVC, body=limited_service(
            "later", NS, {}, {"cpu": "1", "memory": "512Mi"}))
        await operator.wait(lambda: registry(operator).get("later", {}).get("sizes", {}).get(
            "cpu") == ["250m", "500m", "1"], what="grid derived once the target exists")


class TestNamespacedFunctions:
    async def test_same_name_in_two_namespaces_is_two_functions(
            self, operator: Cluster, tmp_path: Path) -> None:
        for namespace in (NS, "team-b"):
            await api_in(operator, namespace, "POST", KSVC, limited_service(
                "thumb", namespace, {}, {"cpu": "1", "memory": "512Mi"}))
            body = policy("thumb", "thumb")
            body["metadata"]["namespace"] = namespace
            body["metadata"]["uid"] = f"uid-{namespace}-thumb"  # distinct objects, as a server
            body["spec"]["slo"] = {"latencyMs": 100 if namespace == NS else 900}
            await api_in(operator, namespace, "POST", FSP, body)
        await operator.wait(lambda: {"thumb", "thumb--team-b"} <= set(registry(operator)),
                            what="two registry entries")
        functions = registry(operator)
        assert functions["thumb"]["slo"] == {"latencyMs": 100.0}
        assert functions["thumb--team-b"]["slo"] == {"latencyMs": 900.0}
        assert (functions["thumb--team-b"]["namespace"],
                functions["thumb--team-b"]["target"]) == ("team-b", "thumb")
        fsp = await operator.wait(lambda: (p := operator.get(FSP, "team-b", "thumb"))
                                  and p.get("status", {}).get("function") and p)
        assert fsp["status"]["function"] == "thumb--team-b"

        # the gateway serving that registry has both, each at its own URL
        await _serve_registry(operator, tmp_path)

        # deleting one leaves the other
        async with aiohttp.ClientSession() as s, s.delete(
                operator.url + _ns_path(FSP, "team-b") + "/thumb") as rsp:
            assert rsp.status < 300
        await operator.wait(lambda: "thumb--team-b" not in registry(operator)
                            and "thumb" in registry(operator), what="only team-b unpublished")


@contextlib.asynccontextmanager
async def registry_gateway(cluster: Cluster, tmp_path: Path, policy: str,
                           port: int | None = None) -> AsyncIterator[Any]:
    """A real gateway (local backend) serving the operator's registry document.

    The local backend runs processes, not images: each entry gets the gateway tests' probe
    function as its code and the json featurizer; names, SLOs, grids and modes are the
    operator's. Yields the started aiohttp TestServer.
    """
    from aiohttp.test_utils import TestServer

    from shabari.agent import make_policy
    from shabari.gateway.app import make_app
    from shabari.gateway.cli import build_gateway, make_backend
    from shabari.gateway.config import load_gateway_file

    probe = Path(__file__).resolve().parents[1] / "gateway" / "functions" / "probe"
    doc = {"functions": registry(cluster)}
    for entry in doc["functions"].values():
        entry["directory"] = str(probe)
        entry["featurizer"] = {"type": "json", "options": {}}
    path = tmp_path / "functions.yaml"
    path.write_text(yaml.safe_dump(doc))
    entries = load_gateway_file(path).functions
    gateway = build_gateway(entries, policy=make_policy(policy, 2),
                            backend=make_backend("local", entries))
    server = TestServer(make_app(gateway), port=port)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def _serve_registry(cluster: Cluster, tmp_path: Path) -> None:
    """Both namespaces' functions at the gateway, each at its own URL with its own SLO."""
    async with registry_gateway(cluster, tmp_path, "static-default") as server, \
            aiohttp.ClientSession() as s:
        async with s.get(server.make_url("/functions")) as rsp:
            names = {f["name"] for f in await rsp.json()}
        assert {"thumb", "thumb--team-b"} <= names
        async with s.post(server.make_url("/invoke/thumb--team-b"), data=b'{"ms": 1}',
                          headers={"Content-Type": "application/json"}) as rsp:
            assert rsp.status == 200, await rsp.text()
            assert rsp.headers["X-Shabari-Slo-Ms"] == "900.000"


class TestRecommendMode:
    async def test_status_shows_what_the_gateway_would_choose(
            self, cluster: Cluster, operator_env: None, monkeypatch: Any,
            unused_tcp_port: int, tmp_path: Path) -> None:
        """Recommend end to end: annotation -> derived policy -> registry -> a real gateway
        (local backend, probe code) that runs every invocation at the container's own size ->
        the operator copies the recommendation into the status."""
        monkeypatch.setenv("SHABARI_GATEWAY_URL", f"http://127.0.0.1:{unused_tcp_port}")
        body = deployment("probe", {"shabari.dev/slo-latency-ms": "2000",
                                    "shabari.dev/mode": "Recommend"})
        body["spec"]["template"]["spec"]["containers"] = [
            {"name": "fn", "image": "x:1", "resources": {"limits": {"cpu": "1",
                                                                     "memory": "512Mi"}}}]
        async with running_operator(cluster):
            await api(cluster, "POST", DEPLOY, body=body)
            await cluster.wait(lambda: "probe" in registry(cluster), what="published")
            await cluster.wait(lambda: condition(cluster.get(FSP, NS, "probe"),
                                                 "PlatformReady").get("reason")
                               == "RecommendOnly", what="PlatformReady RecommendOnly")
            async with registry_gateway(cluster, tmp_path, "shabari",
                                        unused_tcp_port) as server, \
                    aiohttp.ClientSession() as s:
                for i in range(10):
                    async with s.post(server.make_url("/invoke/probe"),
                                      data=f'{{"sleep": 0.0{i % 3}}}'.encode(),
                                      headers={"Content-Type": "application/json"}) as r:
                        assert r.status == 200, await r.text()
                        # the container's own size, whatever was recommended
                        assert r.headers["X-Shabari-Cpu-Millicores"] == "1000"
                        assert r.headers["X-Shabari-Memory-Mib"] == "512"
                        assert "X-Shabari-Recommended" in r.headers
                fsp = await cluster.wait(
                    lambda: (p := cluster.get(FSP, NS, "probe")) and p.get("status", {}).get(
                        "recommendation", {}).get("invocations") == 10 and p,
                    timeout=20, what="recommendation in the status")
        rec = fsp["status"]["recommendation"]
        assert rec["runSize"] == "cpu=1,mem=512Mi"
        assert rec["size"].startswith("cpu=")
        assert "estimatedSavings" in rec and 0 <= rec["estimatedSavingsFraction"] <= 1
        assert fsp["status"]["invocations"] == 10
