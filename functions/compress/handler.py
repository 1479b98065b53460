"""Compression: LZMA (xz, preset 4) of the input, cut into 1 MiB blocks compressed in parallel
(as `xz -T` does), plus a zlib level-9 ratio for comparison.

Cost ~ bytes. lzma and zlib release the GIL, so blocks run on `ctx.threads` threads: the CPU
allocation decides the parallelism."""

from __future__ import annotations

import json
import lzma
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BLOCK = 1 << 20


def _xz(block: bytes) -> bytes:
    return lzma.compress(block, preset=4)


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    if not body:
        raise ValueError("empty input: nothing to compress")
    blocks = [body[i:i + BLOCK] for i in range(0, len(body), BLOCK)]
    with ThreadPoolExecutor(max_workers=max(1, ctx.threads)) as pool:
        parts = list(pool.map(_xz, blocks))
    zlib_size = len(zlib.compress(body, 9))
    header = json.dumps({"bytes": len(body), "blocks": len(parts),
                         "xz_bytes": sum(map(len, parts)), "zlib_bytes": zlib_size}).encode()
    framed = b"".join(struct.pack(">I", len(p)) + p for p in parts)
    return struct.pack(">I", len(header)) + header + framed, "application/octet-stream"
