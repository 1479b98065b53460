"""Seeded inputs for `markdown`: documents with headings, paragraphs with inline markup, lists,
code blocks and tables; length lognormal (median ~60 KB, tail to 3 MB) like READMEs up to
generated reports."""

from __future__ import annotations

import math
import random

WORDS = ["shabari", "serverless", "function", "input", "size", "latency", "memory", "allocation", "cold", "start", "warm", "pod", "scheduler", "agent", "bandit", "explore", "exploit", "grid", "vcpu", "cgroup", "quota", "resize", "trace", "azure", "invocation", "percentile", "median", "tail", "budget"]


def _sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(6, 18))
    j = rng.randrange(len(words))
    words[j] = rng.choice([f"**{words[j]}**", f"*{words[j]}*", f"`{words[j]}`",
                           f"[{words[j]}](https://example.org/{words[j]})", f"~~{words[j]}~~"])
    return " ".join(words).capitalize() + "."


def _section(rng: random.Random, level: int) -> str:
    parts = [f"{'#' * level} {' '.join(rng.choices(WORDS, k=3)).title()}\n"]
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.5:
            parts.append(" ".join(_sentence(rng) for _ in range(rng.randint(2, 6))) + "\n")
        elif kind < 0.7:
            parts.append("\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(2, 6))) + "\n")
        elif kind < 0.85:
            rows = [f"| {' | '.join(rng.choices(WORDS, k=3))} |" for _ in range(rng.randint(2, 8))]
            parts.append("| a | b | c |\n|---|---|---|\n" + "\n".join(rows) + "\n")
        else:
            code = "\n".join(f"x{k} = {rng.randint(0, 999)}" for k in range(rng.randint(2, 8)))
            parts.append(f"```python\n{code}\n```\n")
    return "\n".join(parts)


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    rng = random.Random(f"markdown:{seed}")
    out = []
    for i in range(n):
        target = min(3_000_000, max(500, int(rng.lognormvariate(math.log(60_000), 1.1))))
        chunks: list[str] = []
        size = 0
        while size < target:
            s = _section(rng, rng.randint(1, 3))
            chunks.append(s)
            size += len(s)
        out.append(("\n".join(chunks).encode(), "text/markdown", f"s{seed}-{i}-{size}B"))
    return out
