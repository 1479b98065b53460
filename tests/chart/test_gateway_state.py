"""The chart's reliability settings (issue #13): the gateway's state on a volume, a grace
period longer than the drain, a NetworkPolicy closed by default, egress by backend, and
optional bearer-token authentication. Rendered by the real helm, validated strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from test_chart import K8S_VERSIONS, by_kind, named, render

from shabari.devtools.k8sbin import K8sTools


def gateway_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = named(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
    return spec


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    return list(gateway_pod(docs)["containers"][0]["args"])


def flag(args: list[str], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")), None)


def egress_ports(docs: list[dict[str, Any]]) -> set[int]:
    rules = named(docs, "NetworkPolicy", "-gateway")["spec"]["egress"]
    return {p["port"] for r in rules for p in r.get("ports", [])}


def validate(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


class TestState:
    def test_default_keeps_state_on_a_claim_and_outlives_the_drain(
            self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path)
        validate(docs)
        args = args_of(docs)
        assert flag(args, "state-dir") == "/var/lib/shabari"
        assert flag(args, "checkpoint-interval") == "30"
        assert flag(args, "decision-log") == "/var/lib/shabari/decisions/$(POD_NAME).jsonl"
        pod = gateway_pod(docs)
        claim = named(docs, "PersistentVolumeClaim", "-gateway-state")
        state = next(v for v in pod["volumes"] if v["name"] == "state")
        assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        # two replicas by default: every one mounts the claim
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        drain = float(flag(args, "drain-timeout") or 0)
        assert pod["terminationGracePeriodSeconds"] > drain >= 60

    def test_one_replica_claims_read_write_once(self, k8s_tools: K8sTools,
                                                tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"replicas": 1}})
        claim = named(docs, "PersistentVolumeClaim", "-gateway-state")
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    def test_without_persistence_the_state_is_an_empty_dir(self, k8s_tools: K8sTools,
                                                            tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"persistence": {"enabled": False},
                                                        "drainTimeoutSeconds": 120}})
        validate(docs)
        assert not by_kind(docs, "PersistentVolumeClaim")
        state = next(v for v in gateway_pod(docs)["volumes"] if v["name"] == "state")
        assert state == {"name": "state", "emptyDir": {}}
        assert gateway_pod(docs)["terminationGracePeriodSeconds"] > 120


class TestNetworkPolicy:
    def test_ingress_admits_only_labelled_namespaces_by_default(
            self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path)
        sources = named(docs, "NetworkPolicy", "-gateway")["spec"]["ingress"][0]["from"]
        namespaces = [s["namespaceSelector"] for s in sources if "namespaceSelector" in s]
        assert namespaces == [{"matchLabels": {"shabari.dev/gateway-access": "true"}}]

    @pytest.mark.parametrize(("backend", "replicas", "allowed", "refused"), [
        ("local", 1, {53}, {80, 443, 6443, 8080}),
        ("local", 2, {53, 443, 6443, 8080}, {80}),
        ("kubernetes", 1, {53, 443, 6443, 8080}, {80}),
        ("knative", 1, {53, 80, 443, 6443}, set()),
    ])
    def test_egress_is_what_the_backend_needs(self, k8s_tools: K8sTools, tmp_path: Path,
                                              backend: str, replicas: int, allowed: set[int],
                                              refused: set[int]) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"backend": backend,
                                                        "replicas": replicas}})
        ports = egress_ports(docs)
        assert allowed <= ports and not refused & ports


class TestAuth:
    def test_auth_token_from_a_generated_secret_reaches_everyone_who_calls(
            self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"auth": {"enabled": True}},
                                            "serviceMonitor": {"enabled": True}})
        validate(docs)
        secret = named(docs, "Secret", "-gateway-auth")
        assert len(secret["data"]["token"]) > 40
        assert flag(args_of(docs), "auth-token-file") == "/etc/shabari-auth/token"
        pod = gateway_pod(docs)
        assert {"name": "auth", "secret": {"secretName": secret["metadata"]["name"]}} in \
            pod["volumes"]
        op_env = named(docs, "Deployment", "-operator")["spec"]["template"]["spec"][
            "containers"][0]["env"]
        token_env = next(e for e in op_env if e["name"] == "SHABARI_AUTH_TOKEN")
        assert token_env["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
        endpoint = named(docs, "ServiceMonitor", "-gateway")["spec"]["endpoints"][0]
        assert endpoint["authorization"]["credentials"]["name"] == secret["metadata"]["name"]

    def test_existing_secret_is_used_and_none_is_made(self, k8s_tools: K8sTools,
                                                      tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path, {"gateway": {"auth": {
            "enabled": True, "existingSecret": "mine", "secretKey": "t"}}})
        assert not by_kind(docs, "Secret")
        assert flag(args_of(docs), "auth-token-file") == "/etc/shabari-auth/t"

    def test_off_by_default(self, k8s_tools: K8sTools, tmp_path: Path) -> None:
        docs = render(k8s_tools, tmp_path)
        assert not by_kind(docs, "Secret")
        assert flag(args_of(docs), "auth-token-file") is None
