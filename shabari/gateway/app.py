"""The HTTP face of the gateway (DESIGN 4.3), on aiohttp.

Routes: `POST /invoke/{function}`, `GET /metrics`, `/healthz`, `/readyz`, `/functions`,
`/stats`. Every error is answered as JSON `{"error", "detail"}` with the contract's status
codes (404, 413, 429/503 + Retry-After, 502, 504); nothing is answered with an HTML page or a
dropped connection, and the body limit is enforced while streaming, before the body is held.

A request's body is read BEFORE it takes an admission slot, under its own deadline
(`body_timeout_s`, 408 beyond it), and only while the bodies held in memory by all requests
together fit `body_memory_bytes` (`BodyBudget`): slow or stalled uploads hold no slot, and
many concurrent large bodies cannot grow the gateway without bound. A client that goes away
mid-upload is counted (code 499) without a traceback. With `auth_token` set, every endpoint
but the probes needs `Authorization: Bearer <token>` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientConnectionError, ClientPayloadError, web

from shabari.backends.base import platform_limitations
from shabari.core import AdmissionError, ConfigError, ShabariError
from shabari.gateway.replica import Replica, parse_have
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


class BodyTimeout(ShabariError):
    http_status = 408


class ClientGone(ShabariError):
    """The client closed the connection before its request was read (nginx's 499)."""

    http_status = 499


class BodyBudget:
    """Bytes of request bodies held in memory, all requests together, bounded.

    A request reserves its declared length before reading (a chunked one reserves as its
    chunks come); when the budget is spent it waits, FIFO-free, for another request to
    release, at most `wait_s`, then gets 503 + Retry-After. `readers` counts requests whose
    body is being read: the graceful shutdown waits for them too.
    """

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit = limit
        self.wait_s = wait_s
        self.used = 0
        self.readers = 0
        self._freed = asyncio.Event()

    async def reserve(self, n: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if n > self.limit:
            raise BodyTooLarge(f"request body of {n} bytes is over the memory budget",
                               detail=f"at most {self.limit} bytes are held at once")
        while self.used + n > self.limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AdmissionError(
                    f"too many request bodies in memory ({self.used} of {self.limit} bytes "
                    "held)", retry_after_s=1.0, status=503)
            ev = self._freed
            try:
                await asyncio.wait_for(ev.wait(), timeout=remaining)
            except TimeoutError:
                pass
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        ev, self._freed = self._freed, asyncio.Event()
        ev.set()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[list[int]]:
        """A cell holding the bytes this request reserved; all released on exit."""
        cell = [0]
        try:
            yield cell
        finally:
            if cell[0]:
                self.release(cell[0])


BUDGET_KEY = web.AppKey("body_budget", BodyBudget)


async def read_body(request: web.Request, limit: int, budget: BodyBudget | None = None,
                    reserved: list[int] | None = None, timeout_s: float | None = None) -> bytes:
    """Read the request body, refusing (413) as soon as it exceeds `limit` bytes; with a
    `budget`, the bytes are reserved in it (added to `reserved[0]`) before they are held;
    the whole body must arrive within `timeout_s` (408)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"request body of {declared} bytes is over the limit",
                           detail=f"limit is {limit} bytes")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (timeout_s if timeout_s is not None else 1e9)
    cell = reserved if reserved is not None else [0]
    if budget is not None and declared:
        await budget.reserve(declared, loop.time() + budget.wait_s)
        cell[0] += declared
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge("request body is over the limit",
                                       detail=f"limit is {limit} bytes")
                if budget is not None and size > cell[0]:
                    grow = max(size - cell[0], 1 << 20)
                    await budget.reserve(grow, loop.time() + budget.wait_s)
                    cell[0] += grow
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"request body not received within {timeout_s:g}s",
                          detail=f"{size} bytes arrived") from None
    except (ClientPayloadError, ClientConnectionError, ConnectionError) as exc:
        raise ClientGone("client went away during the upload",
                         detail=type(exc).__name__) from None
    return b"".join(chunks)


def _authorized(request: web.Request, token: str) -> bool:
    got = request.headers.get("Authorization", "")
    scheme, _, value = got.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                              token.encode())


#: what answers without a token (Kubernetes probes carry none)
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource \
        else "unmatched"
    try:
        token = gw.config.auth_token
        if token and request.path not in OPEN_PATHS and not _authorized(request, token):
            raise web.HTTPUnauthorized(
                reason="missing or wrong bearer token",
                text="send 'Authorization: Bearer <token>' (the gateway's auth token)",
                headers={"WWW-Authenticate": 'Bearer realm="shabari"'})
        resp = await handler(request)
    except AdmissionError as exc:
        gw.metrics.shed.labels(_shed_reason(exc)).inc()
        resp = json_error(exc.http_status, exc.message, exc.detail,
                          {"Retry-After": str(max(1, round(exc.retry_after_s)))})
    except ClientGone as exc:  # nobody reads the answer; counted, not a server error
        log.debug("client went away on %s: %s", request.path, exc.detail)
        resp = json_error(exc.http_status, exc.message, exc.detail)
    except ShabariError as exc:
        resp = json_error(exc.http_status, exc.message, exc.detail)
    except web.HTTPException as exc:
        hdrs = {k: v for k, v in exc.headers.items() if k.lower() == "www-authenticate"}
        resp = json_error(exc.status, exc.reason, exc.text or "", hdrs or None)
    except Exception as exc:  # the contract: always JSON, never a stack trace page
        log.exception("unhandled error on %s", request.path)
        resp = json_error(500, "internal error", type(exc).__name__)
    gw.metrics.requests.labels(route, str(resp.status)).inc()
    return resp


def _shed_reason(exc: AdmissionError) -> str:
    if "request bodies in memory" in exc.message:
        return "body_memory"
    if "shutting down" in exc.message:
        return "draining"
    return "queue_full" if exc.http_status == 429 else "queue_timeout"


async def invoke(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY_KEY]
    budget = request.app[BUDGET_KEY]
    function = request.match_info["function"]
    gw.spec(function)  # 404 before reading a body we cannot use
    if gw.admission.draining:  # shutting down: no point reading the body
        gw.admission.shed["draining"] += 1
        raise AdmissionError("gateway is shutting down", retry_after_s=1.0, status=503)
    async with budget.held() as reserved:
        budget.readers += 1
        try:
            body = await read_body(request, gw.config.max_body_bytes, budget, reserved,
                                   gw.config.body_timeout_s)
        finally:
            budget.readers -= 1
        # a request whose body arrived is admitted (or queued) even when a drain began while
        # it was uploading: it arrived before the drain
        gw.metrics.queued.set(gw.admission.waiting + 1)
        async with gw.admission.slot(during_drain=True):
            gw.metrics.queued.set(gw.admission.waiting)
            gw.metrics.inflight.set(gw.admission.running)
            try:
                reply = await gw.invoke(function, body, request.headers.get("Content-Type"))
            finally:
                gw.metrics.inflight.set(gw.admission.running - 1)
    headers = reply.headers
    if reply.status in (429, 503) and "Retry-After" not in headers:
        headers = {**headers, "Retry-After": str(max(1, round(gw.admission.retry_after_s())))}
    return web.Response(status=reply.status, body=reply.body, headers=headers,
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
    gw.metrics.report_limitations(gw.backend.name, platform_limitations(gw.backend))
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
    degraded = gw.degraded
    if degraded:  # e.g. a full state disk: still serving, but not losing it silently
        return json_error(503, "degraded",
                          "; ".join(f"{k}: {v}" for k, v in sorted(degraded.items())))
    # a broken registry file does not make the gateway unready: it serves the last good one
    return web.json_response({"status": "ready", "functions": len(gw.functions),
                              "registry_error": gw.registry_error,
                              "limitations": platform_limitations(gw.backend)})


async def functions(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY_KEY].functions_view(), dumps=_dumps)


async def explain(request: web.Request) -> web.Response:
    """Why the policy would pick a size for an input: POST the input (as to /invoke), or GET
    with the features as query parameters (`?width=1920&height=1080`)."""
    gw = request.app[GATEWAY_KEY]
    function = request.match_info["function"]
    spec = gw.spec(function)  # 404 for an unknown function
    if request.method == "POST":
        body = await read_body(request, gw.config.max_body_bytes)
        features = gw.path.featurize(body, request.headers.get("Content-Type"),
                                     spec.featurizer, spec.featurizer_options)
    else:
        features = {}
        for key, value in request.query.items():
            try:
                features[key] = float(value)
            except ValueError:
                return json_error(400, "feature values must be numbers",
                                  f"{key}={value!r}")
    try:
        doc = gw.explain(function, features)
    except ConfigError as exc:
        return json_error(501, exc.message, exc.detail or "")
    return web.json_response(doc, dumps=_dumps)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY_KEY].stats_view(), dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str)


def make_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> web.Application:
    """The aiohttp application; with `manage_lifecycle` it starts and closes the gateway."""
    app = web.Application(middlewares=[_errors],
                          client_max_size=gateway.config.max_body_bytes + 1)
    app[GATEWAY_KEY] = gateway
    app[BUDGET_KEY] = BodyBudget(gateway.config.body_memory_bytes, gateway.config.queue_timeout_s)
    app.router.add_post("/invoke/{function}", invoke)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/functions", functions)
    app.router.add_get("/functions/{function}/explain", explain)
    app.router.add_post("/functions/{function}/explain", explain)
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


REPLICA_KEY = web.AppKey("replica", Replica)


class NotLearnerError(ShabariError):
    """A replica-to-learner call reached a follower (the Lease changed hands meanwhile)."""

    http_status = 409


def _learner(request: web.Request) -> Replica:
    replica = request.app[REPLICA_KEY]
    if not replica.is_learner:
        raise NotLearnerError("not the learner",
                              detail=f"{replica.config.identity} is a follower; the learner "
                                     f"is {replica.leader or 'unknown'}")
    return replica


async def replica_outcomes(request: web.Request) -> web.Response:
    """`POST /replica/outcomes` (learner): learn a batch of another replica's outcomes."""
    replica = _learner(request)
    doc = await request.json()
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        return json_error(400, "bad outcomes batch", "expected {\"records\": [...]}")
    return web.json_response({"accepted": replica.receive(records)})


async def replica_models(request: web.Request) -> web.Response:
    """`GET /replica/models?have=fn:version,...` (learner): snapshots newer than those."""
    replica = _learner(request)
    have = parse_have(request.query.get("have"))
    return web.json_response({"learner": replica.config.identity,
                              "models": replica.snapshots(have)})


async def replica_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[REPLICA_KEY].state(), dumps=_dumps)


def attach_replica(app: web.Application, replica: Replica) -> None:
    """Serve the replica routes; start the replica after the gateway, stop it first."""
    app[REPLICA_KEY] = replica
    app.router.add_post("/replica/outcomes", replica_outcomes)
    app.router.add_get("/replica/models", replica_models)
    app.router.add_get("/replica/state", replica_state)

    async def _start(app: web.Application) -> None:
        await replica.start()

    async def _stop(app: web.Application) -> None:
        await replica.close()

    app.on_startup.append(_start)
    app.on_shutdown.insert(0, _stop)
