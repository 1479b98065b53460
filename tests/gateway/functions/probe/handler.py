"""Gateway test probe: `{"mb": N}` allocates and touches N MiB, `{"sleep": S}` sleeps S seconds,
`{"fail": true, "say": S}` raises (S in its message); anything that is not a JSON object is echoed back as its length."""

from __future__ import annotations

import json
import time
from typing import Any


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    try:
        req = json.loads(body)
    except ValueError:
        return json.dumps({"echo_bytes": len(body)}).encode(), "application/json"
    if not isinstance(req, dict):
        return json.dumps({"echo_bytes": len(body)}).encode(), "application/json"
    if req.get("fail"):
        raise RuntimeError(f"probe asked to fail {req.get('say', '')}".strip())
    held = b""
    mb = int(req.get("mb", 0))
    if mb:
        buf = bytearray(mb * 1024 * 1024)
        for i in range(0, len(buf), 4096):
            buf[i] = 1
        held = bytes(buf[:16])
    if req.get("sleep"):
        time.sleep(float(req["sleep"]))
    return json.dumps({"ok": True, "mb": mb, "head": len(held)}).encode(), "application/json"
