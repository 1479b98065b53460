"""JSON featurizer: top-level length and nesting depth from a bounded, vectorised scan.

Functions that map over a JSON array or object scale with its length. `json.loads` would build
the whole document (and a per-token Python loop costs milliseconds per 64 KiB), so at most
`sample_bytes` are scanned with numpy instead: quotes not escaped by an odd run of backslashes
delimit strings, brackets outside strings give the depth (a cumulative sum), commas at depth 1
count the top-level items, and brackets are checked for matching types level by level.
A body longer than `sample_bytes` is sampled at both ends (the tail is scanned backwards from
the closing bracket, whose depth is known) and the item count extrapolated by bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from featurizers._util import Features, NotRecognized, sample_bytes

_QUOTE, _BACKSLASH, _COMMA = 34, 92, 44
# bytes.translate table keeping only the bytes the scan cares about (others become 0).
_KEEP = bytes(c if c in b'[]{},"\\' else 0 for c in range(256))
_OPEN = np.zeros(256, dtype=bool)
_OPEN[list(b"[{")] = True
_CLOSE = np.zeros(256, dtype=bool)
_CLOSE[list(b"]}")] = True
_SCALAR_START = frozenset(b'"-0123456789tfn')


def _structure(buf: bytes, from_end: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(chars, positions) of the brackets and commas of `buf` that lie outside strings.

    `buf` must start (or, with `from_end`, end) outside a string literal."""
    a = np.frombuffer(buf.translate(_KEEP), dtype=np.uint8)
    pos = np.flatnonzero(a)
    c = a[pos]
    quote = c == _QUOTE
    is_bs = c == _BACKSLASH
    if is_bs.any():
        # Length of the run of adjacent backslashes ending at each entry (segmented cumsum).
        adjacent = np.zeros(len(c), dtype=bool)
        adjacent[1:] = is_bs[1:] & is_bs[:-1] & (np.diff(pos) == 1)
        cs = np.cumsum(is_bs)
        base = np.maximum.accumulate(np.where(adjacent, 0, cs - is_bs))
        run = cs - base
        before = np.zeros(len(c), dtype=np.int64)
        before[1:] = np.where(np.diff(pos) == 1, run[:-1], 0)
        quote &= before % 2 == 0
    n_quotes = np.cumsum(quote[::-1])[::-1] if from_end else np.cumsum(quote)
    keep = (n_quotes % 2 == 0) & ~quote & ~is_bs
    return c[keep], pos[keep]


def _brackets_match(chars: np.ndarray, levels: np.ndarray, open_ok: bool) -> bool:
    """Per nesting level, brackets must alternate opener/closer with matching types."""
    order = np.lexsort((np.arange(len(chars)), levels))
    seq, lvl = chars[order].astype(np.int16), levels[order]
    if len(seq) == 0:
        return True
    starts = np.concatenate(([0], np.flatnonzero(np.diff(lvl)) + 1))
    ends = np.concatenate((starts[1:], [len(seq)])) - 1
    odd_ends = ends[(ends - starts) % 2 == 0]  # groups of odd size: an opener left open
    if len(odd_ends) and not (open_ok and np.all(_OPEN[seq[odd_ends]])):
        return False
    keep = np.ones(len(seq), dtype=bool)
    keep[odd_ends] = False
    seq, lvl = seq[keep], lvl[keep]
    openers, closers = seq[0::2], seq[1::2]
    return bool(np.all(_OPEN[openers]) and np.all(closers - openers == 2)
                and np.all(lvl[0::2] == lvl[1::2]))


def _tail_commas(body: bytes, half: int, top_close: int) -> tuple[int, int] | None:
    """(top-level commas, bytes scanned) in the last `half` bytes, scanning back from the
    document's closing bracket; None when the body does not end with it."""
    tail = body[-half:].rstrip()
    if not tail or tail[-1] != top_close:
        return None
    chars, _ = _structure(tail, from_end=True)
    rev = chars[::-1]
    depth_after = np.cumsum(_CLOSE[rev].astype(np.int64) - _OPEN[rev])  # from the end
    return int(((rev == _COMMA) & (depth_after == 1)).sum()), len(tail)


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """JSON features: length, depth, json.array / json.object / json.scalar, estimated."""
    limit = sample_bytes(options)
    truncated = len(body) > limit
    sample = body[: limit // 2] if truncated else body
    stripped = sample.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    if not stripped:
        raise NotRecognized("json: empty")
    start = len(sample) - len(stripped)
    top = stripped[0]
    if top not in b"[{":
        if top in _SCALAR_START:
            return {"length": 1.0, "depth": 0.0, "json.scalar": 1.0, "estimated": 0.0}
        raise NotRecognized("json: does not start with a JSON value")
    chars, positions = _structure(stripped)
    opens, closes = _OPEN[chars], _CLOSE[chars]
    depth_after = np.cumsum(opens.astype(np.int64) - closes)
    if depth_after.min() < 0:
        raise NotRecognized("json: closing bracket without an opener")
    zero = np.flatnonzero(depth_after == 0)
    n = int(zero[0]) + 1 if len(zero) else len(chars)  # structural chars of the document
    closed = len(zero) > 0
    if closed and stripped[int(positions[n - 1]) + 1 :].strip() and not truncated:
        raise NotRecognized("json: trailing data after the document")
    if not closed and not truncated:
        raise NotRecognized("json: unterminated document")
    bracket = (opens | closes)[:n]
    levels = np.where(opens, depth_after, depth_after + 1)[:n][bracket]
    if not _brackets_match(chars[:n][bracket], levels, open_ok=not closed):
        raise NotRecognized("json: mismatched brackets")
    commas = int(((chars[:n] == _COMMA) & (depth_after[:n] == 1)).sum())
    feats: Features = {"depth": float(depth_after[:n].max()),
                       "json.array" if top == ord("[") else "json.object": 1.0,
                       "estimated": float(not closed)}
    if closed:
        first = stripped[1:].lstrip()[:1]
        feats["length"] = 0.0 if first in (b"]", b"}") else float(commas + 1)
    else:
        scanned = len(stripped)
        tail = _tail_commas(body, limit // 2, top + 2)
        if tail is not None:
            commas, scanned = commas + tail[0], scanned + tail[1]
        feats["length"] = commas * (len(body) - start) / max(scanned, 1)
    return feats
