"""SLO annotations -> the shared spec mapping, with errors that name the annotation to fix."""

from __future__ import annotations

import pytest

from shabari.core.errors import SpecError
from shabari.k8s.annotations import (
    FEATURIZER,
    GPU,
    MODE,
    SIZES,
    SLO_LATENCY_MS,
    SLO_SLOWDOWN,
    has_shabari_annotations,
    mapping_from_annotations,
    policy_spec_from_annotations,
)

GRID = "cpu=250m,500m,1,2;memory=256Mi,512Mi,1Gi"
KINDS = {"auto", "image", "video"}


class TestOneAnnotationIsEnough:
    def test_slo_only_needs_no_grid(self) -> None:
        derived = {"sizes": {"cpu": ["250m", "2"], "memory": ["128Mi", "1Gi"]},
                   "defaultSize": {"cpu": "2", "memory": "1Gi"}}
        data = policy_spec_from_annotations("fn", {SLO_LATENCY_MS: "500", FEATURIZER: "image"},
                                            KINDS, derived)
        # the grid is not written: the operator derives it from the target when reconciling
        assert data == {"slo": {"latencyMs": 500.0},
                        "featurizer": {"type": "image", "options": {}}, "mode": "InPlace"}

    def test_recommend_mode(self) -> None:
        data = policy_spec_from_annotations("fn", {SLO_SLOWDOWN: "2", MODE: "Recommend"}, KINDS)
        assert data["mode"] == "Recommend"

    def test_derived_grid_still_validates_the_rest(self) -> None:
        with pytest.raises(SpecError, match=r"shabari\.dev/featurizer: featurizer: unknown"):
            policy_spec_from_annotations("fn", {SLO_LATENCY_MS: "5", FEATURIZER: "sonar"}, KINDS)


class TestParsing:
    def test_design_example(self) -> None:
        data = policy_spec_from_annotations(
            "fn", {SIZES: GRID, SLO_LATENCY_MS: "200", FEATURIZER: "image"}, KINDS)
        assert data == {
            "slo": {"latencyMs": 200.0},
            "featurizer": {"type": "image", "options": {}},
            "sizes": {"cpu": ["250m", "500m", "1", "2"], "memory": ["256Mi", "512Mi", "1Gi"]},
            "mode": "InPlace",
        }

    def test_slowdown_and_whitespace(self) -> None:
        data = mapping_from_annotations({SIZES: " cpu = 1 , 2 ; memory=1Gi ;", SLO_SLOWDOWN: "1.5"})
        assert data["sizes"] == {"cpu": ["1", "2"], "memory": ["1Gi"]}
        assert data["slo"] == {"slowdown": 1.5}

    @pytest.mark.parametrize(("value", "capable", "gpus"),
                             [("true", True, [0, 1]), ("2", True, [0, 2]), ("false", False, None)])
    def test_gpu(self, value: str, capable: bool, gpus: list[int] | None) -> None:
        data = mapping_from_annotations({SIZES: "cpu=1;memory=1Gi", GPU: value})
        assert data["gpuCapable"] is capable
        assert data["sizes"].get("gpu") == gpus

    def test_explicit_gpu_grid_wins(self) -> None:
        data = mapping_from_annotations({SIZES: "cpu=1;memory=1Gi;gpu=0,4", GPU: "true"})
        assert data["sizes"]["gpu"] == [0.0, 4.0]

    def test_mode(self) -> None:
        assert mapping_from_annotations({SIZES: "cpu=1;memory=1Gi", MODE: "Variants"})[
            "mode"] == "Variants"

    def test_detection(self) -> None:
        assert has_shabari_annotations({SLO_LATENCY_MS: "1"})
        assert not has_shabari_annotations({"shabari.dev/other": "x", "app": "y"})
        assert not has_shabari_annotations(None)


class TestErrors:
    @pytest.mark.parametrize(("annotations", "starts"), [
        ({SIZES: "cpu=250m,2x;memory=256Mi"}, "shabari.dev/sizes: sizes.cpu[1]: invalid CPU"),
        ({SIZES: "cpu=1;memory=lots"}, "shabari.dev/sizes: sizes.memory[0]: invalid memory"),
        ({SIZES: "cpu=1;disk=1Gi"}, "shabari.dev/sizes: sizes: expected 'cpu=...;memory=...'"),
        ({SIZES: "cpu=1;cpu=2;memory=1Gi"}, "shabari.dev/sizes: sizes: cpu is given twice"),
        ({SIZES: "cpu=1,1;memory=1Gi"}, "shabari.dev/sizes: sizes.cpu: duplicate values"),
        ({SIZES: "cpu=1"}, "shabari.dev/sizes: sizes.memory: must be a list"),
        ({FEATURIZER: "image"}, "shabari.dev/slo-latency-ms / shabari.dev/slo-slowdown: slo: set "
         "shabari.dev/slo-latency-ms or"),
        ({SLO_LATENCY_MS: "200", GPU: "true"}, "shabari.dev/gpu: gpu: a GPU-capable function"),
        ({SIZES: GRID, SLO_LATENCY_MS: "fast"},
         "shabari.dev/slo-latency-ms: slo.latencyMs: must be a number, got 'fast'"),
        ({SIZES: GRID, SLO_LATENCY_MS: "-5"}, "shabari.dev/slo-latency-ms: slo.latencyMs: must"),
        ({SIZES: GRID, SLO_SLOWDOWN: "0.5"}, "shabari.dev/slo-slowdown: slo.slowdown: must be"),
        ({SIZES: GRID, SLO_SLOWDOWN: "2", SLO_LATENCY_MS: "100"},
         "shabari.dev/slo-latency-ms / shabari.dev/slo-slowdown: slo: set exactly one"),
        ({SIZES: GRID, FEATURIZER: "sonar"}, "shabari.dev/featurizer: featurizer: unknown"),
        ({SIZES: GRID, GPU: "maybe"}, "shabari.dev/gpu: gpu: expected true, false"),
        ({SIZES: GRID, MODE: "Turbo"}, "shabari.dev/mode: mode: must be one of"),
        ({SIZES: "cpu=1;memory=32Mi"}, "shabari.dev/sizes: sizes.memory: memory 32Mi is below"),
    ])
    def test_message_names_annotation_and_field(self, annotations: dict[str, str],
                                                starts: str) -> None:
        with pytest.raises(SpecError) as info:
            policy_spec_from_annotations("fn", annotations, KINDS)
        assert str(info.value).startswith(starts), str(info.value)

    def test_unknown_featurizer_allowed_without_registry(self) -> None:
        data = policy_spec_from_annotations("fn", {SIZES: GRID, FEATURIZER: "sonar"}, None)
        assert data["featurizer"]["type"] == "sonar"
