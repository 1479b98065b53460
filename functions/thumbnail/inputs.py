"""Seeded inputs for `thumbnail`: photos whose megapixels follow a lognormal (median ~0.6 MP,
long tail to 8 MP, as uploads to photo services do), JPEG mostly, PNG sometimes."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image


def _image(rng: random.Random, width: int, height: int) -> Image.Image:
    gen = np.random.default_rng(rng.getrandbits(32))
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    chans = []
    for _ in range(3):
        fx, fy, ph = gen.uniform(1, 12), gen.uniform(1, 12), gen.uniform(0, math.tau)
        base = 0.5 + 0.35 * np.sin(math.tau * fx * x + ph) * np.cos(math.tau * fy * y)
        chans.append(base)
    arr = np.stack(chans, axis=-1)
    arr += gen.normal(0, 0.06, size=arr.shape).astype(np.float32)
    return Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8), "RGB")


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"thumbnail:{seed}")
    out = []
    for i in range(n):
        mp = min(8.0, max(0.05, rng.lognormvariate(math.log(0.6), 1.0)))
        aspect = rng.choice([4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4])
        width = max(16, int(math.sqrt(mp * 1e6 * aspect)))
        height = max(16, int(mp * 1e6 / width))
        buf = io.BytesIO()
        if rng.random() < 0.8:
            _image(rng, width, height).save(buf, format="JPEG", quality=90)
            ctype = "image/jpeg"
        else:
            _image(rng, width, height).save(buf, format="PNG", compress_level=1)
            ctype = "image/png"
        out.append((buf.getvalue(), ctype, f"s{seed}-{i}-{width}x{height}"))
    return out
