"""Seeded inputs for `classify`: images whose side follows a lognormal (median ~300 px, tail to
~1800 px), so the tile batch ranges from 1 to 64 tiles of 224x224."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"classify:{seed}")
    out = []
    for i in range(n):
        side = min(1800, max(64, int(rng.lognormvariate(math.log(300), 0.8))))
        aspect = rng.choice([1.0, 4 / 3, 16 / 9])
        width, height = int(side * aspect), side
        gen = np.random.default_rng(rng.getrandbits(32))
        arr = gen.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(arr, "RGB").resize((width, height), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append((buf.getvalue(), "image/jpeg", f"s{seed}-{i}-{width}x{height}"))
    return out
