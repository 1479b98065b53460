"""Pure reconciliation: validation, conditions, registry, variants, resize, derived policies."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast

import pytest
import yaml

from shabari.core.errors import ConfigError
from shabari.core.specdict import spec_from_mapping, spec_to_mapping
from shabari.gateway.config import entries_from_mapping
from shabari.k8s import reconcile as rc
from shabari.k8s.cli import kopf_argv
from shabari.k8s.settings import OperatorSettings
from shabari.k8s.types import PolicyBody, WorkloadBody

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEC: dict[str, Any] = {
    "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "fn"},
    "slo": {"latencyMs": 250},
    "featurizer": {"type": "image", "options": {"fast": True}},
    "sizes": {"cpu": ["500m", "1"], "memory": ["512Mi", "1Gi"]},
    "defaultSize": {"cpu": "500m", "memory": "512Mi"},
    "mode": "Variants",
}


def policy(**overrides: Any) -> PolicyBody:
    spec = copy.deepcopy(SPEC)
    spec.update(overrides)
    return cast(PolicyBody, {"apiVersion": "shabari.dev/v1alpha1", "kind": "FunctionSizingPolicy",
                             "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                                          "generation": 3},
                             "spec": spec})


def service(**template_meta: Any) -> WorkloadBody:
    return cast(WorkloadBody, {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "fn", "namespace": "ns", "uid": "svc-uid"},
        "spec": {"template": {"metadata": {"name": "fn-v1", **template_meta},
                              "spec": {"containers": [{"name": "c", "image": "img"}]}}}})


class TestPlan:
    def test_valid(self) -> None:
        plan = rc.plan_policy(policy(), {"image", "auto"})
        assert plan.error is None and plan.spec is not None
        # namespace "ns" is not the home namespace: the function's name is qualified
        assert plan.function == "fn--ns" and plan.mode == "Variants"
        assert plan.registry_entry == {**spec_to_mapping(plan.spec), "namespace": "ns",
                                       "target": "fn"}
        home = rc.plan_policy(policy(), {"image", "auto"}, home_namespace="ns")
        assert home.function == "fn"

    @pytest.mark.parametrize(("overrides", "reason", "fragment"), [
        ({"sizes": {"cpu": ["0"], "memory": ["1Gi"]}}, "InvalidSpec", "sizes.cpu[0]"),
        ({"featurizer": {"type": "sonar"}}, "InvalidSpec", "unknown featurizer 'sonar'"),
        ({"mode": "Turbo"}, "InvalidSpec", "mode: must be one of"),
        ({"targetRef": {"name": "x"}}, "InvalidSpec", "targetRef"),
        ({"resourcePolicy": {"minAllowed": {}, "maxAllowed": {}}}, "InvalidSpec", "not both"),
    ])
    def test_invalid(self, overrides: dict[str, Any], reason: str, fragment: str) -> None:
        plan = rc.plan_policy(policy(**overrides), {"image", "auto"})
        assert plan.error is not None and fragment in plan.error
        assert plan.error_reason == reason and plan.registry_entry is None

    def test_annotation_error_wins(self) -> None:
        body = policy()
        body["metadata"]["annotations"] = {rc.ANNOTATION_ERROR: "shabari.dev/sizes: bad"}
        plan = rc.plan_policy(body, None)
        assert (plan.error, plan.error_reason) == ("shabari.dev/sizes: bad", "InvalidAnnotations")

    def test_off_is_not_served(self) -> None:
        plan = rc.plan_policy(policy(mode="Off"), None)
        assert plan.spec is not None and plan.registry_entry is None


class TestConditions:
    def test_transition_time_kept_while_status_unchanged(self) -> None:
        first = rc.merge_conditions([], [rc.condition("SpecValid", "True", "Valid")], NOW)
        later = NOW + timedelta(minutes=5)
        same = rc.merge_conditions(first, [rc.condition("SpecValid", "True", "Valid", "x")],
                                   later)
        assert same[0]["lastTransitionTime"] == rc.timestamp(NOW) and same[0]["message"] == "x"
        flipped = rc.merge_conditions(same, [rc.condition("SpecValid", "False", "Bad")], later)
        assert flipped[0]["lastTransitionTime"] == rc.timestamp(later)

    def test_merge_keeps_other_types_in_order(self) -> None:
        merged = rc.merge_conditions(
            [rc.condition(rc.READY, "True", "r"), rc.condition(rc.GATEWAY_STATS, "True", "g")],
            [rc.condition(rc.SPEC_VALID, "True", "v")], NOW)
        assert [c["type"] for c in merged] == [rc.SPEC_VALID, rc.GATEWAY_STATS, rc.READY]

    def test_ready(self) -> None:
        good = [rc.condition(t, "True", "ok") for t in (rc.SPEC_VALID, rc.PLATFORM_READY,
                                                         rc.PUBLISHED)]
        assert rc.ready_condition(good, 3)["status"] == "True"
        bad = [*good[:1], rc.condition(rc.PLATFORM_READY, "False", "TargetNotFound", "gone"),
               good[2]]
        ready = rc.ready_condition(bad, 3)
        assert (ready["status"], ready["reason"], ready["message"]) == (
            "False", "TargetNotFound", "gone")
        assert rc.ready_condition(good[:1], None)["status"] == "Unknown"

    def test_status_summary(self) -> None:
        plan = rc.plan_policy(policy(), None)
        status = rc.base_status(plan, 3)
        assert status["slo"] == "250ms" and status["observedGeneration"] == 3
        assert status["allocation"]["gridSizes"] == 4
        assert status["allocation"]["minCpu"] == "500m"


class TestRegistry:
    def test_set_update_remove(self) -> None:
        entry = rc.plan_policy(policy(), None).registry_entry
        assert entry is not None
        text = rc.update_registry(None, "fn", entry)
        assert text is not None
        assert rc.update_registry(text, "fn", entry) is None  # idempotent
        text2 = rc.update_registry(text, "other", entry)
        assert text2 is not None and set(rc.parse_registry(text2)) == {"fn", "other"}
        removed = rc.update_registry(text2, "fn", None)
        assert removed is not None and set(rc.parse_registry(removed)) == {"other"}
        assert rc.update_registry(removed, "fn", None) is None

    def test_broken_document_is_replaced(self) -> None:
        assert rc.parse_registry("functions: [unclosed") == {}
        assert rc.parse_registry("- a list") == {}

    def test_gateway_reads_what_the_operator_publishes(self) -> None:
        """The contract with `shabari gateway --config`: the same shared schema."""
        entry = rc.plan_policy(policy(), None).registry_entry
        assert entry is not None
        text = rc.update_registry(None, "fn", entry)
        assert text is not None
        entries = entries_from_mapping(yaml.safe_load(text), "configmap")
        assert entries["fn"].spec == spec_from_mapping("fn", SPEC)


class TestVariants:
    def test_one_configuration_per_size_and_a_tagged_route(self) -> None:
        body = policy()
        spec = rc.plan_policy(body, None).spec
        assert spec is not None
        configs, route = rc.variant_resources(body, service(), spec)
        assert [c["metadata"]["name"] for c in configs] == [
            "fn-cpu500m-mem512mi", "fn-cpu500m-mem1024mi", "fn-cpu1000m-mem512mi",
            "fn-cpu1000m-mem1024mi"]
        first = configs[0]["spec"]["template"]
        assert "name" not in first["metadata"]
        assert first["spec"]["containers"][0]["resources"] == {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"}}
        assert configs[0]["metadata"]["ownerReferences"][0]["uid"] == "u1"
        traffic = route["spec"]["traffic"]
        assert [t["percent"] for t in traffic] == [100, 0, 0, 0]  # the default size
        assert route["metadata"]["name"] == "fn-shabari"

    def test_gpu_limits(self) -> None:
        body = policy(sizes={"cpu": ["1"], "memory": ["1Gi"], "gpu": [0, 1]}, defaultSize=None)
        spec = rc.plan_policy(body, None).spec
        assert spec is not None
        configs, _ = rc.variant_resources(body, service(), spec)
        limits = configs[1]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "1"
        assert configs[1]["metadata"]["name"].endswith("-gpu1")

    def test_long_names_stay_dns_labels(self) -> None:
        name = rc.dns_name("a" * 60, "cpu1000m-mem1024mi")
        assert len(name) <= 63 and name == rc.dns_name("a" * 60, "cpu1000m-mem1024mi")
        assert name != rc.dns_name("a" * 60, "cpu500m-mem1024mi")


class TestOwnerReferences:
    def test_no_block_owner_deletion(self) -> None:
        # OpenShift's OwnerReferencesPermissionEnforcement refuses blockOwnerDeletion unless
        # the creator may update the owner's finalizers (issue #17, item 9)
        ref = rc.owner_reference({"apiVersion": "v1", "kind": "X",
                                  "metadata": {"name": "n", "uid": "u"}})
        assert ref == {"apiVersion": "v1", "kind": "X", "name": "n", "uid": "u",
                       "controller": True}


class TestDerived:
    def test_owned_by_the_workload(self) -> None:
        derived = rc.derived_policy(service(), {"sizes": {"cpu": ["1"], "memory": ["1Gi"]},
                                                "mode": "InPlace"}, None)
        assert derived["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"
        assert derived["metadata"]["labels"][rc.DERIVED_LABEL] == "fn"
        assert derived["spec"]["targetRef"]["kind"] == "Service"
        assert rc.plan_policy(derived, None).error is None

    def test_error_becomes_off_and_annotation(self) -> None:
        derived = rc.derived_policy(service(), None, "shabari.dev/sizes: bad")
        assert derived["spec"]["mode"] == "Off" and "sizes" not in derived["spec"]
        assert derived["metadata"]["annotations"][rc.ANNOTATION_ERROR] == "shabari.dev/sizes: bad"

    def test_patch(self) -> None:
        good = rc.derived_policy(service(), {"sizes": {"cpu": ["1"], "memory": ["1Gi"]},
                                             "slo": {"latencyMs": 5.0}, "mode": "InPlace"}, None)
        assert rc.derived_patch(good, good) is None
        bad = rc.derived_policy(service(), None, "oops")
        patch = rc.derived_patch(good, bad)
        assert patch is not None
        assert patch["spec"]["sizes"] is None and patch["spec"]["slo"] is None  # merge-patch delete
        assert patch["metadata"]["annotations"][rc.ANNOTATION_ERROR] == "oops"
        healed = rc.derived_patch(bad, good)
        assert healed is not None and healed["metadata"]["annotations"][rc.ANNOTATION_ERROR] is None


class TestGatewayStats:
    ENTRY: ClassVar[dict[str, Any]] = {"name": "fn", "slo": {"latencyMs": 250}, "sizes": {},
                             "learning": {"model_version": 7},
                             "stats": {"invocations": 10, "slo_violations": 1,
                                       "slo_attainment": 0.9}}

    def test_reads_the_functions_list(self) -> None:
        status, cond = rc.stats_from_gateway([self.ENTRY], "fn", 2)
        assert status == {"invocations": 10, "sloViolations": 1, "sloAttainment": 0.9,
                          "modelVersion": "7"}
        assert (cond["status"], cond["observedGeneration"]) == ("True", 2)

    def test_unknown_function_and_garbage(self) -> None:
        for doc in ([self.ENTRY], {"functions": "nope"}, "garbage", None):
            status, cond = rc.stats_from_gateway(doc, "other", None)
            assert status == {} and cond["reason"] == "FunctionNotServed"


class TestSettingsAndCli:
    def test_from_env(self) -> None:
        cfg = OperatorSettings.from_env({"POD_NAMESPACE": "sys", "SHABARI_GATEWAY_URL": "http://g/",
                                         "SHABARI_INPLACE": "false", "SHABARI_STATS_INTERVAL_S": "5"})
        assert (cfg.namespace, cfg.gateway_url, cfg.inplace_enabled, cfg.stats_interval_s) == (
            "sys", "http://g", False, 5.0)
        assert OperatorSettings.from_env({}).registry_configmap == "shabari-functions"

    @pytest.mark.parametrize("env", [{"SHABARI_STATS_INTERVAL_S": "soon"},
                                     {"SHABARI_STATS_INTERVAL_S": "0"},
                                     {"SHABARI_VARIANTS": "perhaps"},
                                     {"SHABARI_RETRY_S": "-1"}])
    def test_bad_env(self, env: dict[str, str]) -> None:
        with pytest.raises(ConfigError):
            OperatorSettings.from_env(env)

    def test_kopf_argv(self) -> None:
        assert kopf_argv([]) == ["run", "-m", "shabari.k8s.handlers", "--all-namespaces"]
        assert kopf_argv(["--", "-n", "team", "--verbose"]) == [
            "run", "-m", "shabari.k8s.handlers", "-n", "team", "--verbose"]
        assert "--all-namespaces" not in kopf_argv(["--namespace=x"])


class TestOperatorCommand:
    def test_bad_kopf_option_is_a_clear_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        from shabari.cli import main

        assert main(["operator", "--", "--no-such-option"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("shabari operator: error:") and "--no-such-option" in err

    def test_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        from shabari.cli import main

        assert main(["operator", "--", "--help"]) == 0
        assert "--namespace" in capsys.readouterr().out
