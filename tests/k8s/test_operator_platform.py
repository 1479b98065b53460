"""What the operator does where the platform or its RBAC cannot serve a mode (issue #17).

The chart grants Knative rights only with `variants.enabled=true`. Without them every call on
Configurations and Routes is 403; a policy must still reconcile and, above all, be deletable
(the finalizer handler must not retry a forbidden cleanup forever).
"""

from __future__ import annotations

from typing import Any

import pytest
from k8s_emulator import DEPLOY, FSP, Cluster, running_operator
from test_operator_e2e import NS, api, condition, deployment, policy


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
