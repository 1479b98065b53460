"""What the operator does where the platform or its RBAC cannot serve a mode (issue #17),
and that it authenticates every request (kopf's login from the kubeconfig's token).

The chart grants Knative rights only with `variants.enabled=true`. Without them every call on
Configurations and Routes is 403; a policy must still reconcile and, above all, be deletable
(the finalizer handler must not retry a forbidden cleanup forever).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import kmock
import pytest
from k8s_emulator import (
    DEPLOY,
    FSP,
    KCONFIG,
    KSVC,
    ApiServerEmulator,
    Cluster,
    declare_resources,
    running_operator,
    write_kubeconfig,
)
from test_operator_e2e import NS, api, condition, deployment, knative_service, policy


def _knative_variants(request: Any) -> bool:
    resource = getattr(request, "resource", None)
    return resource is not None and resource.plural in ("configurations", "routes")


@pytest.fixture()
async def no_variants_operator(cluster: Cluster, operator_env: None,
                               monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SHABARI_VARIANTS", "false")
    # what RBAC without the Variants rules answers
    cluster.k[_knative_variants] << 403 << {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
        "code": 403, "message": 'configurations.serving.knative.dev is forbidden: User '
        '"system:serviceaccount:shabari-system:shabari-operator" cannot list resource '
        '"configurations" in API group "serving.knative.dev"'}
    async with running_operator(cluster) as running:
        yield running


class TestVariantsDisabled:
    async def test_inplace_policy_reconciles_and_deletes(
        self, no_variants_operator: Cluster
    ) -> None:
        op = no_variants_operator
        await api(op, "POST", DEPLOY, body=deployment("web"))
        body = policy("web", "web", mode="InPlace")
        body["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "web"}
        await api(op, "POST", FSP, body=body)
        await op.wait(lambda: condition(op.get(FSP, NS, "web"), "Ready").get("status")
                      == "True", what="Ready")
        await api(op, "DELETE", FSP, "web")
        await op.wait(lambda: op.get(FSP, NS, "web") is None, what="deleted, not Terminating")

    async def test_variants_policy_says_why_and_still_deletes(
        self, no_variants_operator: Cluster
    ) -> None:
        op = no_variants_operator
        await api(op, "POST", FSP, body=policy("kv", "kv"))  # Variants on a Service
        fsp = await op.wait(lambda: (p := op.get(FSP, NS, "kv"))
                            and condition(p, "PlatformReady") and p, what="PlatformReady")
        assert condition(fsp, "PlatformReady")["reason"] in ("VariantsDisabled",
                                                             "TargetNotFound")
        await api(op, "DELETE", FSP, "kv")
        await op.wait(lambda: op.get(FSP, NS, "kv") is None, what="deleted, not Terminating")


@attrs.define(kw_only=True)
class AuthenticatingEmulator(ApiServerEmulator):
    """401 without the kubeconfig's bearer token, as every real API server answers."""

    auth_log: list[str | None] = attrs.field(factory=list)

    async def _handle(self, request: Any) -> Any:
        auth = next((v for k, v in request.headers.items() if k.lower() == "authorization"),
                    None)
        self.auth_log.append(auth)
        if auth != "Bearer test-token" and request.url.path != "/":
            raise kmock.KubernetesError(status=401, reason="Unauthorized",
                                        message="Unauthorized")
        return await super()._handle(request)


@pytest.fixture()
async def authenticated_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                ) -> AsyncIterator[Cluster]:
    async with AuthenticatingEmulator() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator)
        url = str(server.url).rstrip("/")
        cluster = Cluster(emulator, url, write_kubeconfig(tmp_path / "kubeconfig", url))
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
        monkeypatch.setenv("SHABARI_NAMESPACE", "shabari-system")
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("SHABARI_GATEWAY_URL", raising=False)
        yield cluster


class TestCredentials:
    async def test_operator_authenticates_every_request(
        self, authenticated_cluster: Cluster
    ) -> None:
        cluster = authenticated_cluster
        headers = {"Authorization": "Bearer test-token"}
        async with running_operator(cluster) as op:
            async with aiohttp.ClientSession(headers=headers) as s, s.post(
                    cluster.url + f"/apis/apps/v1/namespaces/{NS}/deployments",
                    json=deployment("web")) as rsp:
                assert rsp.status < 300, await rsp.text()
            body = policy("web", "web", mode="InPlace")
            body["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": "web"}
            async with aiohttp.ClientSession(headers=headers) as s, s.post(
                    cluster.url + f"/apis/shabari.dev/v1alpha1/namespaces/{NS}/"
                    "functionsizingpolicies", json=body) as rsp:
                assert rsp.status < 300, await rsp.text()
            await op.wait(lambda: condition(op.get(FSP, NS, "web"), "Ready").get("status")
                          == "True", what="Ready through an authenticating API server")
        emulator = cluster.k
        assert isinstance(emulator, AuthenticatingEmulator)
        assert emulator.auth_log and set(emulator.auth_log) == {"Bearer test-token"}


class TestZeroInitialScale:
    """Issue #17, item 12: variants start at zero pods only where Knative allows it."""

    @pytest.mark.parametrize("allowed", [True, False])
    async def test_variants_follow_config_autoscaler(self, operator: Cluster,
                                                     allowed: bool) -> None:
        if allowed:
            cm = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "config-autoscaler", "namespace": "knative-serving"},
                  "data": {"allow-zero-initial-scale": "true"}}
            async with aiohttp.ClientSession() as s, s.post(
                    operator.url + "/api/v1/namespaces/knative-serving/configmaps",
                    json=cm) as rsp:
                assert rsp.status < 300, await rsp.text()
        await api(operator, "POST", KSVC, body=knative_service("zs"))
        await api(operator, "POST", FSP, body=policy("zs", "zs"))
        fsp = await operator.wait(
            lambda: (p := operator.get(FSP, NS, "zs"))
            and condition(p, "PlatformReady").get("reason") == "VariantsReady" and p,
            what="VariantsReady")
        configs = [operator.get(KCONFIG, NS, n) for n in operator.names(KCONFIG, NS)]
        assert configs
        scales = {(c or {})["spec"]["template"].get("metadata", {}).get("annotations", {})
                  .get("autoscaling.knative.dev/initial-scale") for c in configs}
        assert scales == ({"0"} if allowed else {None})
        message = condition(fsp, "PlatformReady")["message"]
        assert ("zero pods" in message) if allowed else ("allow-zero-initial-scale" in message)
