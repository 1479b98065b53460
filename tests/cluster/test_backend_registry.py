"""`create_backend`: one call builds any backend, with options checked before serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from shabari.backends.base import Backend
from shabari.backends.knative import KnativeBackend
from shabari.backends.kubernetes import KubernetesBackend
from shabari.backends.openwhisk import OpenWhiskBackend
from shabari.backends.registry import BACKENDS, create_backend, wskprops
from shabari.core.errors import ConfigError


class TestCreateBackend:
    def test_every_name_builds_a_backend(self, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WSK_CONFIG_FILE", str(tmp_path / "none"))
        options = {
            "local": {"functions": {}},
            "kubernetes": {"api_url": "http://127.0.0.1:1"},
            "knative": {"ingress_url": "http://127.0.0.1:1"},
            "openwhisk": {"api_host": "http://127.0.0.1:1", "auth": "u:k"},
        }
        for name in BACKENDS:
            backend = create_backend(name, options[name])
            assert isinstance(backend, Backend)
            assert backend.name == name
        assert isinstance(create_backend("kubernetes", options["kubernetes"]), KubernetesBackend)
        assert isinstance(create_backend("knative", options["knative"]), KnativeBackend)

    def test_unknown_name(self) -> None:
        with pytest.raises(ConfigError, match="unknown backend 'lambda'"):
            create_backend("lambda", {})

    def test_bad_options_name_the_option(self) -> None:
        with pytest.raises(ConfigError, match="ready_timeout_s"):
            create_backend("kubernetes", {"ready_timeout_s": "soon"})
        with pytest.raises(ConfigError, match="api_timeout_s"):
            create_backend("kubernetes", {"api_timeout_s": -1})
        with pytest.raises(ConfigError, match="nodes"):
            create_backend("kubernetes", {"nodes": [{"name": "n1", "cpu": "4"}]})
        with pytest.raises(ConfigError, match="ingress_url"):
            create_backend("knative", {})
        with pytest.raises(ConfigError, match="manage_variants"):
            create_backend("knative", {"ingress_url": "http://x", "manage_variants": "maybe"})
        with pytest.raises(ConfigError, match="action_timeout_ms"):
            create_backend("openwhisk", {"api_host": "x", "auth": "u:k",
                                         "action_timeout_ms": "long"})

    def test_misspelt_options_are_caught(self) -> None:
        with pytest.raises(ConfigError, match="unknown option 'ingres_url'") as info:
            create_backend("knative", {"ingres_url": "http://x"})
        assert "ingress_url" in info.value.detail  # the known options are listed
        with pytest.raises(ConfigError, match="unknown option 'pod_template'"):
            create_backend("kubernetes", {"pod_template": {}})

    def test_openwhisk_reads_wskprops(self, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        props = tmp_path / "wskprops"
        props.write_text("APIHOST=ow.example.com\nAUTH=abc:def\nNAMESPACE=team\n")
        monkeypatch.setenv("WSK_CONFIG_FILE", str(props))
        assert wskprops()["AUTH"] == "abc:def"
        backend = create_backend("openwhisk", {"namespace": "override"})
        assert isinstance(backend, OpenWhiskBackend)
        assert backend.api_host == "https://ow.example.com"
        assert backend.namespace == "override"
