"""Fixtures for the operator tests: an emulated cluster and the operator running in it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kmock
import pytest
from k8s_emulator import (
    SYSTEM_NS,
    ApiServerEmulator,
    Cluster,
    declare_resources,
    running_operator,
    write_kubeconfig,
)


@pytest.fixture(params=[True], ids=["knative"])
async def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """An emulated cluster; parametrize indirectly with False for one without Knative."""
    async with ApiServerEmulator() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator, knative=request.param)
        url = str(server.url).rstrip("/")
        yield Cluster(emulator, url, write_kubeconfig(tmp_path / "kubeconfig", url))


@pytest.fixture()
def operator_env(monkeypatch: pytest.MonkeyPatch, cluster: Cluster) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("SHABARI_NAMESPACE", SYSTEM_NS)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("SHABARI_GATEWAY_URL", raising=False)
    yield


@pytest.fixture()
async def operator(cluster: Cluster, operator_env: None) -> AsyncIterator[Cluster]:
    async with running_operator(cluster) as running:
        yield running
