"""A small asyncio client for the Kubernetes REST API, shared by the kubernetes and knative backends.

Why not the official `kubernetes` client? Its calls block, and a backend runs inside the
gateway's event loop: one slow API server would stall every invocation. This client speaks the
few REST calls the backends need (get, list, create, patch, delete, watch) over aiohttp, bounds
every call with a timeout, and maps failures onto the one exception tree: an unreachable or
hanging API server becomes `BackendUnavailableError` within `timeout_s`, 401/403 become
`BackendUnavailableError` naming the authentication or RBAC problem, 404 becomes
`KubeNotFoundError` (callers use it to tell "deleted" from "broken").

Credentials. Every request carries `Authorization: Bearer <token>` when a token is configured:
from the `token` option, a `token_file`, the in-cluster service-account layout
(`/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`, option
`service_account_dir`) or a kubeconfig (static token, exec plugin, or a client certificate,
which is presented in the TLS handshake instead). Tokens rotate (bound service-account tokens
expire within an hour; exec plugins on EKS/GKE within minutes), so a refreshable token is
re-read every `TOKEN_REFRESH_S` seconds, off the event loop, and at once after a 401.

The official client is still used for what it does well, off the event loop: parsing a
kubeconfig (contexts, exec plugins, embedded certificate data). It keeps the token under
`api_key["BearerToken"]` with its prefix (`"Bearer <t>"` from a kubeconfig, `"bearer <t>"` in
a cluster, client 37.x); `bearer_token` reads exactly that.

403s are of two kinds: RBAC ("User ... cannot create resource ...") is a deployment problem
(`KubeForbiddenError`, a `BackendUnavailableError`); admission (ResourceQuota, LimitRange, Pod
Security) refuses *this* object, and the caller decides (`KubeAdmissionError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp

from shabari.backends._options import opt_bool, opt_float, opt_str
from shabari.core.errors import BackendError, BackendUnavailableError, ConfigError

__all__ = [
    "API_OPTIONS",
    "SERVICE_ACCOUNT_DIR",
    "TOKEN_REFRESH_S",
    "KubeAdmissionError",
    "KubeApi",
    "KubeApiError",
    "KubeConfig",
    "KubeConflictError",
    "KubeForbiddenError",
    "KubeNotFoundError",
    "admission_kind",
    "bearer_token",
]

#: backend options that configure the API connection (shared by kubernetes and knative)
API_OPTIONS = (
    "api_url", "token", "ca_file", "client_cert", "client_key", "insecure_skip_tls_verify",
    "namespace", "api_timeout_s", "kubeconfig", "context", "token_file", "service_account_dir",
)

#: where a pod finds its service-account credentials (token, ca.crt, namespace)
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: how often a refreshable token (file, exec plugin) is re-read; kubelet rotates bound
#: service-account tokens at 80% of their life (1 h by default), client-go re-reads every minute
TOKEN_REFRESH_S = 60.0

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


class KubeAdmissionError(KubeApiError):
    """403 from admission: a ResourceQuota, LimitRange or Pod Security refused this object.

    Not a broken deployment: a smaller object (or another namespace) may pass. `kind` says
    which: "quota", "limitrange", "podsecurity" or "admission".
    """

    def __init__(self, message: str, *, status: int, kind: str, detail: str = "") -> None:
        super().__init__(message, status=status, detail=detail)
        self.kind = kind


def bearer_token(value: object) -> str | None:
    """The bare token of an `Authorization`-style value (`Bearer x`, `bearer x` or `x`)."""
    if not isinstance(value, str):
        return None
    scheme, _, rest = value.strip().partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" and rest else value.strip()
    return token or None


def _read_token_file(path: str) -> str | None:
    try:
        return bearer_token(Path(path).read_text())
    except OSError:
        return None


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
    #: re-read the token from here (a projected service-account token rotates in place)
    token_file: str | None = None
    #: blocking call giving the current token (a kubeconfig's exec plugin); run off the loop
    token_source: Callable[[], str | None] | None = field(default=None, compare=False)

    @property
    def refreshable(self) -> bool:
        return self.token_file is not None or self.token_source is not None

    def current_token(self) -> str | None:
        """The token now (blocking: reads a file or runs a plugin); falls back to `token`."""
        if self.token_source is not None:
            fresh = self.token_source()
            if fresh:
                return fresh
        if self.token_file is not None:
            fresh = _read_token_file(self.token_file)
            if fresh:
                return fresh
        return self.token

    @staticmethod
    def validate(options: Mapping[str, object], backend: str) -> None:
        """Check the API options now (at construction), not when `load` runs at start."""
        for key in ("namespace", "api_url", "token", "ca_file", "client_cert", "client_key",
                    "kubeconfig", "context", "token_file", "service_account_dir"):
            opt_str(options, key, backend)
        opt_float(options, "api_timeout_s", backend, 10.0)
        opt_bool(options, "insecure_skip_tls_verify", backend, False)

    @classmethod
    async def load(cls, options: Mapping[str, object], backend: str = "kubernetes") -> KubeConfig:
        """Build from backend options (`API_OPTIONS`); else in-cluster files, else kubeconfig.

        Order: `api_url` (with `token` / `token_file` / client certificate options), then the
        `kubeconfig` / `context` options when given, then the in-cluster layout when
        `KUBERNETES_SERVICE_HOST` is set and the service-account token exists, then
        `$KUBECONFIG` / `~/.kube/config`.
        """
        namespace = opt_str(options, "namespace", backend)
        timeout_s = opt_float(options, "api_timeout_s", backend, 10.0)
        api_url = opt_str(options, "api_url", backend)
        if api_url:
            token_file = opt_str(options, "token_file", backend)
            token = opt_str(options, "token", backend)
            if token_file and not token:
                token = await asyncio.to_thread(_read_token_file, token_file)
            return cls(
                server=api_url.rstrip("/"),
                namespace=namespace or "default",
                token=bearer_token(token),
                ca_file=opt_str(options, "ca_file", backend),
                client_cert=opt_str(options, "client_cert", backend),
                client_key=opt_str(options, "client_key", backend),
                verify_tls=not opt_bool(options, "insecure_skip_tls_verify", backend, False),
                timeout_s=timeout_s,
                token_file=token_file,
            )
        # Reading kubeconfig / service-account files is blocking I/O: keep it off the loop.
        return await asyncio.to_thread(
            _load_config_files,
            opt_str(options, "kubeconfig", backend),
            opt_str(options, "context", backend),
            namespace,
            timeout_s,
            opt_str(options, "service_account_dir", backend) or SERVICE_ACCOUNT_DIR,
        )


def _load_config_files(
    kubeconfig: str | None, context: str | None, namespace: str | None, timeout_s: float,
    service_account_dir: str,
) -> KubeConfig:
    if kubeconfig is None and context is None:  # an explicit kubeconfig/context wins
        incluster = _load_incluster(namespace, timeout_s, service_account_dir)
        if incluster is not None:
            return incluster
    return _load_kubeconfig(kubeconfig, context, namespace, timeout_s)


def _load_incluster(
    namespace: str | None, timeout_s: float, sa_dir: str
) -> KubeConfig | None:
    """The service-account layout a pod gets (what client-go's `InClusterConfig` reads)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    token_file = os.path.join(sa_dir, "token")
    if not host or not port or not os.path.isfile(token_file):
        return None
    token = _read_token_file(token_file)
    if token is None:
        raise ConfigError("in-cluster service-account token is empty or unreadable",
                          detail=f"{token_file}: is automountServiceAccountToken off?")
    ca_file = os.path.join(sa_dir, "ca.crt")
    if namespace is None:
        with contextlib.suppress(OSError):
            namespace = Path(sa_dir, "namespace").read_text().strip() or None
    host = f"[{host}]" if ":" in host else host
    return KubeConfig(
        server=f"https://{host}:{port}",
        namespace=namespace or "default",
        token=token,
        ca_file=ca_file if os.path.isfile(ca_file) else None,
        timeout_s=timeout_s,
        token_file=token_file,
    )


def _load_kubeconfig(
    kubeconfig: str | None, context: str | None, namespace: str | None, timeout_s: float
) -> KubeConfig:
    from kubernetes import client as k8s_client  # only for configuration loading
    from kubernetes import config as k8s_config

    cfg = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=cfg
        )
    except (k8s_config.ConfigException, OSError, TypeError) as exc:
        raise ConfigError(
            "no Kubernetes API configured",
            detail=f"set api_url, run in a cluster, or provide a kubeconfig ({exc})",
        ) from None

    def current() -> str | None:
        # calls the client's refresh hook first: an expired exec-plugin token is renewed
        return bearer_token(cfg.get_api_key_with_prefix("BearerToken"))

    token = bearer_token((cfg.api_key or {}).get("BearerToken"))
    if namespace is None:
        with contextlib.suppress(k8s_config.ConfigException, KeyError, TypeError):
            contexts, active = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=kubeconfig)
            chosen = active if context is None else next(
                (c for c in contexts if c.get("name") == context), None)
            namespace = (chosen or {}).get("context", {}).get("namespace")
    return KubeConfig(
        server=str(cfg.host).rstrip("/"),
        namespace=namespace or "default",
        token=token,
        ca_file=cfg.ssl_ca_cert,
        client_cert=cfg.cert_file,
        client_key=cfg.key_file,
        verify_tls=bool(cfg.verify_ssl),
        timeout_s=timeout_s,
        token_source=current if cfg.refresh_api_key_hook is not None else None,
    )


class KubeApi:
    """The REST calls the backends make, each bounded by `config.timeout_s`."""

    def __init__(self, config: KubeConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self._token = config.token
        self._token_read_at = time.monotonic()
        self._token_lock = asyncio.Lock()

    async def _authorization(self, *, force: bool = False) -> dict[str, str]:
        """The `Authorization` header for the next request (re-reading a rotating token)."""
        if self.config.refreshable and (
            force or time.monotonic() - self._token_read_at >= TOKEN_REFRESH_S
        ):
            async with self._token_lock:
                if force or time.monotonic() - self._token_read_at >= TOKEN_REFRESH_S:
                    try:
                        token = await asyncio.to_thread(self.config.current_token)
                    except Exception:  # a failing exec plugin: keep the last token, retry later
                        token = None
                    self._token = token or self._token
                    self._token_read_at = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

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
        headers = {"Accept": "application/json"}  # Authorization: per request (it rotates)
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
        url = path.lstrip("/")
        for attempt in (0, 1):
            headers = await self._authorization(force=attempt > 0)
            if data is not None:
                headers["Content-Type"] = content_type
            try:
                async with self.session.request(
                    method, url, data=data, headers=headers, params=params,
                    timeout=self._timeout(timeout_s),
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise _unavailable(self.config.server, f"{method} {path}", exc) from None
            if status != 401 or not self.config.refreshable:
                break  # a 401 with a rotating token: re-read it once and retry
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
                resp = await self.session.get(path.lstrip("/"), params=query, timeout=timeout,
                                              headers=await self._authorization())
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
        admission = admission_kind(message)
        if admission is not None:
            return KubeAdmissionError(
                f"Kubernetes admission refused the object ({admission})", status=status,
                kind=admission, detail=f"{where}: {message}",
            )
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


def admission_kind(message: str) -> str | None:
    """Which admission refused a 403 (None: it is RBAC).

    The API server's own wording (k8s.io/apiserver authorization: `User "x" cannot <verb>
    resource "<r>"`) marks RBAC; quota (`exceeded quota:`), LimitRange (`maximum cpu usage per
    Container`, `must be less than or equal to`) and Pod Security (`violates PodSecurity`)
    answer 403 Forbidden with their own messages.
    """
    lowered = message.lower()
    if " cannot " in lowered and "user " in lowered and "resource" in lowered:
        return None
    if "exceeded quota" in lowered or ("must specify" in lowered and "quota" in lowered):
        return "quota"
    if "podsecurity" in lowered:
        return "podsecurity"
    if "per container" in lowered or "per pod" in lowered or "limitrange" in lowered:
        return "limitrange"
    if "admission webhook" in lowered or "denied the request" in lowered:
        return "admission"
    return None
