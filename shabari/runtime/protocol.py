"""The frame format between a backend and a worker process (and a function image over TCP).

One frame = an 8-byte header `>II` (length of a JSON object, length of a raw body), the JSON
object (UTF-8), then the body bytes. The JSON object says what the frame is (`type`); the body
carries the invocation's input or the function's response unchanged, so binary payloads (images,
video) are never re-encoded. The same framing runs over a socketpair (local backend), over TCP
(`--listen`), and is what `shabari.runtime.worker` speaks; message fields are listed in
docs/local-backend.md.

Both a blocking reader (the worker) and an asyncio reader (the backend) live here so the two
ends cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct(">II")
#: refuse absurd frames instead of allocating whatever a corrupt header says
MAX_META_BYTES = 1 << 20
MAX_BODY_BYTES = 1 << 31


class ProtocolError(Exception):
    """The peer sent something that is not a frame (or closed mid-frame)."""


def encode(meta: dict[str, Any], body: bytes = b"") -> bytes:
    raw = json.dumps(meta, separators=(",", ":")).encode()
    return _HEADER.pack(len(raw), len(body)) + raw + body


def _decode_meta(raw: bytes) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"frame header is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ProtocolError("frame header is not a JSON object")
    return meta


def _check_lengths(meta_len: int, body_len: int) -> None:
    if meta_len > MAX_META_BYTES or body_len > MAX_BODY_BYTES:
        raise ProtocolError(f"frame too large (meta {meta_len} B, body {body_len} B)")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("peer closed the connection")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    """Blocking read of one frame; `EOFError` when the peer closed between frames."""
    head = _recv_exact(sock, _HEADER.size)
    meta_len, body_len = _HEADER.unpack(head)
    _check_lengths(meta_len, body_len)
    meta = _decode_meta(_recv_exact(sock, meta_len))
    body = _recv_exact(sock, body_len) if body_len else b""
    return meta, body


def send_frame(sock: socket.socket, meta: dict[str, Any], body: bytes = b"") -> None:
    sock.sendall(encode(meta, body))


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    """Async read of one frame; `EOFError` when the peer closed."""
    try:
        head = await reader.readexactly(_HEADER.size)
        meta_len, body_len = _HEADER.unpack(head)
        _check_lengths(meta_len, body_len)
        meta = _decode_meta(await reader.readexactly(meta_len))
        body = await reader.readexactly(body_len) if body_len else b""
    except asyncio.IncompleteReadError:
        raise EOFError("peer closed the connection") from None
    return meta, body


async def write_frame(writer: asyncio.StreamWriter, meta: dict[str, Any],
                      body: bytes = b"") -> None:
    """Async write of one frame; the body is handed over as is (no concatenated copy of a
    large input in the gateway's memory)."""
    raw = json.dumps(meta, separators=(",", ":")).encode()
    writer.write(_HEADER.pack(len(raw), len(body)) + raw)
    if body:
        writer.write(body)
    await writer.drain()
