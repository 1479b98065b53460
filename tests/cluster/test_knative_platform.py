"""The knative backend against Knative's defaults (issue #17, items 4, 7, 12).

A stock Knative Serving ignores `Knative-Serving-Tag` (config-features
`tag-header-based-routing` is Disabled), starts one pod per new revision (initial scale 1,
`allow-zero-initial-scale: false`), needs each tag hostname `<tag>-<route>` to be one DNS
label, and the operator puts a policy's Route in the policy's namespace. `FakeKnative` and the
strict emulator model each of these; the backend must route every invocation to the decided
size anyway, or say why not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE
from strict_api import StrictApiServer, admin_headers
from test_knative_backend import SERVING, FakeKnative, knative, spec  # noqa: F401

from shabari.backends.knative import (
    INITIAL_SCALE,
    TAG_HEADER,
    KnativeBackend,
    route_name,
    variant_manifests,
    variant_tag,
)
from shabari.core import SLO, FunctionName, FunctionSpec, NodeId, PodId, Size
from shabari.core.errors import BackendError

NODE = NodeId("knative")


async def put_configmap(url: str, name: str, data: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "knative-serving"}, "data": data}
    async with aiohttp.ClientSession(headers=admin_headers()) as s, s.post(
            f"{url}/api/v1/namespaces/knative-serving/configmaps", json=body) as resp:
        assert resp.status in (200, 201), await resp.text()


def make_backend(api_url: str, ingress: str, **extra: Any) -> KnativeBackend:
    return KnativeBackend({
        "api_url": api_url, "token": BACKEND_TOKEN, "namespace": NAMESPACE,
        "ingress_url": ingress, "manage_variants": True, "image_prefix": "test/",
        "ready_timeout_s": 5, "poll_interval_s": 0.05, "cold_start_threshold_ms": 100,
        **extra})


@pytest.fixture
async def started(
    k8s_api: tuple[StrictApiServer, str], knative: tuple[FakeKnative, str]  # noqa: F811
) -> AsyncIterator[tuple[KnativeBackend, FakeKnative, str]]:
    _, api_url = k8s_api
    fake, ingress = knative
    b = make_backend(api_url, ingress)
    await b.start()
    yield b, fake, api_url
    await b.close()


class TestTagRouting:
    async def test_default_install_routes_by_tag_hostname_and_says_so(
        self, started: tuple[KnativeBackend, FakeKnative, str],
    ) -> None:
        b, fake, _ = started
        async with asyncio.timeout(60):
            await b.start_pod(PodId("big"), spec("echo"), Size(2000, 512), NODE)
            result = await b.invoke(PodId("big"), b"a", "text/plain", 20)
        # the decided size ran it, although the header would have been ignored
        assert result.body == b"echo:a:cpu=2000"
        assert fake.served_by[-1] == "echo-cpu2000m-mem512mi"
        host, header = fake.requests[-1]
        assert host == f"{variant_tag(Size(2000, 512))}-echo-shabari.{NAMESPACE}.example.com"
        assert header is None
        assert "TagHeaderRoutingDisabled" in b.limitations()

    async def test_enabled_feature_routes_by_header(
        self, k8s_api: tuple[StrictApiServer, str], knative: tuple[FakeKnative, str],  # noqa: F811
    ) -> None:
        _, api_url = k8s_api
        fake, ingress = knative
        await put_configmap(api_url, "config-features", {"tag-header-based-routing": "Enabled"})
        b = make_backend(api_url, ingress)
        await b.start()
        try:
            async with asyncio.timeout(60):
                await b.start_pod(PodId("big"), spec("echo"), Size(2000, 512), NODE)
                result = await b.invoke(PodId("big"), b"a", "text/plain", 20)
        finally:
            await b.close()
        assert result.body == b"echo:a:cpu=2000"
        assert fake.requests[-1] == (f"echo-shabari.{NAMESPACE}.example.com",
                                     "cpu2000m-mem512mi")
        assert "TagHeaderRoutingDisabled" not in b.limitations()


class TestRouteNamespace:
    async def test_route_in_the_policys_namespace_is_found(
        self, k8s_api: tuple[StrictApiServer, str], knative: tuple[FakeKnative, str],  # noqa: F811
    ) -> None:
        """The operator creates variants next to the policy, not in the gateway's namespace."""
        _, api_url = k8s_api
        fake, ingress = knative
        async with aiohttp.ClientSession(headers=admin_headers()) as s:
            for m in variant_manifests(spec("echo"), "team-a", "test/echo"):
                plural = "routes" if m["kind"] == "Route" else "configurations"
                async with s.post(f"{api_url}/{SERVING}/namespaces/team-a/{plural}",
                                  json=m) as resp:
                    assert resp.status in (200, 201), await resp.text()
        for options in ({}, {"routes": {"echo": "team-a/echo-shabari"}}):
            b = make_backend(api_url, ingress, manage_variants=False, **options)
            await b.start()
            try:
                async with asyncio.timeout(60):
                    await b.start_pod(PodId("p"), spec("echo"), Size(500, 256), NODE)
                    result = await b.invoke(PodId("p"), b"x", None, 20)
            finally:
                await b.close()
            assert result.body == b"echo:x:cpu=500"
            assert fake.requests[-1][0].endswith(".team-a.example.com")


class TestNamesAndScale:
    async def test_long_function_name_keeps_tag_hostnames_in_one_label(
        self, started: tuple[KnativeBackend, FakeKnative, str],
    ) -> None:
        b, _, _ = started
        name = "image-classification-resnet50-batch"  # 35 characters: a normal name
        long_spec = FunctionSpec(name=FunctionName(name), slo=SLO(latency_ms=1000.0),
                                 sizes=(Size(500, 256), Size(16000, 65536)))
        route = route_name(name)
        assert all(len(f"{variant_tag(s)}-{route}") <= 63 for s in long_spec.sizes)
        async with asyncio.timeout(30):
            await b.prepare(long_spec)  # the fake controller refuses labels over 63

    @pytest.mark.parametrize("allowed", [True, False])
    async def test_unschedulable_gpu_size(
        self, k8s_api: tuple[StrictApiServer, str], knative: tuple[FakeKnative, str],  # noqa: F811
        allowed: bool,
    ) -> None:
        _, api_url = k8s_api
        _, ingress = knative
        if allowed:
            await put_configmap(api_url, "config-autoscaler",
                                {"allow-zero-initial-scale": "true"})
        gpu_spec = FunctionSpec(name=FunctionName("echo"), slo=SLO(latency_ms=1000.0),
                                sizes=(Size(500, 256), Size(500, 256, 1)),
                                default_size=Size(500, 256), gpu_capable=True)
        b = make_backend(api_url, ingress, ready_timeout_s=2)
        await b.start()
        try:
            async with asyncio.timeout(30):
                if allowed:  # no pod per size at creation: the GPU size waits for a request
                    await b.prepare(gpu_spec)
                    assert "ZeroInitialScaleNotAllowed" not in b.limitations()
                else:  # a stock install: said plainly, with the way out
                    with pytest.raises(BackendError, match="allow-zero-initial-scale"):
                        await b.prepare(gpu_spec)
                    assert "ZeroInitialScaleNotAllowed" in b.limitations()
        finally:
            await b.close()

    def test_initial_scale_zero_only_when_asked(self) -> None:
        def annotations(**kw: Any) -> list[dict[str, str]]:
            return [m["spec"]["template"]["metadata"]["annotations"]
                    for m in variant_manifests(spec("echo"), "ns", "img", **kw)
                    if m["kind"] == "Configuration"]

        assert all(INITIAL_SCALE not in a for a in annotations())
        assert all(a[INITIAL_SCALE] == "0" for a in annotations(zero_initial_scale=True))
        assert TAG_HEADER == "Knative-Serving-Tag"
