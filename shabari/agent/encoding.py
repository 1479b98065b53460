"""Turning an input's features into what the models read: sanitized, log-scaled, tile-coded.

Featurizer output is untrusted (a malformed upload, a NaN from a broken header): every value is
checked here once, non-finite values are dropped and flagged, and every number is log-scaled
(`sign(v) * ln(1 + |v|)`) because resource needs grow multiplicatively with input size.

For the bandit each scaled number is also tile-coded: two one-hot bins offset by half a bin
(`tiles` bins per unit of ln). Interacted with the action, the bins let a linear learner
represent the step "this size meets the SLO up to this input size, then misses it", which a
single linear term per feature cannot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: characters VW's text format reserves (namespace bar, value colon, whitespace)
_VW_RESERVED = str.maketrans({c: "_" for c in " \t\n\r|:'\""})
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_LIMIT = 4096


def vw_name(name: str) -> str:
    """A feature name safe to put in a VW text line (cached)."""
    safe = _NAME_CACHE.get(name)
    if safe is None:
        safe = name.translate(_VW_RESERVED) or "_"
        if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
            _NAME_CACHE[name] = safe
    return safe


def scaled_features(features: Mapping[str, float]) -> dict[str, float]:
    """Finite, log-scaled copies of `features` keyed by VW-safe names.

    Non-numbers, NaN and infinities are dropped; if any were, `nonfinite` = 1 marks it, so the
    models can still tell a broken input apart.
    """
    out: dict[str, float] = {}
    bad = False
    for key, value in features.items():
        if isinstance(value, str | bytes):
            bad = True
            continue
        try:
            v = float(value)  # ints, floats, numpy scalars
        except (TypeError, ValueError, OverflowError):
            bad = True
            continue
        if not math.isfinite(v):
            bad = True
            continue
        out[vw_name(str(key))] = math.copysign(math.log1p(abs(v)), v)
    if bad:
        out["nonfinite"] = 1.0
    return out


def shared_line(scaled: Mapping[str, float], slo_ms: float | None, tiles: float) -> str:
    """The VW `shared` line: numbers plus two offset tilings of each, and the SLO."""
    parts = ["shared |S"]
    append = parts.append
    items = list(scaled.items())
    if slo_ms is not None and slo_ms > 0 and math.isfinite(slo_ms):
        items.append(("_slo", math.log1p(slo_ms)))
    for name, x in items:
        t = x * tiles
        append(f"{name}:{x:.4f} {name}~{math.floor(t)} {name}^{math.floor(t + 0.5)}")
    return " ".join(parts)
