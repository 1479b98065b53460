"""Registry, kind detection and third-party plugins loaded from real entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import featurizers
from featurizers import _registry, detect_kind, extract, kinds, load_plugins, register

BUILTIN = {"array", "audio", "generic", "image", "json", "table", "text", "video"}


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Restore the registry (and the plugins-loaded flag) after a test that changes it."""
    saved = dict(_registry._kinds)
    loaded = _registry._plugins_loaded
    yield
    _registry._kinds.clear()
    _registry._kinds.update(saved)
    _registry._plugins_loaded = loaded


def _install_plugin(root: Path, name: str, entry_points: str, module_src: str) -> None:
    """A real installed distribution: a module plus a .dist-info with entry_points.txt."""
    (root / f"{name}.py").write_text(textwrap.dedent(module_src))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


class TestDetection:
    def test_builtin_kinds_listed(self) -> None:
        assert set(kinds()) >= BUILTIN

    @pytest.mark.parametrize(("body", "ctype", "kind"), [
        (b'  {"a": 1}', None, "json"),
        (b"a,b\n1,2\n3,4\n", None, "table"),
        (b"just some words\n", None, "text"),
        (b"\x00\x01\x02\xff", None, "generic"),
        (b"\x00\x01\x02\xff", "image/png", "image"),
        (b"plain", "text/csv; charset=utf-8", "table"),
        (b"x", "application/json", "json"),
        (b"x", "application/x-npy", "array"),
        (b"x", "application/octet-stream", "generic"),
    ])
    def test_magic_then_content_type_then_heuristics(self, body: bytes, ctype: str | None,
                                                     kind: str) -> None:
        assert detect_kind(body, ctype) == kind
        assert extract(body, ctype)[f"kind.{kind}"] == 1.0

    def test_explicit_kind_skips_detection(self) -> None:
        f = extract(b"1,2\n3,4\n", kind="text")
        assert f["kind.text"] == 1.0 and f["lines"] == 2.0

    def test_unknown_kind_falls_back_to_generic(self) -> None:
        f = extract(b"abc", kind="no-such-kind")
        assert f["unknown_kind"] == 1.0 and f["kind.generic"] == 1.0 and f["bytes"] == 3.0

    @pytest.mark.parametrize("options", [None, {}, {"sample_bytes": "many"},
                                         {"sample_bytes": -5, "max_elements": float("nan")}])
    def test_bad_options_fall_back_to_defaults(self, options: dict[str, object] | None) -> None:
        assert extract(b"[1, 2, 3]", options=options)["length"] == 3.0

    def test_non_bytes_body_does_not_raise(self) -> None:
        f = extract("text instead of bytes")  # type: ignore[arg-type]
        assert f["bytes"] == 21.0


class TestRegister:
    def test_custom_kind_with_sniffer(self, clean_registry: None) -> None:
        register("magic", lambda body, opts: {"payload": float(len(body) - 5)},
                 sniff=lambda head: head.startswith(b"MAGIC"))
        assert "magic" in kinds()
        f = extract(b"MAGIC12345")
        assert f["kind.magic"] == 1.0 and f["payload"] == 5.0

    def test_raising_featurizer_gives_malformed(self, clean_registry: None) -> None:
        def boom(body: bytes, opts: object) -> dict[str, float]:
            raise RuntimeError("plugin bug")

        register("boom", boom)
        f = extract(b"xyz", kind="boom")
        assert f == {"bytes": 3.0, "entropy": f["entropy"], "kind.boom": 1.0, "malformed": 1.0}

    def test_raising_sniffer_is_skipped(self, clean_registry: None) -> None:
        def bad_sniff(head: bytes) -> bool:
            raise ValueError("sniffer bug")

        register("badsniff", lambda b, o: {}, sniff=bad_sniff)
        assert extract(b"[1]")["kind.json"] == 1.0

    def test_junk_values_are_dropped(self, clean_registry: None) -> None:
        register("junk", lambda b, o: {"ok": 2, "nan": float("nan"), "inf": float("inf"),
                                       "s": "x", 3: 1.0, "bytes": 99.0})  # type: ignore[dict-item]
        f = extract(b"abcd", kind="junk")
        assert f["ok"] == 2.0 and f["bytes"] == 4.0
        assert not {"nan", "inf", "s"} & set(f)

    @pytest.mark.parametrize("kind", ["", "auto"])
    def test_invalid_kind_name_rejected(self, kind: str) -> None:
        with pytest.raises(ValueError, match="kind"):
            register(kind, lambda b, o: {})

    def test_non_callable_rejected(self) -> None:
        with pytest.raises(TypeError, match="callable"):
            register("x", 42)  # type: ignore[arg-type]


class TestEntryPointPlugins:
    def test_plugins_loaded_lazily_once_and_broken_ones_skipped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
    ) -> None:
        _install_plugin(tmp_path, "shabari_feat_demo", """
            [shabari.featurizers]
            lines2 = shabari_feat_demo:Lines
            broken = shabari_feat_demo_missing:nothing
            notcallable = shabari_feat_demo:NOT_CALLABLE
            exits = shabari_feat_exits:anything
        """, """
            LOADS = []
            NOT_CALLABLE = 42

            class _Lines:
                content_types = ["text/x-lines"]

                def __init__(self):
                    LOADS.append(1)

                def extract(self, body, options):
                    return {"n": float(body.count(b"\\n"))}

                def sniff(self, head):
                    return head.startswith(b"LINES\\n")

            Lines = _Lines()
        """)
        (tmp_path / "shabari_feat_exits.py").write_text("import sys\nsys.exit(3)\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(_registry, "_plugins_loaded", False)
        with pytest.warns(RuntimeWarning) as record:
            assert "lines2" in kinds()
        messages = " ".join(str(w.message) for w in record)
        assert all(name in messages for name in ("broken", "notcallable", "exits"))
        assert not {"broken", "notcallable", "exits"} & set(kinds())
        f = extract(b"LINES\na\nb\n")
        assert f["kind.lines2"] == 1.0 and f["n"] == 3.0
        assert extract(b"x\ny\n", content_type="text/x-lines")["kind.lines2"] == 1.0
        assert sys.modules["shabari_feat_demo"].LOADS == [1]  # imported once
        assert load_plugins() == []  # already loaded: nothing new
        with pytest.warns(RuntimeWarning):
            assert load_plugins(force=True) == ["lines2"]

    def test_entry_point_group_name(self) -> None:
        assert featurizers.ENTRY_POINT_GROUP == "shabari.featurizers"
