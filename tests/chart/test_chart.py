"""The Helm chart with real Helm: lint, render, validate against Kubernetes 1.33 and 1.35.

Every rendered manifest goes through `kubernetes-validate` in strict mode (unknown fields
rejected); RBAC is checked for least privilege; values.yaml is checked to be documented.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shabari.devtools.k8sbin import K8sTools

CHART = Path(__file__).resolve().parents[2] / "charts" / "shabari"
#: kubernetes-validate 1.37 bundles schemas for these (and newer) releases
K8S_VERSIONS = ("1.33.0", "1.35.0")
#: kinds defined by CRDs that kubernetes-validate has no schema for
CRD_KINDS = {"ServiceMonitor"}

NON_DEFAULT = {
    "gateway": {"backend": "knative", "replicas": 2, "serviceType": "LoadBalancer",
                "extraArgs": ["--max-queue", "512"], "env": [{"name": "X", "value": "1"}],
                "nodeSelector": {"pool": "functions"}},
    "inPlace": {"enabled": False},
    "variants": {"enabled": False},
    "operator": {"watchNamespaces": ["team-a", "team-b"], "logLevel": "debug",
                 "statsIntervalSeconds": 10},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
    "grafanaDashboard": {"enabled": True},
    "networkPolicy": {"gatewayIngressNamespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "ingress"}}},
    "imagePullSecrets": [{"name": "regcred"}],
    "registryConfigMap": "fn-registry",
}


def helm(tools: K8sTools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.helm), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def render(tools: K8sTools, tmp_path: Path, values: dict[str, Any] | None = None
           ) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", "shabari-system"]
    if values:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    out = helm(tools, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    matches = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    assert len(matches) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def rules(docs: list[dict[str, Any]], kind: str, suffix: str) -> list[dict[str, Any]]:
    return list(named(docs, kind, suffix)["rules"])


def grants(rule_list: list[dict[str, Any]], resource: str, verb: str) -> bool:
    return any(resource in r["resources"] and verb in r["verbs"] for r in rule_list)


@pytest.fixture(scope="module")
def default_docs(k8s_tools: K8sTools, tmp_path_factory: pytest.TempPathFactory
                 ) -> list[dict[str, Any]]:
    return render(k8s_tools, tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def custom_docs(k8s_tools: K8sTools, tmp_path_factory: pytest.TempPathFactory
                ) -> list[dict[str, Any]]:
    return render(k8s_tools, tmp_path_factory.mktemp("custom"), NON_DEFAULT)


class TestHelm:
    def test_lint_default_and_custom(self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        out = helm(k8s_tools, "lint", "--strict", str(CHART))
        assert out.returncode == 0, out.stdout + out.stderr
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(NON_DEFAULT))
        out = helm(k8s_tools, "lint", "--strict", str(CHART), "--values", str(path))
        assert out.returncode == 0, out.stdout + out.stderr

    def test_schema_rejects_bad_values(self, k8s_tools: K8sTools) -> None:
        for bad in ("gateway.backend=lambda", "operator.logLevel=loud", "gateway.typo=1",
                    "registryConfigMap=Not_A_Name"):
            out = helm(k8s_tools, "template", "rel", str(CHART), "--set", bad)
            assert out.returncode != 0, bad
            assert "values don't meet the specifications" in out.stderr or "at '/" in (
                out.stderr), out.stderr

    @pytest.mark.parametrize("version", K8S_VERSIONS)
    @pytest.mark.parametrize("which", ["default_docs", "custom_docs"])
    def test_every_manifest_validates_strictly(self, which: str, version: str,
                                               request: pytest.FixtureRequest) -> None:
        docs: list[dict[str, Any]] = request.getfixturevalue(which)
        validated = 0
        for doc in docs:
            if doc["kind"] in CRD_KINDS:
                continue
            kubernetes_validate.validate(doc, version, strict=True)
            validated += 1
        assert validated >= 15

    @pytest.mark.parametrize("version", K8S_VERSIONS)
    def test_crd_validates_strictly(self, version: str) -> None:
        for path in (CHART / "crds").glob("*.yaml"):
            kubernetes_validate.validate(yaml.safe_load(path.read_text()), version, strict=True)

    def test_strict_validation_catches_a_bad_manifest(self, default_docs: list[dict[str, Any]]
                                                      ) -> None:
        deployment = dict(named(default_docs, "Deployment", "-operator"))
        deployment["spec"] = {**deployment["spec"], "replicaz": 1}
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


class TestNotes:
    def test_notes_tell_how_to_use_it(self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        args = ["install", "rel", str(CHART), "--namespace", "ns", "--dry-run=client"]
        out = subprocess.run([str(k8s_tools.helm), *args], capture_output=True, text=True,
                             timeout=120, check=False,
                             env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path),
                                  "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        notes = out.stdout.split("NOTES:", 1)[1]
        assert "kubectl get fsp" in notes
        assert "svc/rel-shabari-gateway" in notes
        assert "ConfigMap shabari-functions" in notes


class TestWorkloads:
    def test_operator_is_a_single_recreated_kopf_process(self, default_docs: list[dict[str, Any]]
                                                         ) -> None:
        op = named(default_docs, "Deployment", "-operator")
        assert op["spec"]["replicas"] == 1
        assert op["spec"]["strategy"] == {"type": "Recreate"}
        container = op["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["kopf"]
        assert container["args"][:3] == ["run", "-m", "shabari.k8s.handlers"]
        assert "--all-namespaces" in container["args"]

    def test_watch_namespaces(self, custom_docs: list[dict[str, Any]]) -> None:
        args = named(custom_docs, "Deployment", "-operator")["spec"]["template"]["spec"][
            "containers"][0]["args"]
        assert "--namespace=team-a" in args and "--namespace=team-b" in args
        assert "--all-namespaces" not in args and "--debug" in args

    @pytest.mark.parametrize("which", ["default_docs", "custom_docs"])
    def test_containers_are_non_root_and_read_only(self, which: str,
                                                   request: pytest.FixtureRequest) -> None:
        docs: list[dict[str, Any]] = request.getfixturevalue(which)
        for deployment in by_kind(docs, "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                sc = container["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]

    def test_gateway_reads_the_registry_the_operator_writes(
        self, default_docs: list[dict[str, Any]], custom_docs: list[dict[str, Any]]
    ) -> None:
        for docs, name in ((default_docs, "shabari-functions"), (custom_docs, "fn-registry")):
            gateway = named(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in gateway["volumes"]}
            assert volumes["registry"]["configMap"]["name"] == name
            assert gateway["containers"][0]["command"] == ["shabari"]
            assert gateway["containers"][0]["args"][0] == "gateway"
            assert "--config=/etc/shabari/functions.yaml" in gateway["containers"][0]["args"]
            env = {e["name"]: e for e in named(docs, "Deployment", "-operator")["spec"][
                "template"]["spec"]["containers"][0]["env"]}
            assert env["SHABARI_REGISTRY_CONFIGMAP"]["value"] == name
            assert env["SHABARI_GATEWAY_URL"]["value"].startswith("http://rel-shabari-gateway.")
            registry = named(docs, "ConfigMap", name)
            assert yaml.safe_load(registry["data"]["functions.yaml"]) == {"functions": {}}

    def test_optional_monitoring(self, default_docs: list[dict[str, Any]],
                                 custom_docs: list[dict[str, Any]]) -> None:
        assert not by_kind(default_docs, "ServiceMonitor")
        monitor = named(custom_docs, "ServiceMonitor", "-gateway")
        assert monitor["metadata"]["labels"]["release"] == "prom"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        dashboard = named(custom_docs, "ConfigMap", "-dashboard")
        import json

        panels = json.loads(dashboard["data"]["shabari.json"])["panels"]
        assert any("shabari_slo_violations_total" in t["expr"] for p in panels
                   for t in p["targets"])

    def test_network_policies(self, default_docs: list[dict[str, Any]],
                              custom_docs: list[dict[str, Any]]) -> None:
        assert {d["metadata"]["name"] for d in by_kind(default_docs, "NetworkPolicy")} == {
            "rel-shabari-gateway", "rel-shabari-operator"}
        ingress = named(custom_docs, "NetworkPolicy", "-gateway")["spec"]["ingress"][0]
        assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "ingress"}


class TestRBAC:
    @pytest.mark.parametrize("which", ["default_docs", "custom_docs"])
    def test_no_wildcards(self, which: str, request: pytest.FixtureRequest) -> None:
        docs: list[dict[str, Any]] = request.getfixturevalue(which)
        for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)

    def test_default_grants_what_the_code_uses(self, default_docs: list[dict[str, Any]]
                                               ) -> None:
        op = rules(default_docs, "ClusterRole", "-operator")
        for resource, verb in [("functionsizingpolicies", "watch"),
                               ("functionsizingpolicies", "create"),
                               ("functionsizingpolicies/status", "patch"),
                               ("events", "create"), ("deployments", "watch"),
                               ("services", "watch"), ("configurations", "delete"),
                               ("routes", "create"), ("customresourcedefinitions", "watch")]:
            assert grants(op, resource, verb), (resource, verb)
        assert not grants(op, "functionsizingpolicies/status", "update")
        assert not grants(op, "pods", "get")  # the operator never touches pods
        # Variants: may sizes start at zero pods? One ConfigMap, read only
        cms = [r for r in op if "configmaps" in r["resources"]]
        assert cms == [{"apiGroups": [""], "resources": ["configmaps"],
                        "resourceNames": ["config-autoscaler"], "verbs": ["get"]}]
        # InPlace never patches targets (a patched template restarts every pod for nothing)
        assert not grants(op, "deployments", "patch") and not grants(op, "services", "patch")
        registry = rules(default_docs, "Role", "-operator")
        assert grants(registry, "configmaps", "patch")
        assert all(r.get("resourceNames") == ["shabari-functions"] for r in registry
                   if "patch" in r["verbs"])
        gw = rules(default_docs, "Role", "-gateway")
        assert grants(gw, "pods/resize", "patch") and grants(gw, "pods", "create")

    def test_disabled_modes_drop_their_permissions(self, custom_docs: list[dict[str, Any]]
                                                   ) -> None:
        op = rules(custom_docs, "ClusterRole", "-operator")
        assert not grants(op, "deployments", "patch")
        assert not grants(op, "services", "patch")
        assert not grants(op, "configurations", "create")
        assert not grants(op, "configmaps", "get")
        assert grants(op, "namespaces", "watch")  # kopf resolves --namespace patterns
        gw = rules(custom_docs, "Role", "-gateway")  # knative backend
        assert not grants(gw, "pods/resize", "patch") and not grants(gw, "pods", "create")
        assert grants(gw, "routes", "get") and not grants(gw, "configurations", "create")
        # knative: Routes in the policies' namespaces, and only the config-features ConfigMap
        cluster = rules(custom_docs, "ClusterRole", "-gateway")
        assert grants(cluster, "routes", "list") and not grants(cluster, "nodes", "list")
        cm = [r for r in cluster if "configmaps" in r["resources"]]
        assert cm == [{"apiGroups": [""], "resources": ["configmaps"],
                       "resourceNames": ["config-features"], "verbs": ["get"]}]


    def test_knative_gateway_managing_variants(self, k8s_tools: K8sTools, tmp_path: Path
                                               ) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"backend": "knative",
                                                        "knativeManageVariants": True}})
        gw = rules(docs, "Role", "-gateway")
        assert grants(gw, "configurations", "create") and grants(gw, "routes", "patch")
        cm = [r for r in rules(docs, "ClusterRole", "-gateway") if "configmaps" in r["resources"]]
        assert cm[0]["resourceNames"] == ["config-features", "config-autoscaler"]

    def test_local_backend_needs_no_api_access(self, k8s_tools: K8sTools, tmp_path: Path
                                               ) -> None:
        # one replica: no Lease to elect a learner with either
        docs = render(k8s_tools, tmp_path, {"gateway": {"backend": "local", "replicas": 1}})
        assert not [d for d in by_kind(docs, "Role") if d["metadata"]["name"].endswith(
            "-gateway")]
        pod = named(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False


class TestReplicas:
    """2+ gateway replicas learn as one: Lease election, PDB, rolling updates, spread."""

    def test_default_is_replicated_with_a_lease_pdb_and_spread(
            self, default_docs: list[dict[str, Any]]) -> None:
        dep = named(default_docs, "Deployment", "-gateway")
        assert dep["spec"]["replicas"] >= 2
        assert dep["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        pod = dep["spec"]["template"]["spec"]
        (spread,) = pod["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        args = pod["containers"][0]["args"]
        assert "--lease=shabari-system/rel-shabari-gateway-learner" in args
        assert "--advertise-url=http://$(POD_IP):8080" in args
        env = {e["name"] for e in pod["containers"][0]["env"]}
        assert {"POD_NAME", "POD_IP"} <= env
        pdb = named(default_docs, "PodDisruptionBudget", "-gateway")
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]

    def test_lease_rbac_is_get_create_update_on_leases_only(
            self, default_docs: list[dict[str, Any]]) -> None:
        lease_rules = [r for r in rules(default_docs, "Role", "-gateway")
                       if "coordination.k8s.io" in r["apiGroups"]]
        assert lease_rules == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["rel-shabari-gateway-learner"], "verbs": ["get", "update"]}]
        for role in by_kind(default_docs, "ClusterRole"):
            assert not any("leases" in r.get("resources", []) for r in role["rules"])

    def test_local_backend_replicas_get_the_lease_and_the_token(
            self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"backend": "local", "replicas": 3}})
        gw = rules(docs, "Role", "-gateway")
        assert grants(gw, "leases", "update") and not grants(gw, "pods", "create")
        pod = named(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is True

    def test_one_replica_elects_nothing(self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"replicas": 1}})
        assert not by_kind(docs, "PodDisruptionBudget")
        args = named(docs, "Deployment", "-gateway")["spec"]["template"]["spec"][
            "containers"][0]["args"]
        assert not [a for a in args if a.startswith("--lease")]
        assert not grants(rules(docs, "Role", "-gateway"), "leases", "get")

    def test_replicas_reach_each_other_through_the_network_policy(
            self, custom_docs: list[dict[str, Any]]) -> None:
        dep = named(custom_docs, "Deployment", "-gateway")
        ingress = named(custom_docs, "NetworkPolicy", "-gateway")["spec"]["ingress"][0]
        assert {"podSelector": {"matchLabels": dep["spec"]["selector"]["matchLabels"]}} in \
            ingress["from"]


class TestValuesFile:
    def test_every_setting_is_commented(self) -> None:
        lines = (CHART / "values.yaml").read_text().splitlines()
        literal_blocks = {"podSecurityContext", "securityContext", "resources", "labels"}
        undocumented = []
        inside_literal = -1
        for i, line in enumerate(lines):
            match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
            if not match:
                continue
            indent, key = len(match.group(1)), match.group(2)
            if inside_literal >= 0 and indent > inside_literal:
                continue
            inside_literal = indent if key in literal_blocks else -1
            previous = next((p for p in reversed(lines[:i]) if p.strip()), "")
            if not previous.strip().startswith("#"):
                undocumented.append(key)
        assert undocumented == []
