"""Text featurizer: size, lines and words, estimated from a bounded sample for large bodies.

Tokenisation, translation and summarisation cost grows with words and lines; counting them
exactly would read the whole body, so beyond `sample_bytes` the sample's density is
extrapolated to the body's length.
"""

from __future__ import annotations

from collections.abc import Mapping

from featurizers._util import (
    Features,
    NotRecognized,
    count_lines,
    count_words,
    decode_text,
    sample_bytes,
)


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """Text features: lines, words, avg_line_length, estimated."""
    limit = sample_bytes(options)
    sample = body[:limit]
    if decode_text(sample) is None:
        raise NotRecognized("text: not UTF-8")
    lines, estimated = count_lines(body, limit)
    words = float(count_words(sample))
    if estimated and sample:
        # Extrapolate by bytes; drop a word possibly cut at the sample's end.
        words = max(words - 1, 0) * len(body) / len(sample)
    return {"lines": lines, "words": words,
            "avg_line_length": len(body) / lines if lines else 0.0,
            "estimated": float(estimated)}
