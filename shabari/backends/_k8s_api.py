"""A small asyncio client for the Kubernetes REST API, shared by the kubernetes and knative backends.

Why not the official `kubernetes` client? Its calls block, and a backend runs inside the
gateway's event loop: one slow API server would stall every invocation. This client speaks the
few REST calls the backends need (get, list, create, patch, delete, watch) over aiohttp, bounds
every call with a timeout, and maps failures onto the one exception tree: an unreachable or
hanging API server becomes `BackendUnavailableError` within `timeout_s`, 401/403 become
`BackendUnavailableError` naming the authentication or RBAC problem, 404 becomes
`KubeNotFoundError` (callers use it to tell "deleted" from "broken").

The official client is still used for one thing it does well and that happens once, off the
event loop: reading a kubeconfig or the in-cluster service-account files (`KubeConfig.load`).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp

from shabari.backends._options import opt_bool, opt_float, opt_str
from shabari.core.errors import BackendError, BackendUnavailableError, ConfigError

__all__ = [
    "API_OPTIONS",
    "KubeApi",
    "KubeApiError",
    "KubeConfig",
    "KubeConflictError",
    "KubeForbiddenError",
    "KubeNotFoundError",
]

#: backend options that configure the API connection (shared by kubernetes and knative)
API_OPTIONS = (
    "api_url", "token", "ca_file", "client_cert", "client_key", "insecure_skip_tls_verify",
    "namespace", "api_timeout_s", "kubeconfig", "context",
)

#: content type of a strategic merge patch (what kubectl sends for `kubectl patch`)
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
#: content type of an RFC 7386 JSON merge patch (works for custom resources too)
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(BackendError):
    """The API server answered with an error status we cannot do anything sensible about."""

    def __init__(self, message: str, *, status: int, detail: str = "") -> None:
        super().__init__(message, detail=detail)
        self.status = status


class KubeNotFoundError(KubeApiError):
    """404: the object (or the resource type) does not exist."""


class KubeConflictError(KubeApiError):
    """409: the object already exists or changed under us."""


class KubeForbiddenError(BackendUnavailableError):
    """403: authenticated, but RBAC does not allow this verb on this resource."""


@dataclass(frozen=True, slots=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it."""

    server: str
    namespace: str = "default"
    token: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify_tls: bool = True
    timeout_s: float = 10.0

    @staticmethod
    def validate(options: Mapping[str, object], backend: str) -> None:
        """Check the API options now (at construction), not when `load` runs at start."""
        for key in ("namespace", "api_url", "token", "ca_file", "client_cert", "client_key",
                    "kubeconfig", "context"):
            opt_str(options, key, backend)
        opt_float(options, "api_timeout_s", backend, 10.0)
        opt_bool(options, "insecure_skip_tls_verify", backend, False)

    @classmethod
    async def load(cls, options: Mapping[str, object], backend: str = "kubernetes") -> KubeConfig:
        """Build from backend options (`API_OPTIONS`); else in-cluster files, else kubeconfig."""
        namespace = opt_str(options, "namespace", backend, "default") or "default"
        timeout_s = opt_float(options, "api_timeout_s", backend, 10.0)
        api_url = opt_str(options, "api_url", backend)
        if api_url:
            return cls(
                server=api_url.rstrip("/"),
                namespace=namespace,
                token=opt_str(options, "token", backend),
                ca_file=opt_str(options, "ca_file", backend),
                client_cert=opt_str(options, "client_cert", backend),
                client_key=opt_str(options, "client_key", backend),
                verify_tls=not opt_bool(options, "insecure_skip_tls_verify", backend, False),
                timeout_s=timeout_s,
            )
        # Reading kubeconfig / service-account files is blocking I/O: keep it off the loop.
        return await asyncio.to_thread(
            _load_with_official_client,
            opt_str(options, "kubeconfig", backend),
            opt_str(options, "context", backend),
            namespace,
            timeout_s,
        )


def _load_with_official_client(
    kubeconfig: str | None, context: str | None, namespace: str, timeout_s: float
) -> KubeConfig:
    from kubernetes import client as k8s_client  # only for configuration loading
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
        except (k8s_config.ConfigException, OSError, TypeError) as exc:
            raise ConfigError(
                "no Kubernetes API configured",
                detail=f"set api_url, run in a cluster, or provide a kubeconfig ({exc})",
            ) from None
    token = None
    auth = cfg.api_key.get("authorization") if cfg.api_key else None
    if isinstance(auth, str):
        token = auth.removeprefix("Bearer ").strip()
    return KubeConfig(
        server=str(cfg.host).rstrip("/"),
        namespace=namespace,
        token=token,
        ca_file=cfg.ssl_ca_cert,
        client_cert=cfg.cert_file,
        client_key=cfg.key_file,
        verify_tls=bool(cfg.verify_ssl),
        timeout_s=timeout_s,
    )


class KubeApi:
    """The REST calls the backends make, each bounded by `config.timeout_s`."""

    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        ssl_ctx: ssl.SSLContext | bool = False
        if self.config.server.startswith("https"):
            if not self.config.verify_tls:
                ssl_ctx = False
            else:
                ssl_ctx = ssl.create_default_context(cafile=self.config.ca_file)
                if self.config.client_cert:
                    ssl_ctx.load_cert_chain(self.config.client_cert, self.config.client_key)
        headers = {"Accept": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        self._session = aiohttp.ClientSession(
            base_url=self.config.server + "/",
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=64),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeApi.start() was not called")
        return self._session

    def _timeout(self, timeout_s: float | None) -> aiohttp.ClientTimeout:
        total = self.config.timeout_s if timeout_s is None else timeout_s
        return aiohttp.ClientTimeout(total=total, connect=min(total, self.config.timeout_s))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """One API call; returns the decoded JSON object or raises from the error tree."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else None
        url = path.lstrip("/")
        try:
            async with self.session.request(
                method, url, data=data, headers=headers, params=params,
                timeout=self._timeout(timeout_s),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unavailable(self.config.server, f"{method} {path}", exc) from None
        if status >= 400:
            raise _status_error(method, path, status, raw)
        if not raw:
            return {}
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise KubeApiError(
                f"Kubernetes API answered {method} {path} with non-JSON", status=status,
                detail=raw[:200].decode(errors="replace"),
            ) from None
        return cast(dict[str, Any], decoded) if isinstance(decoded, dict) else {"items": decoded}

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def patch(
        self, path: str, body: Mapping[str, Any], content_type: str = STRATEGIC_MERGE
    ) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(self, path: str, *, grace_period_s: int | None = None) -> dict[str, Any]:
        params = None if grace_period_s is None else {"gracePeriodSeconds": str(grace_period_s)}
        return await self.request("DELETE", path, params=params)

    async def watch(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events (`{"type", "object"}`) until the server closes the stream.

        Opening the stream is bounded by the API timeout; once open, the stream may stay idle
        for as long as the caller keeps iterating (the caller decides when to stop).
        """
        query = {"watch": "true", "allowWatchBookmarks": "true", **(params or {})}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.config.timeout_s, sock_connect=self.config.timeout_s
        )
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the inner call finishing, and a watch loop must stop when cancelled
            async with asyncio.timeout(self.config.timeout_s):
                resp = await self.session.get(path.lstrip("/"), params=query, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unavailable(self.config.server, f"WATCH {path}", exc) from None
        async with resp:
            if resp.status >= 400:
                raise _status_error("WATCH", path, resp.status, await resp.read())
            try:
                async for line in resp.content:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # a torn line: the next event re-states the object anyway
                    if isinstance(event, dict):
                        yield cast(dict[str, Any], event)
            except (aiohttp.ClientError, OSError) as exc:
                raise _unavailable(self.config.server, f"WATCH {path}", exc) from None


def _unavailable(server: str, what: str, exc: BaseException) -> BackendUnavailableError:
    reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
    return BackendUnavailableError(
        "Kubernetes API server unavailable", detail=f"{what} at {server}: {reason}"
    )


def _status_error(method: str, path: str, status: int, raw: bytes) -> BackendError:
    message = raw[:300].decode(errors="replace")
    try:
        decoded = json.loads(raw)
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            message = decoded["message"]
    except ValueError:
        pass
    where = f"{method} {path}"
    if status == 401:
        return BackendUnavailableError(
            "Kubernetes API authentication failed", detail=f"{where}: {message}"
        )
    if status == 403:
        return KubeForbiddenError(
            "Kubernetes API forbade the request (check the RBAC rules in docs/platforms.md)",
            detail=f"{where}: {message}",
        )
    if status == 404:
        return KubeNotFoundError("not found", status=status, detail=f"{where}: {message}")
    if status == 409:
        return KubeConflictError("conflict", status=status, detail=f"{where}: {message}")
    if status in (429, 500, 502, 503, 504):
        return BackendUnavailableError(
            f"Kubernetes API server answered {status}", detail=f"{where}: {message}"
        )
    return KubeApiError(
        f"Kubernetes API rejected the request ({status})", status=status,
        detail=f"{where}: {message}",
    )
