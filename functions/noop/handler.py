"""No-op: echo the input. The gateway benchmark runs it behind the gateway and directly on the
same worker, so the difference is the gateway's own cost (featurize, decide, place, learn,
HTTP), not the function's."""

from __future__ import annotations

from typing import Any


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    return body, content_type or "application/octet-stream"
