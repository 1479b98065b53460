"""Derived size grids and namespaced function names (shabari.k8s.sizing)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from shabari.core import MODES as CORE_MODES
from shabari.core.errors import SpecError
from shabari.core.specdict import check_function_name
from shabari.k8s.sizing import (
    ContainerResources,
    DefaultSizes,
    derived_sizes,
    function_name,
    target_container,
)
from shabari.k8s.types import MODES, WorkloadBody


def workload(resources: dict[str, Any] | None) -> WorkloadBody:
    container: dict[str, Any] = {"name": "c", "image": "x"}
    if resources is not None:
        container["resources"] = resources
    return cast(WorkloadBody, {"spec": {"template": {"spec": {"containers": [container]}}}})


class TestDerivedGrid:
    def test_limits_bound_the_grid_and_are_the_default(self) -> None:
        res = target_container(workload({"limits": {"cpu": "2", "memory": "1Gi"}}))
        assert derived_sizes(res, DefaultSizes()) == {
            "sizes": {"cpu": ["250m", "500m", "1", "2"],
                      "memory": ["128Mi", "256Mi", "512Mi", "1Gi"]},
            "defaultSize": {"cpu": "2", "memory": "1Gi"},
        }

    def test_requests_without_limits_reach_the_chart_maximum(self) -> None:
        res = target_container(workload({"requests": {"cpu": "300m", "memory": "300Mi"}}))
        out = derived_sizes(res, DefaultSizes(max_cpu=1000, max_memory=512))
        assert out["sizes"] == {"cpu": ["250m", "300m", "500m", "1"],
                                "memory": ["128Mi", "256Mi", "300Mi", "512Mi"]}
        assert out["defaultSize"] == {"cpu": "300m", "memory": "300Mi"}

    def test_no_resources_uses_the_chart_defaults(self) -> None:
        out = derived_sizes(target_container(workload(None)), DefaultSizes())
        assert out["sizes"]["cpu"] == ["250m", "500m", "1", "2"]
        assert out["defaultSize"] == {"cpu": "2", "memory": "2Gi"}

    def test_limit_below_the_chart_minimum(self) -> None:
        res = ContainerResources("c", cpu_limit=100, memory_limit=64)
        assert derived_sizes(res, DefaultSizes())["sizes"] == {"cpu": ["100m"],
                                                               "memory": ["64Mi"]}

    def test_unreadable_quantity_names_the_field(self) -> None:
        with pytest.raises(SpecError, match=r"resources\.limits\.cpu"):
            target_container(workload({"limits": {"cpu": "lots"}}))


class TestFunctionNames:
    def test_home_namespace_keeps_the_plain_name(self) -> None:
        assert function_name("default", "thumb") == "thumb"
        assert function_name("apps", "thumb", home_namespace="apps") == "thumb"

    def test_other_namespaces_are_qualified(self) -> None:
        assert function_name("team-b", "thumb") == "thumb--team-b"

    @pytest.mark.parametrize(("pairs"), [
        [("default", "a--b"), ("b", "a")],          # a name that looks qualified
        [("x--y", "a"), ("y", "a--x")],             # separators on both sides
        [("hdeadbeef", "a"), ("default", "a")],     # a namespace shaped like a hash
        [("n" * 40, "f" * 40), ("n" * 40, "f" * 41)],  # too long for one label
    ])
    def test_distinct_pairs_get_distinct_valid_labels(self, pairs: list[tuple[str, str]]
                                                      ) -> None:
        names = [function_name(ns, n) for ns, n in pairs]
        assert len(set(names)) == len(names)
        for name in names:
            assert check_function_name(name) == name


def test_operator_modes_are_the_core_modes() -> None:
    assert tuple(MODES) == tuple(CORE_MODES)
