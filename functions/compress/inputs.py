"""Seeded inputs for `compress`: log-like text (timestamps, levels, words, ids, some base64
noise) whose size is lognormal (median ~200 KB, tail to 6 MB), as log shipping produces."""

from __future__ import annotations

import base64
import math
import random

WORDS = ["request", "served", "user", "cache", "miss", "hit", "upstream", "timeout", "retry", "backend", "shard", "replica", "leader", "follower", "commit", "rollback", "session", "token", "expired", "granted", "denied", "queue", "worker", "batch", "flush", "compact", "snapshot", "restore"]
LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"compress:{seed}")
    out = []
    for i in range(n):
        target = min(6_000_000, max(2_000, int(rng.lognormvariate(math.log(200_000), 1.1))))
        lines: list[str] = []
        size = 0
        t = 1_700_000_000.0
        while size < target:
            t += rng.expovariate(50)
            words = " ".join(rng.choices(WORDS, k=rng.randint(4, 14)))
            extra = base64.b64encode(rng.randbytes(rng.choice([0, 0, 0, 12, 24]))).decode()
            line = f"{t:.3f} {rng.choice(LEVELS)} id={rng.getrandbits(20):x} {words} {extra}\n"
            lines.append(line)
            size += len(line)
        out.append(("".join(lines).encode(), "text/plain", f"s{seed}-{i}-{size}B"))
    return out
