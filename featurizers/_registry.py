"""The featurizer registry, kind detection and the never-raising `extract` entry point.

Built-in kinds are registered at import; third-party kinds come from the `shabari.featurizers`
entry-point group, loaded lazily once on first use. A plugin that fails to load, a sniffer that
raises and a featurizer that raises or returns junk are all contained here, so the gateway can
call `extract` on any request body without a try/except of its own.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from featurizers import array, audio, image, jsondoc, table, text, video
from featurizers._util import Features, decode_text, generic, sanitize

#: A featurizer: (body, options) -> features. It may raise on malformed input.
FeatureFunc = Callable[[bytes, Mapping[str, object]], Mapping[str, float]]
#: A sniffer: the first bytes of a body -> whether it is this kind (magic bytes).
SniffFunc = Callable[[bytes], bool]

ENTRY_POINT_GROUP = "shabari.featurizers"
SNIFF_BYTES = 4096

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Kind:
    func: FeatureFunc
    sniff: SniffFunc | None
    content_types: tuple[str, ...]


_kinds: dict[str, _Kind] = {}
_lock = threading.Lock()
_plugins_loaded = False

_EMPTY: Mapping[str, object] = {}


def register(
    kind: str,
    func: FeatureFunc,
    *,
    sniff: SniffFunc | None = None,
    content_types: Iterable[str] = (),
) -> None:
    """Register (or replace) featurizer `kind`.

    `sniff(head)` recognises the kind from its first bytes during `auto` detection (registered
    sniffers are tried in registration order); `content_types` are MIME types ("text/csv") or
    prefixes ending in "/" ("image/") that select the kind when no sniffer matched.
    """
    if not isinstance(kind, str) or not kind or kind == "auto":
        raise ValueError(f"featurizer kind must be a non-empty string other than 'auto': {kind!r}")
    if not callable(func):
        raise TypeError(f"featurizer {kind!r} must be callable, got {type(func).__name__}")
    with _lock:
        _kinds[kind] = _Kind(func, sniff, tuple(ct.lower() for ct in content_types))


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def load_plugins(*, force: bool = False) -> list[str]:
    """Load `shabari.featurizers` entry points (once, unless `force`); return the kinds added.

    An entry point named KIND refers either to a featurizer callable (optionally carrying a
    callable `sniff` and an iterable `content_types` attribute) or to an object with an
    `extract` method (and optional `sniff` method / `content_types` attribute). A plugin that
    fails to import or is not callable is skipped with a warning.
    """
    global _plugins_loaded
    with _lock:
        if _plugins_loaded and not force:
            return []
        _plugins_loaded = True
    added: list[str] = []
    try:
        eps = list(_entry_points())
    except Exception as exc:
        warnings.warn(f"featurizers: cannot list entry points: {exc}", RuntimeWarning,
                      stacklevel=2)
        return added
    for ep in eps:
        try:
            obj = ep.load()
            extract_attr = getattr(obj, "extract", None)
            func = extract_attr if callable(extract_attr) else obj
            sniff_attr = getattr(obj, "sniff", None)
            cts = getattr(obj, "content_types", ())
            register(ep.name, func, sniff=sniff_attr if callable(sniff_attr) else None,
                     content_types=[c for c in cts if isinstance(c, str)])
        except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() at import, too
            warnings.warn(f"featurizers: skipping plugin {ep.name!r} ({ep.value}): {exc}",
                          RuntimeWarning, stacklevel=2)
            continue
        added.append(ep.name)
    return added


def _ensure_plugins() -> None:
    if not _plugins_loaded:
        load_plugins()


def kinds() -> list[str]:
    """Registered kinds (built-in and plugins), sorted."""
    _ensure_plugins()
    return sorted(_kinds)


def _content_type_kind(content_type: str | None) -> str | None:
    if not content_type:
        return None
    mime = content_type.split(";", 1)[0].strip().lower()
    best: tuple[int, str] | None = None
    for name, k in list(_kinds.items()):
        for ct in k.content_types:
            hit = mime.startswith(ct) if ct.endswith("/") else (mime == ct or (
                ct.startswith("+") and mime.endswith(ct)))
            if hit and (best is None or len(ct) > best[0]):
                best = (len(ct), name)
    return best[1] if best else None


def detect_kind(body: bytes, content_type: str | None = None) -> str:
    """The kind `auto` resolves to: magic bytes, then Content-Type, then text heuristics."""
    _ensure_plugins()
    head = body[:SNIFF_BYTES]
    for name, k in list(_kinds.items()):
        if k.sniff is None:
            continue
        try:
            if k.sniff(head):
                return name
        except Exception:
            log.debug("featurizers: sniffer of %r raised", name, exc_info=True)
    by_type = _content_type_kind(content_type)
    if by_type is not None:
        return by_type
    sample = decode_text(body[:SNIFF_BYTES])
    if sample is None or not body:
        return "generic"
    first = sample.lstrip("\ufeff \t\r\n")[:1]
    if first in ("{", "["):
        return "json"
    if table.looks_like_table(sample, complete=len(body) <= SNIFF_BYTES):
        return "table"
    return "text"


def extract(
    body: bytes,
    content_type: str | None = None,
    kind: str = "auto",
    options: Mapping[str, object] | None = None,
) -> Features:
    """Features of `body`; never raises. See docs/featurizers.md for names per kind.

    Always returns `bytes` and `entropy`, plus `kind.<name>: 1.0` for the kind used. If the
    kind's parser fails (malformed, truncated, or a different format), the result is those
    generic features plus `malformed: 1.0`; an unregistered `kind` adds `unknown_kind: 1.0`.
    """
    try:
        if not isinstance(body, bytes | bytearray | memoryview):
            body = bytes(str(body), "utf-8", "replace")
        body = bytes(body)
        opts: Mapping[str, object] = options if isinstance(options, Mapping) else _EMPTY
    except Exception:
        body, opts = b"", _EMPTY
    try:
        feats = generic(body, opts)
    except Exception:  # pragma: no cover - generic() only slices and counts bytes
        feats = {"bytes": float(len(body)), "entropy": 0.0}
    try:
        name = detect_kind(body, content_type) if kind == "auto" else str(kind)
        _ensure_plugins()
        entry = _kinds.get(name)
        if entry is None:
            feats["unknown_kind"] = 1.0
            name = "generic"
        feats[f"kind.{name}"] = 1.0
        if entry is not None:
            try:
                kind_feats = sanitize(entry.func(body, opts))
            except Exception as exc:
                log.debug("featurizers: %s parser rejected input: %s", name, exc)
                feats["malformed"] = 1.0
            else:
                kind_feats.pop("bytes", None)
                feats.update(kind_feats)
    except Exception:  # pragma: no cover - detection is guarded piecewise
        log.debug("featurizers: extract failed", exc_info=True)
        feats["malformed"] = 1.0
    return feats


def _generic(body: bytes, options: Mapping[str, object]) -> Features:
    return generic(body, options)


def _register_builtins() -> None:
    register("image", image.featurize, sniff=image.sniff, content_types=["image/"])
    register("video", video.featurize, sniff=video.sniff, content_types=["video/"])
    register("audio", audio.featurize, sniff=audio.sniff, content_types=["audio/"])
    register("array", array.featurize, sniff=array.sniff,
             content_types=["application/x-npy", "application/npy"])
    register("json", jsondoc.featurize,
             content_types=["application/json", "+json", "application/x-ndjson"])
    register("table", table.featurize,
             content_types=["text/csv", "text/tab-separated-values", "application/csv"])
    register("text", text.featurize, content_types=["text/"])
    register("generic", _generic, content_types=["application/octet-stream"])


_register_builtins()
