"""Read the gateway's per-function statistics (`GET /functions`, DESIGN 4.3).

The operator copies invocations and SLO attainment into each policy's status. An
unreachable or misbehaving gateway is reported as a `BackendUnavailableError` for the caller
to turn into a status condition; it never fails a handler. When the gateway requires a
bearer token (the chart's `gateway.auth`), the operator sends `$SHABARI_AUTH_TOKEN`.
"""

from __future__ import annotations

import os

import aiohttp

from shabari.core.errors import BackendUnavailableError


async def fetch_functions(base_url: str, timeout_s: float = 3.0) -> object:
    """The decoded JSON of `GET {base_url}/functions`."""
    url = f"{base_url.rstrip('/')}/functions"
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        token = os.environ.get("SHABARI_AUTH_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session, \
                session.get(url) as rsp:
            if rsp.status != 200:
                raise BackendUnavailableError(f"gateway answered HTTP {rsp.status}",
                                              detail=url)
            return await rsp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        raise BackendUnavailableError("gateway unreachable", detail=f"{url}: {exc!r}") from exc
