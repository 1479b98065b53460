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
from dataclasses import dataclass

#: bins per unit of ln(1 + value), unless configured otherwise
DEFAULT_TILES = 2.0

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
    log1p = math.log1p
    for key, value in features.items():
        kind = type(value)
        if kind is float or kind is int:
            v = float(value)
        elif isinstance(value, str | bytes):
            bad = True
            continue
        else:
            try:
                v = float(value)  # numpy scalars, bools, Decimals
            except (TypeError, ValueError, OverflowError):
                bad = True
                continue
        if v - v != 0.0:  # NaN or +-inf
            bad = True
            continue
        name = _NAME_CACHE.get(key) if type(key) is str else None
        if name is None:
            name = vw_name(str(key))
        out[name] = log1p(v) if v >= 0.0 else -log1p(-v)
    if bad:
        out["nonfinite"] = _LOG2
    return out


#: ln(1 + 1): the scaled value of a 0/1 indicator feature that is set
_LOG2 = math.log(2.0)


def tile_keys(scaled: Mapping[str, float], tiles: float) -> tuple[str, ...]:
    """Two offset one-hot bins per scaled number (none for 0/1 indicators: nothing to bin)."""
    if tiles <= 0:
        return ()
    out: list[str] = []
    append = out.append
    floor = math.floor
    for name, x in scaled.items():
        if x == 0.0 or x == _LOG2:
            continue
        t = x * tiles
        append(f"{name}~{floor(t)}")
        append(f"{name}^{floor(t + 0.5)}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """One input's features as both models read them; computed once per decision."""

    scaled: dict[str, float]
    tiles: tuple[str, ...]

    @classmethod
    def of(cls, features: Mapping[str, float], tiles: float = DEFAULT_TILES) -> FeatureVector:
        scaled = scaled_features(features)
        return cls(scaled, tile_keys(scaled, tiles))


def shared_line(fv: FeatureVector, slo_ms: float | None, tiles: float) -> str:
    """The VW `shared` line: the numbers, their tiles, and the (log) SLO with its tiles."""
    parts = ["shared |S", *(f"{k}:{x:.4f}" for k, x in fv.scaled.items()), *fv.tiles]
    if slo_ms is not None and slo_ms > 0 and math.isfinite(slo_ms):
        x = math.log1p(slo_ms)
        parts.append(f"_slo:{x:.4f}")
        parts.extend(tile_keys({"_slo": x}, tiles))
    return " ".join(parts)
