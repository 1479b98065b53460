"""The functions YAML: shared spec schema plus backend keys; clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shabari.core import ConfigError, Size, SpecError
from shabari.gateway.config import (
    GatewayConfig,
    entries_from_mapping,
    load_backend_options,
    load_functions_yaml,
    load_gateway_file,
)


class TestParse:
    def test_spec_and_backend_keys(self, tmp_path: Path) -> None:
        (tmp_path / "cfg.yaml").write_text(
            "functions:\n"
            "  thumb:\n"
            "    slo: {latencyMs: 250}\n"
            "    featurizer: {type: image}\n"
            "    sizes: {cpu: [250m, 1], memory: [128Mi, 256Mi]}\n"
            "    directory: fn/thumb\n"
            "    perfTable: fn/thumb/perf.csv\n")
        entries = load_functions_yaml(tmp_path / "cfg.yaml")
        e = entries["thumb"]
        assert e.spec.slo.latency_ms == 250
        assert e.spec.featurizer == "image"
        assert Size(1000, 256) in e.spec.sizes and len(e.spec.sizes) == 4
        assert e.directory == tmp_path / "fn/thumb"
        assert e.perf_table == tmp_path / "fn/thumb/perf.csv"

    def test_bad_field_is_named(self) -> None:
        with pytest.raises(SpecError) as info:
            entries_from_mapping({"functions": {"f": {"sizes": {"cpu": ["2x"], "memory": ["1Gi"]}}}})
        assert "functions.f.sizes.cpu" in str(info.value)

    @pytest.mark.parametrize("doc", [None, [], {"functions": None}, {"functions": []},
                                     {"functions": {"f": "nope"}}])
    def test_bad_documents(self, doc: object) -> None:
        with pytest.raises(ConfigError):
            entries_from_mapping(doc)

    def test_invalid_yaml_and_missing_file(self, tmp_path: Path) -> None:
        (tmp_path / "bad.yaml").write_text("functions: [unclosed\n")
        with pytest.raises(ConfigError, match="invalid YAML"):
            load_functions_yaml(tmp_path / "bad.yaml")
        with pytest.raises(ConfigError, match="cannot read"):
            load_functions_yaml(tmp_path / "missing.yaml")


class TestEmptyRegistry:
    def test_operator_fresh_install_document_is_valid(self, tmp_path: Path) -> None:
        # the chart's registry ConfigMap before any FunctionSizingPolicy exists
        (tmp_path / "functions.yaml").write_text("functions: {}\n")
        assert load_functions_yaml(tmp_path / "functions.yaml") == {}


class TestBackendSection:
    def test_backend_options_are_read(self, tmp_path: Path) -> None:
        (tmp_path / "cfg.yaml").write_text(
            "backend: {namespace: fns, image_prefix: reg/}\nfunctions: {}\n")
        f = load_gateway_file(tmp_path / "cfg.yaml")
        assert f.backend == {"namespace": "fns", "image_prefix": "reg/"}
        assert f.functions == {}

    def test_no_backend_section_is_no_options(self, tmp_path: Path) -> None:
        (tmp_path / "cfg.yaml").write_text("functions: {}\n")
        assert load_gateway_file(tmp_path / "cfg.yaml").backend == {}

    @pytest.mark.parametrize("section", ["[a, b]", "nope", "{1: x}"])
    def test_backend_must_be_a_mapping_of_names(self, tmp_path: Path, section: str) -> None:
        (tmp_path / "cfg.yaml").write_text(f"backend: {section}\nfunctions: {{}}\n")
        with pytest.raises(ConfigError, match="'backend' must be a mapping"):
            load_gateway_file(tmp_path / "cfg.yaml")


class TestBackendConfigFile:
    def test_reads_only_the_backend_section(self, tmp_path: Path) -> None:
        (tmp_path / "b.yaml").write_text("backend: {namespace: fns}\n")
        assert load_backend_options(tmp_path / "b.yaml") == {"namespace": "fns"}

    def test_other_keys_are_refused(self, tmp_path: Path) -> None:
        (tmp_path / "b.yaml").write_text("backend: {}\nfunctions: {}\n")
        with pytest.raises(ConfigError, match="only a 'backend' key"):
            load_backend_options(tmp_path / "b.yaml")


class TestGatewayConfig:
    def test_state_paths(self, tmp_path: Path) -> None:
        c = GatewayConfig(state_dir=tmp_path)
        assert c.decision_log_path == tmp_path / "decisions.jsonl"
        assert c.checkpoint_dir == tmp_path / "models"
        assert GatewayConfig().decision_log_path is None
