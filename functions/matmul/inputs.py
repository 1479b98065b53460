"""Seeded inputs for `matmul`: square float32 .npy matrices, n lognormal (median ~600, tail to
2500), the shape of batch linear-algebra jobs."""

from __future__ import annotations

import io
import math
import random

import numpy as np


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"matmul:{seed}")
    out = []
    for i in range(n):
        size = min(2500, max(32, int(rng.lognormvariate(math.log(600), 0.7))))
        gen = np.random.default_rng(rng.getrandbits(32))
        buf = io.BytesIO()
        np.save(buf, gen.standard_normal((size, size), dtype=np.float32))
        out.append((buf.getvalue(), "application/x-npy", f"s{seed}-{i}-n{size}"))
    return out
