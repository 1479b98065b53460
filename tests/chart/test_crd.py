"""The FunctionSizingPolicy CRD: its schema accepts the examples and rejects bad specs.

The openAPIV3Schema is an OpenAPI 3.0 schema (boolean `exclusiveMinimum`, draft-4 style),
so it is checked with jsonschema's Draft4Validator; the same examples also go through
Shabari's own parser, so the CRD and the operator agree on what is valid.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shabari.core.specdict import spec_from_mapping
from shabari.k8s.annotations import policy_spec_from_annotations
from shabari.k8s.reconcile import known_featurizers, plan_policy
from shabari.k8s.sizing import (
    DefaultSizes,
    derived_sizes,
    needs_derived_sizes,
    target_container,
)

CHART = Path(__file__).resolve().parents[2] / "charts" / "shabari"
CRD = yaml.safe_load((CHART / "crds" / "functionsizingpolicies.shabari.dev.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))


def documents(kind: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                out.append((path.name, doc))
    return out


POLICIES = documents("FunctionSizingPolicy")
SERVICES = documents("Service")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = VERSION["schema"]["openAPIV3Schema"]
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


class TestCRDShape:
    def test_structural(self) -> None:
        """Rules of structural schemas the API server enforces (kubernetes-validate does not)."""
        def walk(node: Any) -> None:
            if isinstance(node, dict):
                assert not ("properties" in node and "additionalProperties" in node), node
                if "anyOf" in node:  # only the int-or-string form may name types in anyOf
                    assert node.get("x-kubernetes-int-or-string") is True, node
                    assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], node
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(VERSION["schema"]["openAPIV3Schema"])

    def test_contract(self) -> None:
        spec = CRD["spec"]
        assert CRD["metadata"]["name"] == "functionsizingpolicies.shabari.dev"
        assert spec["names"]["kind"] == "FunctionSizingPolicy"
        assert spec["names"]["shortNames"] == ["fsp"]
        assert spec["scope"] == "Namespaced"
        assert VERSION["name"] == "v1alpha1" and VERSION["subresources"] == {"status": {}}
        columns = {c["name"] for c in VERSION["additionalPrinterColumns"]}
        assert {"Target", "SLO", "Mode", "Invocations", "SLO-Attainment", "Ready",
                "Recommended", "Savings"} <= columns
        mode = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["mode"]
        assert mode["enum"] == ["InPlace", "Variants", "Recommend", "Off"]

    def test_status_schema_holds_what_the_operator_writes(self) -> None:
        status = VERSION["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        for key in ("conditions", "observedGeneration", "invocations", "sloAttainment",
                    "allocation", "modelVersion", "function", "slo", "recommendation"):
            assert key in status


class TestExamples:
    def test_there_are_examples(self) -> None:
        assert len(POLICIES) >= 2 and len(SERVICES) >= 1

    @pytest.mark.parametrize(("name", "doc"), POLICIES, ids=[n for n, _ in POLICIES])
    def test_policy_matches_schema_and_parser(self, name: str, doc: dict[str, Any],
                                              validator: jsonschema.Draft4Validator) -> None:
        validator.validate(doc)
        derived = None
        if needs_derived_sizes(doc["spec"]):  # derived from the example's own target
            target = next(d for _, d in SERVICES
                          if d["metadata"]["name"] == doc["spec"]["targetRef"]["name"])
            derived = derived_sizes(target_container(target), DefaultSizes())
        spec = spec_from_mapping(doc["spec"]["targetRef"]["name"], {**(derived or {}),
                                                                    **doc["spec"]})
        known = known_featurizers()
        assert known is not None
        spec.check_featurizer(known)
        plan = plan_policy(doc, known, derived)
        assert plan.error is None and plan.spec == spec

    @pytest.mark.parametrize(("name", "doc"), SERVICES, ids=[n for n, _ in SERVICES])
    def test_annotated_service_parses(self, name: str, doc: dict[str, Any]) -> None:
        annotations = doc["metadata"].get("annotations") or {}
        if not annotations:
            return  # a plain target of a FunctionSizingPolicy example
        data = policy_spec_from_annotations(doc["metadata"]["name"], annotations,
                                            known_featurizers())
        assert data["slo"] == {"latencyMs": 300.0}


BAD = [
    ("unknown mode", ["spec", "mode"], "Sideways"),
    ("both SLOs", ["spec", "slo"], {"latencyMs": 100, "slowdown": 2}),
    ("zero latency", ["spec", "slo"], {"latencyMs": 0}),
    ("slowdown below 1", ["spec", "slo"], {"slowdown": 0.5}),
    ("bad CPU quantity", ["spec", "sizes", "cpu"], ["2x"]),
    ("empty memory list", ["spec", "sizes", "memory"], []),
    ("unknown target kind", ["spec", "targetRef", "kind"], "Pod"),
    ("exploration rate above 1", ["spec", "exploration", "rate"], 1.5),
]


@pytest.mark.parametrize(("what", "path", "value"), BAD, ids=[b[0] for b in BAD])
def test_schema_rejects(what: str, path: list[str], value: Any,
                        validator: jsonschema.Draft4Validator) -> None:
    doc = copy.deepcopy(POLICIES[0][1])
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    assert list(validator.iter_errors(doc)), what
