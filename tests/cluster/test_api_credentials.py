"""Credentials reach the API server: kubeconfig token, client certificate, in-cluster layout.

The strict emulator answers 401 to any request without a known bearer token (unless it came
through the mutual-TLS listener), so each way of configuring credentials is checked by a
backend that must start, create and delete a pod through it, and by the record of every
request's `Authorization` header. Until issue #17 the backends read the token from
`api_key["authorization"]`, where kubernetes-client 37 never puts it, and sent none.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cluster_fixtures import NAMESPACE, TestKubelet, free_port, tls_listener
from strict_api import StrictApiServer, Tls

from shabari.backends import _k8s_api
from shabari.backends._k8s_api import KubeConfig, bearer_token
from shabari.backends.kubernetes import KubernetesBackend
from shabari.core import SLO, FunctionName, FunctionSpec, NodeId, PodId, Size
from shabari.core.errors import BackendUnavailableError

NODE = NodeId("cluster")


def spec() -> FunctionSpec:
    return FunctionSpec(name=FunctionName("echo"), slo=SLO(latency_ms=1000.0),
                        sizes=(Size(500, 256),))


def kubeconfig(path: Path, server: str, user: dict[str, Any],
               cluster: dict[str, Any] | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "tester", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "tester",
                                                   "namespace": NAMESPACE}}],
    }))
    return path


@pytest.fixture
def no_incluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)


async def start_and_stop_a_pod(b: KubernetesBackend, kubelet: TestKubelet | None) -> None:
    async with asyncio.timeout(30):
        await b.start()
        try:
            if kubelet is not None:
                await b.start_pod(PodId("p1"), spec(), Size(500, 256), NODE)
                await b.stop_pod(PodId("p1"))
        finally:
            await b.close()


class TestBearerToken:
    def test_the_client_library_prefix_is_stripped(self) -> None:
        # kubernetes-client 37: "Bearer <t>" from a kubeconfig, "bearer <t>" in a cluster
        assert bearer_token("Bearer abc") == "abc"
        assert bearer_token("bearer abc\n") == "abc"
        assert bearer_token("abc") == "abc"
        assert bearer_token("") is None and bearer_token(None) is None

    async def test_kubeconfig_token_is_sent_on_every_request(
        self, k8s_api: tuple[StrictApiServer, str], kubelet: TestKubelet, tmp_path: Path,
        no_incluster: None,
    ) -> None:
        emulator, url = k8s_api
        emulator.tokens.add("kubeconfig-token")
        cfg = kubeconfig(tmp_path / "config", url, {"token": "kubeconfig-token"})
        b = KubernetesBackend({"kubeconfig": str(cfg), "image_prefix": "test/",
                               "port": kubelet.port, "ready_timeout_s": 30})
        await start_and_stop_a_pod(b, kubelet)
        mine = [(m, p) for m, p, a, _ in emulator.auth_log if a == "Bearer kubeconfig-token"]
        assert ("POST", f"/api/v1/namespaces/{NAMESPACE}/pods") in mine
        assert any(m == "DELETE" for m, _ in mine)
        # nothing else reached the server: the kubelet uses the admin token
        others = {a for _, _, a, _ in emulator.auth_log} - {"Bearer kubeconfig-token",
                                                             "Bearer admin-token"}
        assert others == set()

    async def test_a_wrong_token_is_an_authentication_error(
        self, k8s_api: tuple[StrictApiServer, str], tmp_path: Path, no_incluster: None,
    ) -> None:
        _, url = k8s_api
        cfg = kubeconfig(tmp_path / "config", url, {"token": "revoked"})
        b = KubernetesBackend({"kubeconfig": str(cfg)})
        with pytest.raises(BackendUnavailableError, match="authentication failed"):
            async with asyncio.timeout(10):
                await b.start()

    async def test_exec_plugin_token(
        self, k8s_api: tuple[StrictApiServer, str], tmp_path: Path, no_incluster: None,
    ) -> None:
        # EKS (`aws eks get-token`) and GKE (`gke-gcloud-auth-plugin`) hand out tokens this way
        emulator, url = k8s_api
        emulator.tokens.add("exec-token")
        credential = {"apiVersion": "client.authentication.k8s.io/v1beta1",
                      "kind": "ExecCredential", "status": {"token": "exec-token"}}
        cfg = kubeconfig(tmp_path / "config", url, {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": sys.executable,
            "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
            "interactiveMode": "Never"}})
        b = KubernetesBackend({"kubeconfig": str(cfg)})
        await start_and_stop_a_pod(b, None)
        assert {a for _, _, a, _ in emulator.auth_log} == {"Bearer exec-token"}


class TestClientCertificate:
    async def test_kubeconfig_client_certificate_authenticates(
        self, k8s_api: tuple[StrictApiServer, str], tls: Tls, tmp_path: Path,
        no_incluster: None,
    ) -> None:
        emulator, _ = k8s_api
        async with tls_listener(emulator, tls, client_certs=True) as url:
            cfg = kubeconfig(
                tmp_path / "config", url,
                {"client-certificate": str(tls.client_cert), "client-key": str(tls.client_key)},
                {"certificate-authority": str(tls.ca)})
            await start_and_stop_a_pod(KubernetesBackend({"kubeconfig": str(cfg)}), None)
            assert emulator.auth_log and all(mtls for *_, mtls in emulator.auth_log)
            # without the certificate the handshake itself fails
            bare = kubeconfig(tmp_path / "bare", url, {}, {"certificate-authority": str(tls.ca)})
            with pytest.raises(BackendUnavailableError, match="unavailable"):
                async with asyncio.timeout(10):
                    await KubernetesBackend({"kubeconfig": str(bare)}).start()


class TestInCluster:
    @pytest.fixture
    def service_account(self, tmp_path: Path, tls: Tls) -> Path:
        """The files a pod gets at /var/run/secrets/kubernetes.io/serviceaccount."""
        sa = tmp_path / "serviceaccount"
        sa.mkdir()
        (sa / "token").write_text("sa-token-1")
        (sa / "ca.crt").write_bytes(tls.ca.read_bytes())
        (sa / "namespace").write_text(NAMESPACE)
        return sa

    async def test_service_account_layout_authenticates_and_rotates(
        self, k8s_api: tuple[StrictApiServer, str], tls: Tls, service_account: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        emulator, _ = k8s_api
        emulator.tokens.add("sa-token-1")
        async with tls_listener(emulator, tls, client_certs=False) as url:
            port = url.rsplit(":", 1)[1]
            monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
            monkeypatch.delenv("KUBECONFIG", raising=False)
            b = KubernetesBackend({"service_account_dir": str(service_account)})
            async with asyncio.timeout(20):
                await b.start()
                try:
                    assert b.namespace == NAMESPACE  # from the namespace file
                    assert b.api.config.server == f"https://127.0.0.1:{port}"
                    # the kubelet rotates the projected token; the old one stops working
                    (service_account / "token").write_text("sa-token-2")
                    emulator.tokens.discard("sa-token-1")
                    emulator.tokens.add("sa-token-2")
                    await b.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods")
                finally:
                    await b.close()
        auths = [a for _, _, a, _ in emulator.auth_log]
        assert auths[0] == "Bearer sa-token-1" and auths[-1] == "Bearer sa-token-2"
        assert None not in auths

    async def test_an_explicit_kubeconfig_wins_inside_a_pod(
        self, k8s_api: tuple[StrictApiServer, str], service_account: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        emulator, url = k8s_api
        emulator.tokens.add("kubeconfig-token")
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")  # nothing listens there
        cfg = kubeconfig(tmp_path / "config", url, {"token": "kubeconfig-token"})
        b = KubernetesBackend({"kubeconfig": str(cfg),
                               "service_account_dir": str(service_account)})
        await start_and_stop_a_pod(b, None)
        assert {a for _, _, a, _ in emulator.auth_log} == {"Bearer kubeconfig-token"}

    async def test_token_is_reread_periodically(
        self, service_account: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(_k8s_api, "TOKEN_REFRESH_S", 0.0)
        api = _k8s_api.KubeApi(KubeConfig(server="http://127.0.0.1:1", token="sa-token-1",
                                          token_file=str(service_account / "token")))
        assert await api._authorization() == {"Authorization": "Bearer sa-token-1"}
        (service_account / "token").write_text("sa-token-2\n")
        assert await api._authorization() == {"Authorization": "Bearer sa-token-2"}


class TestGatewayProcess:
    async def test_gateway_with_a_kubeconfig_token_authenticates_every_request(
        self, k8s_api: tuple[StrictApiServer, str], kubelet: TestKubelet, tmp_path: Path,
    ) -> None:
        """`shabari gateway --backend kubernetes`, credentials from $KUBECONFIG only."""
        emulator, url = k8s_api
        emulator.tokens.add("gateway-token")
        cfg_file = kubeconfig(tmp_path / "kubeconfig", url, {"token": "gateway-token"})
        config = tmp_path / "functions.yaml"
        config.write_text(yaml.safe_dump({
            "backend": {"image_prefix": "test/", "port": kubelet.port, "ready_timeout_s": 30},
            "functions": {"echo": {"slo": {"latencyMs": 5000}, "featurizer": {"type": "generic"},
                                   "sizes": {"cpu": ["250m"], "memory": ["256Mi"]}}}}))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
        env["KUBECONFIG"] = str(cfg_file)
        log = tmp_path / "gateway.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shabari.cli", "gateway", "--backend", "kubernetes",
                "--config", str(config), "--port", str(port), "--policy", "static-default",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env)
            try:
                async with asyncio.timeout(60), aiohttp.ClientSession() as s:
                    while True:
                        try:
                            async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                                if r.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        assert proc.returncode is None, log.read_text()
                        await asyncio.sleep(0.1)
                    async with s.post(f"http://127.0.0.1:{port}/invoke/echo", data=b"hi") as r:
                        assert r.status == 200, await r.text()
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(60):
                    await proc.wait()
        gateway = [(m, p) for m, p, a, _ in emulator.auth_log if a == "Bearer gateway-token"]
        assert ("POST", f"/api/v1/namespaces/{NAMESPACE}/pods") in gateway, log.read_text()
        assert any(m == "DELETE" for m, _ in gateway)  # the graceful shutdown, too
        unauthenticated = [(m, p, a) for m, p, a, _ in emulator.auth_log
                           if a not in ("Bearer gateway-token", "Bearer admin-token")]
        assert unauthenticated == []
