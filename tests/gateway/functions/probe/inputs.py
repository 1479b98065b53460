"""Seeded probe inputs: small JSON objects asking for a few MiB."""

from __future__ import annotations

import json
import random


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(seed)
    return [(json.dumps({"mb": rng.randint(1, 4)}).encode(), "application/json", f"p{seed}-{i}")
            for i in range(n)]
