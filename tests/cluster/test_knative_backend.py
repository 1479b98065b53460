"""The knative backend against the emulated API server and a tag-routing test ingress.

`FakeKnative` stands in for Knative Serving's controller and data plane, both over real HTTP:
the controller marks Routes (in every namespace) Ready and publishes their tagged traffic, each
tag's own URL and the Route's URL in the status, unless a tag hostname `<tag>-<route>` exceeds
one DNS label or a variant must start a pod that cannot be scheduled (a GPU size here) because
it lacks `initial-scale: "0"`; the ingress routes each request by its Host header to a Route (or
to a tag, by the tag's hostname) and, only when `knative-serving/config-features` says
`tag-header-based-routing: Enabled` (Knative's default is Disabled), by `Knative-Serving-Tag` to
the tagged Configuration (otherwise: the 100% target), scales that Configuration from zero by
starting a real worker process (`python -m shabari.runtime.worker --http`) while holding the
request, as the activator does, and proxies the request to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
from aiohttp import web
from cluster_fixtures import BACKEND_TOKEN, NAMESPACE, free_port
from strict_api import admin_headers

from shabari.backends.base import Backend
from shabari.backends.knative import (
    INITIAL_SCALE,
    TAG_HEADER,
    KnativeBackend,
    configuration_name,
    dns_name,
    route_name,
    variant_manifests,
    variant_tag,
)
from shabari.core import SLO, FunctionName, FunctionSpec, NodeId, PodId, Size
from shabari.core.errors import (
    BackendError,
    BackendUnavailableError,
    FunctionFailedError,
    ResizeRejectedError,
)
from shabari.core.types import OutcomeStatus
from shabari.core.units import parse_cpu

SERVING = "apis/serving.knative.dev/v1"
NODE = NodeId("knative")


class FakeKnative:
    def __init__(self, api_url: str, function_dirs: dict[str, Path]) -> None:
        self.api_url = api_url.rstrip("/")
        self.function_dirs = function_dirs
        self.workers: dict[str, tuple[asyncio.subprocess.Process, int]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.served_by: list[str] = []
        #: scheduling + image pull of a pod scaled from zero, before its process starts
        self.pod_scheduling_s = 0.2
        #: (Host, Knative-Serving-Tag header) of every request the ingress saw
        self.requests: list[tuple[str, str | None]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.ingress)
        self._session: aiohttp.ClientSession | None = None
        self._controller: asyncio.Task[None] | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers=admin_headers())
        self._controller = asyncio.create_task(self._reconcile_routes())

    async def close(self) -> None:
        if self._controller is not None:
            self._controller.cancel()
            with contextlib.suppress(BaseException):
                await self._controller
        for proc, _ in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self.session.close()

    async def _get(self, path: str) -> dict[str, Any] | None:
        async with self.session.get(f"{self.api_url}/{path}") as resp:
            return await resp.json() if resp.status == 200 else None

    async def _reconcile_routes(self) -> None:
        """The controller part: Routes become Ready with their tags and URLs in the status."""
        while True:
            listing = await self._get(f"{SERVING}/routes") or {}
            for route in listing.get("items", []):
                if (route.get("status") or {}).get("conditions"):
                    continue
                name, ns = route["metadata"]["name"], route["metadata"]["namespace"]
                problem = await self._route_problem(route)
                if problem is not None:
                    status: dict[str, Any] = {"conditions": [
                        {"type": "Ready", "status": "False", "reason": problem[0],
                         "message": problem[1]}]}
                else:
                    traffic = [{**t, "revisionName": f"{t['configurationName']}-00001",
                                **({"url": f"http://{t['tag']}-{name}.{ns}.example.com"}
                                   if t.get("tag") else {})}
                               for t in route["spec"]["traffic"]]
                    status = {"conditions": [{"type": "Ready", "status": "True"}],
                              "url": f"http://{name}.{ns}.example.com", "traffic": traffic}
                async with self.session.patch(
                    f"{self.api_url}/{SERVING}/namespaces/{ns}/routes/{name}/status",
                    json={"status": status},
                    headers={"Content-Type": "application/merge-patch+json"},
                ) as resp:
                    await resp.read()
            await asyncio.sleep(0.05)

    async def _route_problem(self, route: dict[str, Any]) -> tuple[str, str] | None:
        name, ns = route["metadata"]["name"], route["metadata"]["namespace"]
        for t in route["spec"]["traffic"]:
            if t.get("tag") and len(f"{t['tag']}-{name}") > 63:
                return "DomainTooLong", f"tag hostname {t['tag']}-{name} exceeds 63 characters"
            conf = await self._get(
                f"{SERVING}/namespaces/{ns}/configurations/{t['configurationName']}")
            if conf is None:
                return "ConfigurationMissing", t["configurationName"]
            template = conf["spec"]["template"]
            annotations = (template.get("metadata") or {}).get("annotations") or {}
            limits = template["spec"]["containers"][0].get("resources", {}).get("limits", {})
            if annotations.get(INITIAL_SCALE) != "0" and limits.get("nvidia.com/gpu"):
                return "RevisionFailed", (f"{t['configurationName']}: 0/1 nodes are "
                                          "available: Insufficient nvidia.com/gpu")
        return None

    async def header_routing(self) -> bool:
        cm = await self._get("api/v1/namespaces/knative-serving/configmaps/config-features")
        return ((cm or {}).get("data") or {}).get("tag-header-based-routing") == "Enabled"

    async def _worker_for(self, namespace: str, configuration: str) -> int:
        """Scale from zero: start the configuration's pod (a worker) if none is running."""
        lock = self.locks.setdefault(configuration, asyncio.Lock())
        async with lock:
            if configuration in self.workers:
                return self.workers[configuration][1]
            conf = await self._get(
                f"{SERVING}/namespaces/{namespace}/configurations/{configuration}")
            assert conf is not None, configuration
            container = conf["spec"]["template"]["spec"]["containers"][0]
            function = container["image"].removeprefix("test/")
            # a real scale from zero schedules a pod and pulls an image before the process
            # starts (seconds); a worker alone starts in ~80 ms on a quiet machine, under the
            # backend's cold-start threshold, so the fake adds the platform's part
            await asyncio.sleep(self.pod_scheduling_s)
            port = free_port()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shabari.runtime.worker",
                "--function-dir", str(self.function_dirs[function]),
                "--http", str(port), "--host", "127.0.0.1",
                "--cpu-millicores",
                str(parse_cpu(container["resources"]["limits"]["cpu"])),
                stdin=asyncio.subprocess.DEVNULL)
            for _ in range(400):
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with self.session.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.025)
            self.workers[configuration] = (proc, port)
            return port

    async def ingress(self, request: web.Request) -> web.StreamResponse:
        label, _, rest = request.host.partition(".")
        ns = rest.split(".", 1)[0]
        listing = await self._get(f"{SERVING}/namespaces/{ns}/routes") or {}
        route, tag = None, None
        for r in listing.get("items", []):
            name = r["metadata"]["name"]
            if label == name:
                route = r
            for t in r["spec"]["traffic"]:
                if t.get("tag") and label == f"{t['tag']}-{name}":
                    route, tag = r, t["tag"]  # the tag's own hostname
        if route is None:
            return web.Response(status=404, text=f"no route for host {request.host}")
        self.requests.append((request.host, request.headers.get(TAG_HEADER)))
        if tag is None and await self.header_routing():
            tag = request.headers.get(TAG_HEADER)  # ignored unless the feature is Enabled
        targets = route["spec"]["traffic"]
        if tag:
            target = next((t for t in targets if t.get("tag") == tag), None)
        else:
            target = next((t for t in targets if t.get("percent") == 100), None)
        if target is None:
            return web.Response(status=404, text=f"no traffic target tagged {tag}")
        configuration = target["configurationName"]
        port = await self._worker_for(ns, configuration)
        self.served_by.append(configuration)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower().startswith("x-shabari") or k.lower() == "content-type"}
        async with self.session.post(f"http://127.0.0.1:{port}/invoke",
                                     data=await request.read(), headers=headers) as resp:
            body = await resp.read()
            out_headers = {k: v for k, v in resp.headers.items()
                           if k.lower().startswith("x-shabari") or k.lower() == "content-type"}
            return web.Response(status=resp.status, body=body, headers=out_headers)


@pytest.fixture
async def knative(
    k8s_api: tuple[kmock.KubernetesEmulator, str], function_dirs: dict[str, Path]
) -> AsyncIterator[tuple[FakeKnative, str]]:
    emulator, url = k8s_api
    for plural, kind in (("routes", "Route"), ("configurations", "Configuration")):
        emulator.resources[f"serving.knative.dev/v1/{plural}"] = kmock.ResourceInfo(
            kind=kind, namespaced=True, subresources={"status"})
    fake = FakeKnative(url, function_dirs)
    await fake.start()
    runner = web.AppRunner(fake.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}"
    await fake.close()
    await runner.cleanup()


def spec(name: str) -> FunctionSpec:
    return FunctionSpec(name=FunctionName(name), slo=SLO(latency_ms=1000.0),
                        sizes=(Size(500, 256), Size(2000, 512)), default_size=Size(500, 256))


@pytest.fixture
async def backend(
    k8s_api: tuple[kmock.KubernetesEmulator, str], knative: tuple[FakeKnative, str]
) -> AsyncIterator[KnativeBackend]:
    _, api_url = k8s_api
    _, ingress = knative
    b = KnativeBackend({
        "api_url": api_url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "ingress_url": ingress,
        "manage_variants": True, "image_prefix": "test/", "ready_timeout_s": 10,
        "poll_interval_s": 0.05, "cold_start_threshold_ms": 100,
    })
    await b.start()
    yield b
    await b.close()


class TestNaming:
    def test_variant_tags(self) -> None:
        assert variant_tag(Size(500, 512)) == "cpu500m-mem512mi"
        assert variant_tag(Size(1000, 4096, 1)) == "cpu1000m-mem4096mi-gpu1"
        assert configuration_name("thumb", Size(250, 256)) == "thumb-cpu250m-mem256mi"
        assert route_name("thumb") == "thumb-shabari"
        long = configuration_name("f" * 70, Size(250, 256))
        assert len(long) <= 63

    def test_naming_agrees_with_the_operator(self) -> None:
        # the operator prepares the variants the backend routes to: same names or no routing
        from shabari.k8s import reconcile

        for size in (Size(250, 128), Size(2000, 4096), Size(1000, 1024, 1)):
            assert variant_tag(size) == reconcile.size_tag(size)
            assert configuration_name("svc", size) == reconcile.dns_name("svc",
                                                                         variant_tag(size))
        assert route_name("svc") == reconcile.route_name("svc")
        assert dns_name("x" * 80, "y") == reconcile.dns_name("x" * 80, "y")

    def test_manifests_one_configuration_per_size_and_one_tagged_route(self) -> None:
        manifests = variant_manifests(spec("echo"), "ns", "img")
        confs = [m for m in manifests if m["kind"] == "Configuration"]
        (route,) = [m for m in manifests if m["kind"] == "Route"]
        assert {c["metadata"]["name"] for c in confs} == {"echo-cpu500m-mem256mi",
                                                          "echo-cpu2000m-mem512mi"}
        big = next(c for c in confs if c["metadata"]["name"] == "echo-cpu2000m-mem512mi")
        res = big["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"] == res["limits"] == {"cpu": "2", "memory": "512Mi"}
        tags = {t.get("tag") for t in route["spec"]["traffic"]}
        assert tags == {"cpu500m-mem256mi", "cpu2000m-mem512mi"}
        assert sum(t["percent"] for t in route["spec"]["traffic"]) == 100

    def test_is_a_backend_without_resize(self) -> None:
        b = KnativeBackend({"ingress_url": "http://x"})
        assert isinstance(b, Backend) and b.supports_resize is False


class TestRouting:
    async def test_each_size_is_served_by_its_variant(
        self, backend: KnativeBackend, knative: tuple[FakeKnative, str]
    ) -> None:
        fake, _ = knative
        async with asyncio.timeout(60):
            await backend.prepare(spec("echo"))
            await backend.start_pod(PodId("small"), spec("echo"), Size(500, 256), NODE)
            await backend.start_pod(PodId("big"), spec("echo"), Size(2000, 512), NODE)
            cold = await backend.invoke(PodId("big"), b"a", "text/plain", 20)
            assert fake.served_by[-1] == "echo-cpu2000m-mem512mi"
            assert cold.body == b"echo:a:cpu=2000"
            assert cold.outcome.cold_start and cold.outcome.cold_start_ms >= 100
            warm = await backend.invoke(PodId("big"), b"b", "text/plain", 20)
            assert not warm.outcome.cold_start
            small = await backend.invoke(PodId("small"), b"c", "text/plain", 20)
            assert fake.served_by[-1] == "echo-cpu500m-mem256mi"
            assert small.outcome.status is OutcomeStatus.OK

    async def test_function_error_passes_through(self, backend: KnativeBackend) -> None:
        async with asyncio.timeout(60):
            await backend.start_pod(PodId("f"), spec("failing"), Size(500, 256), NODE)
            result = await backend.invoke(PodId("f"), b"q", None, 20)
            assert result.outcome.status is OutcomeStatus.ERROR
            assert b"bad input: q" in result.body

    async def test_resize_is_never_in_place(self, backend: KnativeBackend) -> None:
        with pytest.raises(ResizeRejectedError, match="in place"):
            await backend.resize(PodId("any"), 1000)


class TestFailures:
    async def test_route_missing_a_tag_is_reported(
        self, k8s_api: tuple[kmock.KubernetesEmulator, str], knative: tuple[FakeKnative, str]
    ) -> None:
        _, api_url = k8s_api
        _, ingress = knative
        manifests = variant_manifests(spec("echo"), NAMESPACE, "test/echo")
        route = manifests[-1]
        route["spec"]["traffic"] = route["spec"]["traffic"][:1]  # drop the big size's target
        async with aiohttp.ClientSession(headers=admin_headers()) as s:
            for conf in manifests[:-1]:
                async with s.post(f"{api_url}/{SERVING}/namespaces/{NAMESPACE}/configurations",
                                  json=conf) as resp:
                    assert resp.status in (200, 201), await resp.text()
            async with s.post(f"{api_url}/{SERVING}/namespaces/{NAMESPACE}/routes",
                              json=route) as resp:
                assert resp.status in (200, 201)
        b = KnativeBackend({"api_url": api_url, "token": BACKEND_TOKEN, "namespace": NAMESPACE, "ingress_url": ingress,
                            "ready_timeout_s": 1, "poll_interval_s": 0.1})
        await b.start()
        try:
            async with asyncio.timeout(10):
                with pytest.raises(BackendError, match="cpu2000m-mem512mi"):
                    await b.prepare(spec("echo"))
        finally:
            await b.close()

    async def test_ingress_unreachable(self, backend: KnativeBackend) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("p"), spec("echo"), Size(500, 256), NODE)
            backend.ingress_url = f"http://127.0.0.1:{free_port()}"
            with pytest.raises(BackendUnavailableError, match="ingress unavailable"):
                await backend.invoke(PodId("p"), b"x", None, 5)

    async def test_answer_without_worker_status_is_a_failure(
        self, backend: KnativeBackend
    ) -> None:
        async with asyncio.timeout(30):
            await backend.start_pod(PodId("p"), spec("echo"), Size(500, 256), NODE)
            # a route the ingress does not know: it answers 404 itself, no worker involved
            backend._pods[PodId("p")] = type(backend._pods[PodId("p")])(
                PodId("p"), "echo", Size(500, 256), "cpu500m-mem256mi", "nosuch.fns.example.com")
            with pytest.raises(FunctionFailedError, match="HTTP 404"):
                await backend.invoke(PodId("p"), b"x", None, 5)

    async def test_api_server_unreachable(self) -> None:
        b = KnativeBackend({"api_url": f"http://127.0.0.1:{free_port()}", "ingress_url": "http://x",
                            "api_timeout_s": 2})
        await b.start()
        try:
            async with asyncio.timeout(10):
                with pytest.raises(BackendUnavailableError, match="unavailable"):
                    await b.prepare(spec("echo"))
        finally:
            await b.close()
