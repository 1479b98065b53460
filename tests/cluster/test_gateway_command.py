"""`shabari gateway --backend kubernetes|knative|openwhisk` as a user runs it.

The kubernetes case is a real `shabari gateway` process: its `--config` file carries the
backend's options (`backend:`) and the functions, it talks over HTTP to the API emulator, the
test kubelet turns its pods into real workers, and the registry file is edited while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE, TestKubelet, free_port
from strict_api import admin_headers

from shabari.cli import main

ECHO = {"slo": {"latencyMs": 5000}, "featurizer": {"type": "generic"},
        "sizes": {"cpu": ["250m", "1"], "memory": ["256Mi"]}}


def write_config(path: Path, backend: dict[str, Any], functions: dict[str, Any]) -> None:
    """Replace the file in one step, as the kubelet's ConfigMap symlink flip does."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump({"backend": backend, "functions": functions}))
    os.replace(tmp, path)


async def wait_for(session: aiohttp.ClientSession, url: str, check: Any,
                   timeout_s: float = 30.0) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        doc = await resp.json()
                        if check(doc):
                            return doc
            await asyncio.sleep(0.1)


class TestGatewayCommandOnKubernetes:
    async def test_serves_pods_on_the_real_nodes_and_follows_the_registry(
        self, k8s_api: tuple[kmock.KubernetesEmulator, str], kubelet: TestKubelet,
        tmp_path: Path,
    ) -> None:
        emulator, url = k8s_api
        async with aiohttp.ClientSession(headers=admin_headers()) as session:
            # a real node: the scheduler must place on it, which it can only know after the
            # backend started (before, the backend reports its fallback capacity)
            node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"},
                    "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}}
            async with session.post(f"{url}/api/v1/nodes", json=node) as resp:
                assert resp.status < 300, await resp.text()
            backend = {"api_url": url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "image_prefix": "test/",
                       "port": kubelet.port, "ready_timeout_s": 30, "poll_interval_s": 0.1}
            cfg = tmp_path / "functions.yaml"
            write_config(cfg, backend, {"echo": ECHO})
            port = free_port()
            log = tmp_path / "gateway.log"
            log_file = log.open("wb")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shabari.cli", "gateway", "--backend", "kubernetes",
                "--config", str(cfg), "--port", str(port), "--policy", "static-default",
                "--registry-poll", "0.2", stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file, stderr=log_file)
            base = f"http://127.0.0.1:{port}"
            try:
                await wait_for(session, f"{base}/readyz", lambda d: True, 60)
                async with session.post(f"{base}/invoke/echo", data=b"hi",
                                        headers={"Content-Type": "text/plain"}) as resp:
                    body = await resp.read()
                    assert resp.status == 200, body
                    assert body.startswith(b"echo:hi:cpu=")
                pods = [o for key, o in emulator.objects.items()
                        if key[0].plural == "pods" and not o.deleted]
                assert [p["spec"].get("nodeName") for p in pods] == ["node-a"]

                # the operator removes the function: 404 without a restart
                write_config(cfg, backend, {})
                await wait_for(session, f"{base}/functions", lambda d: d == [])
                async with session.post(f"{base}/invoke/echo", data=b"x") as resp:
                    assert resp.status == 404
                # and publishes it again
                write_config(cfg, backend, {"echo": ECHO})
                await wait_for(session, f"{base}/functions", lambda d: len(d) == 1)
                async with session.post(f"{base}/invoke/echo", data=b"again") as resp:
                    assert resp.status == 200
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(60):
                    rc = await proc.wait()
                log_file.close()
            assert rc == 0, log.read_text()
            assert "registry: added ['echo']" in log.read_text()
        # the graceful shutdown stopped every pod it started
        assert all(o.deleted for key, o in emulator.objects.items() if key[0].plural == "pods")


class TestBackendOptionErrors:
    @pytest.mark.parametrize(("backend", "options", "misspelt"), [
        ("kubernetes", {"namespce": "fns"}, "namespce"),
        ("knative", {"ingress_url": "http://127.0.0.1:1", "manage_variant": True},
         "manage_variant"),
        ("openwhisk", {"api_host": "http://127.0.0.1:1", "auth": "u:k", "namepsace": "_"},
         "namepsace"),
    ])
    def test_misspelt_option_is_one_clear_line_and_exit_1(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str,
        options: dict[str, Any], misspelt: str,
    ) -> None:
        cfg = tmp_path / "functions.yaml"
        write_config(cfg, options, {"echo": ECHO})
        assert main(["gateway", "--backend", backend, "--config", str(cfg)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert f"unknown option {misspelt!r}" in err[0] and f"{backend} backend" in err[0]

    def test_local_capacity_flags_refused_for_cluster_backends(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    ) -> None:
        cfg = tmp_path / "functions.yaml"
        write_config(cfg, {}, {"echo": ECHO})
        assert main(["gateway", "--backend", "kubernetes", "--config", str(cfg),
                     "--node-cpus", "4"]) == 1
        assert "local backend only" in capsys.readouterr().err

    def test_backend_config_file_overrides_the_config_section(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    ) -> None:
        # the chart's layout: registry without options, options in their own file
        cfg = tmp_path / "functions.yaml"
        cfg.write_text("functions: {}\n")
        options = tmp_path / "backend.yaml"
        options.write_text("backend: {namespace: fns, imge_prefix: x/}\n")
        assert main(["gateway", "--backend", "kubernetes", "--config", str(cfg),
                     "--backend-config", str(options)]) == 1
        assert "unknown option 'imge_prefix'" in capsys.readouterr().err
