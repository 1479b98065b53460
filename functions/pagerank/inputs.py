"""Seeded inputs for `pagerank`: preferential-attachment-like graphs as edge lists; nodes
lognormal (median ~8000, tail to 60000), mean degree 3-8 (social/web graphs are heavy-tailed in
both size and degree)."""

from __future__ import annotations

import math
import random

import numpy as np


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"pagerank:{seed}")
    out = []
    for i in range(n):
        nodes = min(60000, max(50, int(rng.lognormvariate(math.log(8000), 1.0))))
        degree = rng.uniform(3, 8)
        edges = int(nodes * degree / 2)
        gen = np.random.default_rng(rng.getrandbits(32))
        # endpoints drawn with a Zipf-like bias towards low ids: a few hubs, many leaves
        u = (nodes * gen.power(0.6, edges)).astype(np.int64)
        v = gen.integers(0, nodes, edges)
        lines = "\n".join(f"{a} {b}" for a, b in zip(u.tolist(), v.tolist(), strict=True) if a != b)
        out.append((lines.encode(), "text/plain", f"s{seed}-{i}-v{nodes}-e{edges}"))
    return out
