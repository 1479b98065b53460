"""The functions file as the operator manages it: empty at first, then edited while serving.

A real gateway (local backend, real workers, real HTTP) is started from a `--config` file; the
file is rewritten and `RegistryWatcher.check()` (what the poll loop runs every few seconds)
applies it. Learned models must survive everything but a change of the size grid.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from shabari.gateway.app import make_app
from shabari.gateway.cli import (
    attach_watcher,
    build_gateway,
    make_backend,
    make_policy,
    registry_applier,
)
from shabari.gateway.config import load_gateway_file, read_config_text
from shabari.gateway.reload import RegistryWatcher
from shabari.gateway.service import Gateway

PROBE_DIR = Path(__file__).parent / "functions" / "probe"
PROBE = {"slo": {"latencyMs": 5000}, "featurizer": {"type": "json"},
         "sizes": {"cpu": ["250m", "500m"], "memory": ["128Mi", "512Mi"]},
         "defaultSize": {"cpu": "500m", "memory": "512Mi"}, "directory": str(PROBE_DIR)}


def write(path: Path, functions: dict[str, Any] | str) -> None:
    text = functions if isinstance(functions, str) else yaml.safe_dump({"functions": functions})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # one step, like the kubelet's ConfigMap symlink flip


class Served:
    """A running gateway, its HTTP client and its registry watcher."""

    def __init__(self, gateway: Gateway, server: TestServer, session: aiohttp.ClientSession,
                 watcher: RegistryWatcher) -> None:
        self.gateway = gateway
        self.server = server
        self.session = session
        self.watcher = watcher

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def invoke(self, function: str, body: bytes) -> tuple[int, bytes]:
        async with self.session.post(self.url(f"/invoke/{function}"), data=body,
                                     headers={"Content-Type": "application/json"}) as r:
            return r.status, await r.read()

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.url(path)) as r:
            return await r.json()

    async def outcomes(self, function: str) -> int:
        view = {f["name"]: f for f in await self.get_json("/functions")}
        return int(view[function]["learning"]["outcomes"])


@asynccontextmanager
async def serve(cfg: Path, *, poll_s: float = 0.0) -> AsyncIterator[Served]:
    text = read_config_text(cfg)
    file = load_gateway_file(cfg, text)
    gw = build_gateway(file.functions, policy=make_policy("shabari", 3),
                       backend=make_backend("local", file.functions))
    app = make_app(gw)
    watcher = RegistryWatcher(gw, cfg, registry_applier(gw, file.backend), interval_s=poll_s,
                              loaded_text=text)
    attach_watcher(app, watcher)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(gw, server, session, watcher)
    finally:
        await server.close()


async def invoke_ok(gw: Served, function: str, n: int = 1) -> None:
    for i in range(n):
        status, body = await gw.invoke(function, b'{"ms": 1, "i": %d}' % i)
        assert status == 200, body


class TestEmptyRegistry:
    async def test_fresh_install_is_ready_and_answers_404(self, tmp_path: Path) -> None:
        cfg = tmp_path / "functions.yaml"
        cfg.write_text("functions: {}\n")  # the chart's ConfigMap before any policy
        async with serve(cfg) as gw:
            async with gw.session.get(gw.url("/readyz")) as r:
                assert r.status == 200
                assert (await r.json())["functions"] == 0
            assert await gw.get_json("/functions") == []
            status, body = await gw.invoke("thumbnail", b"{}")
            assert status == 404 and b"unknown function" in body


class TestReload:
    async def test_added_changed_removed_keep_unchanged_models(self, tmp_path: Path) -> None:
        cfg = tmp_path / "functions.yaml"
        write(cfg, {"probe": PROBE})
        async with serve(cfg) as gw:
            await invoke_ok(gw, "probe", 3)
            assert await gw.outcomes("probe") == 3
            assert await gw.watcher.check() is None  # nothing changed: nothing applied

            # added: a second function (its code from another directory), probe untouched
            write(cfg, {"probe": PROBE, "probe2": PROBE})
            change = await gw.watcher.check()
            assert change is not None and change.added == ("probe2",) and not change.changed
            await invoke_ok(gw, "probe2")
            assert await gw.outcomes("probe") == 3

            # changed SLO, same grid: the model is kept
            write(cfg, {"probe": {**PROBE, "slo": {"latencyMs": 4000}}, "probe2": PROBE})
            change = await gw.watcher.check()
            assert change is not None and change.changed == ("probe",)
            assert change.fresh_models == ()
            await invoke_ok(gw, "probe")
            assert await gw.outcomes("probe") == 4
            assert gw.gateway.functions["probe"].slo.latency_ms == 4000

            # changed grid: a fresh model
            grid = {"cpu": ["250m", "500m", "1"], "memory": ["128Mi", "512Mi"]}
            write(cfg, {"probe": {**PROBE, "sizes": grid}, "probe2": PROBE})
            change = await gw.watcher.check()
            assert change is not None and change.fresh_models == ("probe",)
            await invoke_ok(gw, "probe")
            assert await gw.outcomes("probe") == 1
            assert await gw.outcomes("probe2") == 1

            # removed: 404 from now on, its idle pods stopped
            write(cfg, {"probe": {**PROBE, "sizes": grid}})
            change = await gw.watcher.check()
            assert change is not None and change.removed == ("probe2",)
            status, _ = await gw.invoke("probe2", b"{}")
            assert status == 404
            assert not gw.gateway.scheduler.pods("probe2")  # type: ignore[arg-type]
            assert [f["name"] for f in await gw.get_json("/functions")] == ["probe"]

    async def test_invocations_in_flight_finish_across_a_reload(self, tmp_path: Path) -> None:
        cfg = tmp_path / "functions.yaml"
        write(cfg, {"probe": PROBE, "probe2": PROBE})
        async with serve(cfg) as gw:
            await invoke_ok(gw, "probe2")  # a warm pod, so the next call starts at once
            grid = {"cpu": ["250m", "500m", "1"], "memory": ["128Mi", "512Mi"]}
            slow = asyncio.create_task(gw.invoke("probe2", b'{"sleep": 1.0}'))
            changing = asyncio.create_task(gw.invoke("probe", b'{"sleep": 1.0}'))
            async with asyncio.timeout(10):
                while gw.gateway.admission.running < 2:
                    await asyncio.sleep(0.01)
            # probe2 removed and probe's grid changed while both run
            write(cfg, {"probe": {**PROBE, "sizes": grid}})
            change = await gw.watcher.check()
            assert change is not None and change.removed == ("probe2",)
            assert change.fresh_models == ("probe",)
            assert (await slow)[0] == 200
            assert (await changing)[0] == 200
            # the late learn of the old grid did not pin the old grid: fresh model, new sizes
            status, _ = await gw.invoke("probe", b"{}")
            assert status == 200
            assert await gw.outcomes("probe") == 1

    async def test_broken_file_keeps_last_good_registry(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    ) -> None:
        cfg = tmp_path / "functions.yaml"
        write(cfg, {"probe": PROBE})
        async with serve(cfg) as gw:
            bad = {"probe": {**PROBE, "sizes": {"cpu": ["2x"], "memory": ["1Gi"]}}}
            write(cfg, bad)
            with caplog.at_level(logging.ERROR, logger="shabari.gateway.reload"):
                assert await gw.watcher.check() is None
                write(cfg, bad)  # rewritten with the same content: no second error line
                assert await gw.watcher.check() is None
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1
            assert "functions.probe.sizes.cpu" in errors[0].getMessage()
            assert "last good" in errors[0].getMessage()

            # still serving the last good registry, and saying what is wrong
            await invoke_ok(gw, "probe")
            async with gw.session.get(gw.url("/readyz")) as r:
                assert r.status == 200
                assert "functions.probe.sizes.cpu" in (await r.json())["registry_error"]
            async with gw.session.get(gw.url("/metrics")) as r:
                metrics = await r.text()
            assert "shabari_registry_error 1.0" in metrics
            assert 'shabari_registry_reloads_total{result="invalid"} 1.0' in metrics

            write(cfg, "functions: [unclosed\n")  # not even YAML
            assert await gw.watcher.check() is None
            assert "invalid YAML" in str(gw.gateway.registry_error)

            write(cfg, {"probe": PROBE, "probe2": PROBE})  # fixed
            change = await gw.watcher.check()
            assert change is not None and change.added == ("probe2",)
            assert gw.gateway.registry_error is None

    async def test_poll_loop_applies_changes_by_itself(self, tmp_path: Path) -> None:
        cfg = tmp_path / "functions.yaml"
        write(cfg, "functions: {}\n")
        async with serve(cfg, poll_s=0.05) as gw:
            write(cfg, {"probe": PROBE})
            async with asyncio.timeout(20):
                while not await gw.get_json("/functions"):
                    await asyncio.sleep(0.05)
            await invoke_ok(gw, "probe")
