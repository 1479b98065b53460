"""Seeded no-op inputs: small JSON bodies of a few hundred bytes (the size barely matters)."""

from __future__ import annotations

import json
import random


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"noop:{seed}")
    out = []
    for i in range(n):
        doc = {"id": i, "payload": "x" * rng.randint(16, 512)}
        out.append((json.dumps(doc).encode(), "application/json", f"s{seed}-{i}"))
    return out
