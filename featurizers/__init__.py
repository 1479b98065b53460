"""Cheap, bounded input featurizers for per-invocation right-sizing (DESIGN 4.7).

`extract(body, content_type, kind, options)` turns a request body into a flat dict of float
features (image dimensions from the header, video duration and resolution from the container,
audio duration, array shape, table rows/columns, JSON length, text size) without decoding the
payload, and never raises. This package stands alone: it must not import `shabari`.
"""

from __future__ import annotations

from featurizers._registry import (
    ENTRY_POINT_GROUP,
    FeatureFunc,
    SniffFunc,
    detect_kind,
    extract,
    kinds,
    load_plugins,
    register,
)
from featurizers._util import DEFAULT_HEADER_BYTES, DEFAULT_MAX_ELEMENTS, DEFAULT_SAMPLE_BYTES

__all__ = [
    "DEFAULT_HEADER_BYTES",
    "DEFAULT_MAX_ELEMENTS",
    "DEFAULT_SAMPLE_BYTES",
    "ENTRY_POINT_GROUP",
    "FeatureFunc",
    "SniffFunc",
    "detect_kind",
    "extract",
    "kinds",
    "load_plugins",
    "register",
]
