"""The shared spec schema: round trip, defaults and precise error paths."""

from __future__ import annotations

import pytest

from shabari.core import Size, SpecError, spec_from_mapping, spec_to_mapping


def test_round_trip() -> None:
    data = {"slo": {"latencyMs": 300}, "featurizer": {"type": "image", "options": {"a": 1}},
            "sizes": {"cpu": ["250m", "1"], "memory": ["256Mi", "1Gi"]},
            "defaultSize": {"cpu": "1", "memory": "1Gi"}}
    spec = spec_from_mapping("thumb", data)
    assert spec.sizes[0] == Size(250, 256) and len(spec.sizes) == 4
    assert spec.default_size == Size(1000, 1024)
    assert spec_from_mapping("thumb", spec_to_mapping(spec)) == spec


def test_resource_policy_doubles() -> None:
    spec = spec_from_mapping("f", {"resourcePolicy": {"minAllowed": {"cpu": "250m", "memory": "128Mi"},
                                                       "maxAllowed": {"cpu": "2", "memory": "512Mi"}}})
    assert spec.cpu_options == (250, 500, 1000, 2000)
    assert spec.memory_options == (128, 256, 512)


@pytest.mark.parametrize(("data", "where"), [
    ({"sizes": {"cpu": ["2x"], "memory": ["1Gi"]}}, r"sizes\.cpu\[0\]"),
    ({"sizes": {"cpu": [], "memory": ["1Gi"]}}, r"sizes\.cpu: must not be empty"),
    ({"sizes": {"cpu": ["1", "1"], "memory": ["1Gi"]}}, r"sizes\.cpu: duplicate"),
    ({"slo": {"latencyMs": -5}, "sizes": {"cpu": ["1"], "memory": ["1Gi"]}}, r"slo\.latencyMs"),
    ({"slo": {"p99": 5}, "sizes": {"cpu": ["1"], "memory": ["1Gi"]}}, "unknown keys"),
    ({}, "set sizes or resourcePolicy"),
    ({"sizes": {"cpu": ["1"], "memory": ["32Mi"]}}, "below the floor"),
])
def test_errors_name_the_field(data: dict[str, object], where: str) -> None:
    with pytest.raises(SpecError, match=where):
        spec_from_mapping("f", data)


def test_errors_carry_the_caller_path_once() -> None:
    data = {"sizes": {"cpu": ["1"], "memory": ["1Gi"]}, "defaultSize": {"cpu": "2", "memory": "1Gi"}}
    with pytest.raises(SpecError) as info:
        spec_from_mapping("f", data, "functions.f")
    assert info.value.field == "functions.f.defaultSize"
    assert str(info.value).count("defaultSize") == 1
