"""Serving the gateway's aiohttp app: connection cap, JSON protocol errors, graceful drain.

`aiohttp.web.run_app` is not enough for a gateway that must not lose requests:

- on SIGTERM it closes the listening socket first, so clients that connect during the drain
  are refused (the contract says 503), and requests still uploading are cut off. Here the
  listener stays open while the gateway drains: new requests get 503 + Retry-After, requests
  that arrived before the signal are read, queued, run and answered; only then is the
  server torn down (`Gateway.close`: checkpoint, stop pods).
- it accepts connections without bound: idle keep-alive or half-sent-header connections can
  hold every file descriptor, and then `/healthz` is unreachable. Here at most
  `max_connections` are open (clamped below the open-file limit); a new connection at the cap
  closes the longest-idle one (no request in progress), and when none is idle it is answered
  503 at once and closed.
- aiohttp answers requests it cannot parse (malformed request line, bad header) itself, in
  plain text, uncounted, with a traceback in the log. Here they are JSON like every other
  error, counted in `shabari_http_requests{route="unparsed"}`, logged in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import signal
import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from shabari.gateway.app import BUDGET_KEY, GATEWAY_KEY

log = logging.getLogger(__name__)

#: file descriptors kept free of client connections (pods, logs, checkpoints, the listener)
FD_RESERVE = 64


def connection_cap(configured: int) -> int:
    """`configured`, or less when the open-file limit would not leave `FD_RESERVE` free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(8, min(configured, soft - FD_RESERVE))


def _json_response_bytes(status: int, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class _Refuse(asyncio.Protocol):
    """A connection over the cap with none idle to make room: 503, closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_json_response_bytes(
            503, "too many connections", "the gateway's connection cap is reached"))
        transport.close()


class _Handler(RequestHandler):
    """aiohttp's connection handler, answering its own protocol errors in JSON."""

    counted: Any = None

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling request from %s: %s", request.remote,
                      exc if exc is not None else message)
        else:
            log.info("unparsable request from %s answered %d: %s", request.remote, status,
                     message or exc)
        if self.counted is not None:
            self.counted.labels("unparsed", str(status)).inc()
        if request.writer.output_size > 0:
            raise ConnectionError("response already sent; cannot send the error")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        body = json.dumps({"error": phrase or "bad request",
                           "detail": (message or (str(exc) if exc else ""))[:500]}).encode()
        resp = web.Response(status=status, body=body, content_type="application/json")
        resp.force_close()
        return resp


class CappedServer(web.Server):
    """`web.Server` with a connection cap and JSON protocol errors (see module doc)."""

    def __init__(self, *args: Any, max_connections: int, counted: Any = None,
                 on_refused: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._counted = counted
        self._on_refused = on_refused
        self._last_active: dict[RequestHandler, float] = {}

    def __call__(self) -> Any:
        # closed ones stay listed until their task ends: only open transports count
        conns = [h for h in self.connections if h.transport is not None]
        if len(conns) >= self.max_connections and not self._evict_idle(conns):
            if self._on_refused is not None:
                self._on_refused()
            return _Refuse()
        handler = _Handler(self, loop=self._loop, **self._kwargs)
        handler.counted = self._counted
        self._last_active[handler] = time.monotonic()
        return handler

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._last_active.pop(handler, None)
        super().connection_lost(handler, exc)

    def _evict_idle(self, conns: list[RequestHandler]) -> bool:
        idle = [h for h in conns if not getattr(h, "_request_in_progress", True)]
        if not idle:
            return False
        victim = min(idle, key=lambda h: self._last_active.get(h, 0.0))
        victim.force_close()
        with contextlib.suppress(Exception):
            transport = victim.transport
            if transport is not None:
                transport.close()
        self._last_active.pop(victim, None)
        return True


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        gw = self.app[GATEWAY_KEY]
        shed = gw.metrics.shed.labels("connections")
        return CappedServer(plain.request_handler, request_factory=plain.request_factory,
                            handler_cancellation=plain.handler_cancellation,
                            loop=plain._loop, max_connections=self._max_connections,
                            counted=gw.metrics.requests, on_refused=shed.inc,
                            **plain._kwargs)


async def serve(app: web.Application, host: str, port: int, *,
                stop: asyncio.Event | None = None) -> None:
    """Serve `app` (made by `make_app`) until SIGTERM/SIGINT (or `stop`), then drain: the
    listener stays open answering 503 while admitted and uploading requests finish."""
    gw = app[GATEWAY_KEY]
    budget = app[BUDGET_KEY]
    cap = connection_cap(gw.config.max_connections)
    runner = _Runner(app, max_connections=cap, access_log=None, handle_signals=False,
                     shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=5.0, backlog=512)
    await site.start()
    log.info("listening on %s:%d (at most %d connections)", host, port, cap)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: draining (new requests get 503; up to %.0fs)",
                 gw.config.drain_timeout_s)
        gw.ready = False
        gw.admission.start_draining()
        deadline = loop.time() + gw.config.drain_timeout_s
        while budget.readers and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await gw.admission.drained(max(0.0, deadline - loop.time()))
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # on_shutdown: Gateway.close (checkpoint, stop pods)
