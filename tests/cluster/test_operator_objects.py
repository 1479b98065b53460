"""Every object the operator creates passes what a real API server (and OpenShift) checks.

The operator's objects come from pure functions (`shabari.k8s.reconcile`), so they are run
here through the same rules the strict emulator applies to the backends' objects: names,
labels, pod template validation (resize policy vs restart policy, requests vs limits),
kubernetes-validate strict for 1.33 and 1.35 where an official schema exists, the Knative
tag-hostname length, and OpenShift's OwnerReferencesPermissionEnforcement (no
`blockOwnerDeletion` without `update` on the owner's finalizers, which the chart never grants).
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from strict_api import object_errors, schema_errors

from shabari.backends.knative import tag_hostname_problems
from shabari.core.specdict import spec_from_mapping
from shabari.k8s import reconcile as rc
from shabari.k8s.settings import REGISTRY_KEY
from shabari.k8s.types import PolicyBody, WorkloadBody


def policy(name: str = "thumbnail", **spec: Any) -> PolicyBody:
    body = {"targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                          "name": name},
            "mode": "Variants", "slo": {"latencyMs": 200},
            "sizes": {"cpu": ["250m", "1", "16"], "memory": ["256Mi", "64Gi"], "gpu": [0, 1]},
            **spec}
    return cast(PolicyBody, {"apiVersion": "shabari.dev/v1alpha1",
                             "kind": "FunctionSizingPolicy",
                             "metadata": {"name": name, "namespace": "team-a", "uid": "u1"},
                             "spec": body})


def service(name: str) -> WorkloadBody:
    return cast(WorkloadBody, {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "team-a", "uid": "u2"},
        "spec": {"template": {"metadata": {"name": f"{name}-00001"}, "spec": {"containers": [
            {"image": "example/fn:1", "resources": {"limits": {"cpu": "8"}}}]}}}})


def owner_reference_errors(obj: dict[str, Any]) -> list[str]:
    """OpenShift's OwnerReferencesPermissionEnforcement, for a creator without finalizers."""
    return [f"metadata.ownerReferences[{i}].blockOwnerDeletion: Forbidden: cannot set "
            "blockOwnerDeletion if an ownerReference refers to a resource you can't set "
            "finalizers on"
            for i, ref in enumerate((obj.get("metadata") or {}).get("ownerReferences") or [])
            if ref.get("blockOwnerDeletion")]


@pytest.mark.parametrize("name", ["thumbnail", "image-classification-resnet50-batch"])
def test_variants_pass_the_api_servers_rules(name: str) -> None:
    body = policy(name)
    spec = spec_from_mapping(name, body["spec"])
    configs, route = rc.variant_resources(body, service(name), spec)
    for obj in [*configs, route]:
        raw = cast(dict[str, Any], obj)
        assert object_errors(raw) == [], raw["metadata"]["name"]
        assert schema_errors(raw) == []  # Knative kinds: no official schema, nothing to say
        assert owner_reference_errors(raw) == []
    tags = [t["tag"] for t in route["spec"]["traffic"]]
    assert tag_hostname_problems(route["metadata"]["name"], tags) == []


def test_derived_policy_and_registry_pass() -> None:
    workload = cast(WorkloadBody, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "u3"},
        "spec": {"template": {"spec": {"containers": [{"name": "fn", "image": "x:1"}]}}}})
    derived = cast(dict[str, Any], rc.derived_policy(workload, {"mode": "InPlace"}, None))
    assert object_errors(derived) == [] and owner_reference_errors(derived) == []
    registry = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "shabari-functions", "namespace": "shabari-system",
                             "labels": dict(rc.MANAGED_BY)},
                "data": {REGISTRY_KEY: rc.render_registry({})}}
    assert object_errors(registry) == [] and schema_errors(registry) == []


def test_the_rules_do_catch_the_old_owner_reference() -> None:
    ref = {**rc.owner_reference({"apiVersion": "v1", "kind": "X",
                                 "metadata": {"name": "n", "uid": "u"}}),
           "blockOwnerDeletion": True}
    assert owner_reference_errors({"metadata": {"ownerReferences": [ref]}})
