"""JSON featurizer: top-level length and nesting depth from a bounded token scan.

Functions that map over a JSON array or object scale with its length. A full `json.loads`
would allocate the whole document, so a regular-expression scan over the first `sample_bytes`
skips strings, tracks brackets and counts top-level commas; when the body is longer than the
sample, the count is extrapolated by bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from featurizers._util import Features, NotRecognized, sample_bytes

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)|[\[\]{},]', re.DOTALL)
_CLOSE = {ord("]"): ord("["), ord("}"): ord("{")}


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """JSON features: length, depth, json.array / json.object / json.scalar, estimated."""
    limit = sample_bytes(options)
    sample = body[:limit]
    stripped = sample.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    if not stripped:
        raise NotRecognized("json: empty")
    start = len(sample) - len(stripped)
    top = stripped[0]
    truncated = len(body) > limit
    if top not in b"[{":
        if top in b'"-0123456789tfn':
            return {"length": 1.0, "depth": 0.0, "json.scalar": 1.0, "estimated": 0.0}
        raise NotRecognized("json: does not start with a JSON value")
    stack: list[int] = []
    depth = 0
    commas = 0
    end = -1
    for m in _TOKENS.finditer(sample, start):
        c = sample[m.start()]
        if c in b"[{":
            stack.append(c)
            depth = max(depth, len(stack))
        elif c in b"]}":
            if not stack or stack.pop() != _CLOSE[c]:
                raise NotRecognized("json: mismatched brackets")
            if not stack:
                end = m.end()
                break
        elif c == ord(",") and len(stack) == 1:
            commas += 1
    if end < 0 and not truncated:
        raise NotRecognized("json: unterminated document")
    if end >= 0 and sample[end:].strip() and not truncated:
        raise NotRecognized("json: trailing data after the document")
    inner = re.match(rb"\s*([\]}])?", sample[start + 1 :])
    empty = inner is not None and inner.group(1) is not None
    length = 0.0 if empty else float(commas + 1)
    estimated = end < 0
    if estimated:
        length = commas * (len(body) - start) / max(len(sample) - start, 1)
    return {"length": length, "depth": float(depth),
            "json.array" if top == ord("[") else "json.object": 1.0,
            "estimated": float(estimated)}
