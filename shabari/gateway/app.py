"""The HTTP face of the gateway (DESIGN 4.3), on aiohttp.

Routes: `POST /invoke/{function}`, `GET /metrics`, `/healthz`, `/readyz`, `/functions`,
`/stats`. Every error is answered as JSON `{"error", "detail"}` with the contract's status
codes (404, 413, 429/503 + Retry-After, 502, 504); nothing is answered with an HTML page or a
dropped connection, and the body limit is enforced while streaming, before the body is held.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from shabari.core import AdmissionError, ShabariError
from shabari.gateway.service import Gateway, error_body

log = logging.getLogger(__name__)

GATEWAY_KEY = web.AppKey("gateway", Gateway)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, error: str, detail: str = "",
               headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=error_body(error, detail),
                        content_type="application/json", headers=headers)


class BodyTooLarge(ShabariError):
    http_status = 413


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the request body, refusing (413) as soon as it exceeds `limit` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"request body of {declared} bytes is over the limit",
                           detail=f"limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge("request body is over the limit",
                               detail=f"limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    try:
        resp = await handler(request)
    except AdmissionError as exc:
        gw.metrics.shed.labels(_shed_reason(exc)).inc()
        resp = json_error(exc.http_status, exc.message, exc.detail,
                          {"Retry-After": str(max(1, round(exc.retry_after_s)))})
    except ShabariError as exc:
        resp = json_error(exc.http_status, exc.message, exc.detail)
    except web.HTTPException as exc:
        resp = json_error(exc.status, exc.reason, exc.text or "")
    except Exception as exc:  # the contract: always JSON, never a stack trace page
        log.exception("unhandled error on %s", request.path)
        resp = json_error(500, "internal error", type(exc).__name__)
    gw.metrics.requests.labels(route, str(resp.status)).inc()
    return resp


def _shed_reason(exc: AdmissionError) -> str:
    if "shutting down" in exc.message:
        return "draining"
    return "queue_full" if exc.http_status == 429 else "queue_timeout"


async def invoke(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    function = request.match_info["function"]
    gw.spec(function)  # 404 before reading a body we cannot use
    gw.metrics.queued.set(gw.admission.waiting + 1)
    async with gw.admission.slot():
        gw.metrics.queued.set(gw.admission.waiting)
        gw.metrics.inflight.set(gw.admission.running)
        try:
            body = await read_body(request, gw.config.max_body_bytes)
            reply = await gw.invoke(function, body, request.headers.get("Content-Type"))
        finally:
            gw.metrics.inflight.set(gw.admission.running - 1)
    return web.Response(status=reply.status, body=reply.body, headers=reply.headers,
                        content_type=_mime(reply.content_type), charset=_charset(reply.content_type))


def _mime(ct: str) -> str:
    return ct.split(";", 1)[0].strip() or "application/octet-stream"


def _charset(ct: str) -> str | None:
    for part in ct.split(";")[1:]:
        k, _, v = part.partition("=")
        if k.strip().lower() == "charset" and v.strip():
            return v.strip()
    return None


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    gw.settle()  # what answered invocations left to count
    gw.ledger.totals(gw.now())  # bring the pool integrals up to now
    resp = web.Response(body=gw.metrics.render())
    resp.headers["Content-Type"] = gw.metrics.content_type
    return resp


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    if not gw.ready:
        return json_error(503, "not ready",
                          "draining" if gw.admission.draining else "starting")
    # a broken registry file does not make the gateway unready: it serves the last good one
    return web.json_response({"status": "ready", "functions": len(gw.functions),
                              "registry_error": gw.registry_error})


async def functions(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY_KEY].functions_view(), dumps=_dumps)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY_KEY].stats_view(), dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


def make_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> web.Application:
    """The aiohttp application; with `manage_lifecycle` it starts and closes the gateway."""
    app = web.Application(middlewares=[_errors],
                          client_max_size=gateway.config.max_body_bytes + 1)
    app[GATEWAY_KEY] = gateway
    app.router.add_post("/invoke/{function}", invoke)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/functions", functions)
    app.router.add_get("/stats", stats)
    if manage_lifecycle:
        async def _start(app: web.Application) -> None:
            await gateway.start()

        async def _shutdown(app: web.Application) -> None:
            await gateway.close()

        app.on_startup.append(_start)
        # on_shutdown runs before open connections are closed: in-flight requests drain first
        app.on_shutdown.append(_shutdown)
    return app
