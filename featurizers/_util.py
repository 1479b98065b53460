"""Shared helpers for the featurizers: option parsing, bounded sampling, entropy, sanitising.

Every featurizer reads only headers or a bounded sample of the body, so these helpers are the
one place where the bounds (sample size, element budget) and their defaults live.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

#: Features as returned to callers: stable names -> finite floats.
Features = dict[str, float]

DEFAULT_SAMPLE_BYTES = 65536
DEFAULT_ENTROPY_BYTES = 16384
DEFAULT_HEADER_BYTES = 1 << 20
DEFAULT_MAX_ELEMENTS = 4096
DEFAULT_FFPROBE_TIMEOUT_S = 2.0


class NotRecognized(ValueError):
    """The body is not (or not a valid instance of) the format a featurizer expected."""


def _opt_number(options: Mapping[str, object], name: str) -> float | None:
    value = options.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def opt_int(options: Mapping[str, object], name: str, default: int, lo: int, hi: int) -> int:
    """Integer option `name`, clamped to [lo, hi]; missing or invalid values give `default`."""
    value = _opt_number(options, name)
    if value is None:
        return default
    return int(min(max(value, lo), hi))


def opt_float(
    options: Mapping[str, object], name: str, default: float, lo: float, hi: float
) -> float:
    """Float option `name`, clamped to [lo, hi]; missing or invalid values give `default`."""
    value = _opt_number(options, name)
    if value is None:
        return default
    return min(max(value, lo), hi)


def opt_bool(options: Mapping[str, object], name: str, default: bool) -> bool:
    """Boolean option; accepts bools, numbers and the strings true/false/1/0/yes/no."""
    value = options.get(name)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    return default


def sample_bytes(options: Mapping[str, object]) -> int:
    """How many bytes of a body text-like featurizers (and entropy) may look at."""
    return opt_int(options, "sample_bytes", DEFAULT_SAMPLE_BYTES, 256, 16 << 20)


def entropy_bytes(options: Mapping[str, object]) -> int:
    """How many leading bytes the generic `entropy` feature is computed over."""
    return opt_int(options, "entropy_bytes", DEFAULT_ENTROPY_BYTES, 16, 16 << 20)


def header_bytes(options: Mapping[str, object]) -> int:
    """How far into a body header parsers may search (JPEG SOF, MP3 sync, EBML Tracks, ...)."""
    return opt_int(options, "header_bytes", DEFAULT_HEADER_BYTES, 4096, 64 << 20)


def max_elements(options: Mapping[str, object]) -> int:
    """Budget of boxes / EBML elements / chunks / IFD entries a container walk may visit."""
    return opt_int(options, "max_elements", DEFAULT_MAX_ELEMENTS, 16, 1 << 20)


def entropy(sample: bytes) -> float:
    """Shannon entropy of the byte histogram of `sample`, in bits per byte (0..8)."""
    if not sample:
        return 0.0
    counts = np.bincount(np.frombuffer(sample, dtype=np.uint8), minlength=256)
    p = counts[counts > 0] / len(sample)
    h = float(-(p * np.log2(p)).sum())
    return min(max(h, 0.0), 8.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def generic(body: bytes, options: Mapping[str, object]) -> Features:
    """Features every body gets: its size and the entropy of a bounded prefix."""
    return {"bytes": float(len(body)), "entropy": entropy(body[: entropy_bytes(options)])}


def sanitize(raw: object) -> Features:
    """Keep only string keys with finite numeric values, as floats (plugins may return junk)."""
    out: Features = {}
    if not isinstance(raw, Mapping):
        raise NotRecognized(f"featurizer returned {type(raw).__name__}, not a mapping")
    for key, value in raw.items():
        if not isinstance(key, str) or isinstance(value, str | bytes):
            continue
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            continue
        if math.isfinite(f):
            out[key] = f
    return out


def one_hot(prefix: str, name: str) -> Features:
    """A categorical as a one-hot feature, e.g. one_hot("format", "png") -> {"format.png": 1.0}."""
    return {f"{prefix}.{name}": 1.0}


def count_lines(body: bytes, limit: int) -> tuple[float, bool]:
    """Number of lines in `body` (a last line without newline counts) and whether it is an
    estimate: exact when the body fits in `limit` bytes, else len(body) divided by the mean
    length of the complete lines in two samples of limit/2 bytes, one from each end (so
    lines that grow along the file, like increasing ids, do not bias the estimate)."""
    if len(body) <= limit:
        n = body.count(b"\n")
        if body and not body.endswith(b"\n"):
            n += 1
        return float(n), False
    half = max(limit // 2, 1)
    head = body[:half]
    head_bytes = head.rfind(b"\n") + 1
    tail = body[-half:]
    tail_start = tail.find(b"\n") + 1  # the first tail line may be cut: skip it
    tail_lines = tail.count(b"\n", tail_start) + (0 if tail.endswith(b"\n") else 1)
    if tail_start == 0:
        tail_lines, tail_bytes = 0, 0
    else:
        tail_bytes = len(tail) - tail_start
    lines = head.count(b"\n") + tail_lines
    if lines == 0:
        return 1.0, True
    return len(body) * lines / (head_bytes + tail_bytes), True


WHITESPACE = np.zeros(256, dtype=bool)
WHITESPACE[[9, 10, 11, 12, 13, 32]] = True


def count_words(sample: bytes, separators: np.ndarray = WHITESPACE) -> int:
    """Number of runs of non-separator bytes (by default ASCII whitespace), vectorised."""
    if not sample:
        return 0
    ws = separators[np.frombuffer(sample, dtype=np.uint8)]
    starts = ~ws
    starts[1:] &= ws[:-1]
    return int(starts.sum())


def decode_text(sample: bytes) -> str | None:
    """`sample` decoded as UTF-8 tolerating a character cut at the end, or None if not text."""
    import codecs

    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return None
    if "\x00" in text:
        return None
    return text
