"""Fixtures: a real gateway (real HTTP socket, local backend, real worker processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from shabari.agent.policy import Policy
from shabari.gateway.app import make_app
from shabari.gateway.cli import make_backend
from shabari.gateway.config import FunctionEntry, GatewayConfig
from shabari.gateway.service import Gateway
from shabari.runtime.catalog import bundled_functions, load_function

PROBE_DIR = Path(__file__).parent / "functions" / "probe"


def entries(names: Sequence[str]) -> dict[str, FunctionEntry]:
    out: dict[str, FunctionEntry] = {}
    catalog = None
    for name in names:
        if name == "probe":
            f = load_function(PROBE_DIR)
        else:
            catalog = catalog or bundled_functions()
            f = catalog[name]
        out[name] = FunctionEntry(spec=f.spec, directory=f.directory)
    return out


class Running:
    def __init__(self, gateway: Gateway, server: TestServer, session: aiohttp.ClientSession):
        self.gateway = gateway
        self.server = server
        self.session = session

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def invoke(self, function: str, body: bytes,
                     content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
        async with self.session.post(self.url(f"/invoke/{function}"), data=body,
                                     headers={"Content-Type": content_type}) as r:
            return r.status, dict(r.headers), await r.read()

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.url(path)) as r:
            return await r.json()


GatewayFactory = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def gateway_factory() -> GatewayFactory:
    @asynccontextmanager
    async def factory(policy: Policy, names: Sequence[str] = ("probe",),
                      **config: Any) -> AsyncIterator[Running]:
        from shabari.gateway.cli import build_gateway

        ents = entries(names)
        gw = build_gateway(ents, policy=policy, backend=make_backend("local", ents),
                           config=GatewayConfig(**config))
        server = TestServer(make_app(gw))
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                yield Running(gw, server, session)
        finally:
            await server.close()

    return factory
