"""Fixtures and helpers for the cluster backends: an API emulator, a test kubelet, test functions.

(A uniquely named module rather than conftest.py, so test modules import these helpers by a
name no other test folder's conftest can shadow; conftest.py only registers the fixtures.)

No API server can run on these machines, so the kubernetes and knative backends talk over real
HTTP to kmock's `KubernetesEmulator`, wrapped in `strict_api.StrictApiServer`: it refuses
requests without a known bearer token (backends use `BACKEND_TOKEN`) and objects a real API
server would refuse. The emulator only stores objects; what a node would do
is done by `TestKubelet`: it watches pods through the API like a kubelet, starts one real
worker process (`python -m shabari.runtime.worker --http`) per pod on its own loopback IP
(127.0.0.N, the pod IP), marks the pod Ready with that IP, honours in-place resize patches
(rewrites the pod's cgroup CPU quota where cgroups are writable, as a real kubelet does, and
records `allocatedResources` / container `resources`; or sets `PodResizePending: Infeasible`
when the node cannot hold the new size) and kills the worker when the pod is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.test_utils
import kmock
import pytest
from strict_api import StrictApiServer, Tls, admin_headers, declare_core, make_tls

from shabari.backends.cgroups import CgroupManager, CgroupMode, PodCgroup
from shabari.core.units import format_cpu, parse_cpu, parse_memory

NAMESPACE = "fns"
#: the bearer token the backends under test present (the server also knows the admin token)
BACKEND_TOKEN = "backend-token"

#: test functions (real handler.py files run by the real worker runtime)
HANDLERS = {
    "echo": """
        def handle(body, content_type, ctx):
            return b"echo:" + body + f":cpu={ctx.cpu_millicores}".encode(), "text/plain"
    """,
    "sleepy": """
        import time
        def handle(body, content_type, ctx):
            time.sleep(float(body or b"0"))
            return b"slept"
    """,
    "failing": """
        def handle(body, content_type, ctx):
            raise ValueError("bad input: " + body.decode(errors="replace"))
    """,
    "hog": """
        def handle(body, content_type, ctx):
            raise MemoryError("simulated allocation failure")
    """,
    "bloat": """
        import time
        def handle(body, content_type, ctx):
            held = b"x" * (int(body or b"300") << 20)  # really touches the pages
            time.sleep(2)
            return str(len(held)).encode()
    """,
}


@pytest.fixture(scope="session")
def function_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cluster-functions")
    dirs = {}
    for name, code in HANDLERS.items():
        d = root / name
        d.mkdir()
        (d / "handler.py").write_text(textwrap.dedent(code))
        dirs[name] = d
    return dirs


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TestKubelet:
    """A node agent over the emulator's HTTP API: pods become real local worker processes."""

    __test__ = False  # not a test class

    def __init__(
        self, api_url: str, function_dirs: dict[str, Path], *, port: int,
        node_cpu_millicores: int = 4000, image_prefix: str = "test/",
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.function_dirs = function_dirs
        self.port = port
        self.node_cpu_millicores = node_cpu_millicores
        self.image_prefix = image_prefix
        self.workers: dict[str, asyncio.subprocess.Process] = {}
        self.applied_cpu: dict[str, int] = {}
        self.ips: dict[str, str] = {}
        self.resizes: list[tuple[str, int]] = []
        self._next_ip = 10 + os.getpid() % 200
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[None]] = set()
        #: set True to have the kubelet leave new pods Pending forever
        self.hold_pods = False
        #: set True to answer every resize with PodResizePending reason Deferred
        self.defer_resizes = False
        #: set True to be a node whose kubelet runs the static CPU manager policy: every CPU
        #: resize of a Guaranteed pod is Infeasible (pkg/kubelet allocation manager)
        self.static_cpu_manager = False
        #: set True to have the runtime fail resizes (PodResizeInProgress, reason Error)
        self.fail_resizes = False
        #: pod name -> generation the kubelet last acted on (status.observedGeneration)
        self.observed: dict[str, int] = {}
        self.oom_killed: set[str] = set()
        #: seconds the kubelet takes before it applies a resize
        self.resize_delay_s = 0.0
        #: each pod's cgroup (CPU quota, memory limit) when cgroups are writable here
        self.cgroups: dict[str, PodCgroup] = {}
        manager = CgroupManager()
        self._cgroups = None if manager.mode is CgroupMode.NONE else manager

    async def __aenter__(self) -> TestKubelet:
        self._session = aiohttp.ClientSession(headers=admin_headers())
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for t in list(self._pending):
            t.cancel()
        for proc in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        if self._session is not None:
            await self._session.close()
        if self._cgroups is not None:
            self._cgroups.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    def _path(self, ns: str, name: str, sub: str = "") -> str:
        return f"{self.api_url}/api/v1/namespaces/{ns}/pods/{name}" + (f"/{sub}" if sub else "")

    async def _patch_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        async with self.session.patch(
            self._path(ns, name, "status"), json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as resp:
            await resp.read()

    async def _run(self) -> None:
        url = f"{self.api_url}/api/v1/pods"
        while True:
            try:
                async with self.session.get(url, params={"watch": "true"},
                                            timeout=aiohttp.ClientTimeout(total=None)) as resp:
                    async for line in resp.content:
                        if line.strip():
                            await self._handle(json.loads(line))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                print(f"test kubelet: watch restarted after {exc!r}", file=sys.stderr)
                await asyncio.sleep(0.1)

    async def _handle(self, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        name, ns = meta.get("name"), meta.get("namespace") or NAMESPACE
        if not name:
            return
        if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
            proc = self.workers.pop(name, None)
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            if self._cgroups is not None and self.cgroups.pop(name, None) is not None:
                self._cgroups.release(name)
            return
        if name not in self.workers and not self.hold_pods:
            if name in self.ips:
                return  # being started
            self.ips[name] = f"127.0.0.{self._next_ip}"
            self._next_ip = 10 + (self._next_ip - 9) % 240
            task = asyncio.create_task(self._start_pod(ns, name, obj))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        if name in self.workers:
            await self._maybe_resize(ns, name, obj)

    async def _start_pod(self, ns: str, name: str, obj: dict[str, Any]) -> None:
        container = obj["spec"]["containers"][0]
        image = container["image"]
        function = image.removeprefix(self.image_prefix).split(":")[0]
        env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        ip = self.ips[name]
        if function not in self.function_dirs:
            await self._patch_status(ns, name, {"phase": "Pending", "containerStatuses": [{
                "name": container["name"], "ready": False,
                "state": {"waiting": {"reason": "ErrImagePull",
                                      "message": f"image {image} not found"}}}]})
            return
        cpu = parse_cpu(container["resources"]["limits"]["cpu"])
        memory = parse_memory(container["resources"]["limits"]["memory"])
        join: list[str] = []
        if self._cgroups is not None:  # the container's limits, as the kubelet sets them
            cg = self._cgroups.create(name, cpu, memory)
            self.cgroups[name] = cg
            for d in cg.dirs:
                join += ["--join-cgroup", str(d)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shabari.runtime.worker",
            "--function-dir", str(self.function_dirs[function]),
            "--http", str(self.port), "--host", ip, *join,
            "--cpu-millicores", str(cpu), "--memory-mib", env.get("SHABARI_MEMORY_MIB", "256"),
            stdin=asyncio.subprocess.DEVNULL,
        )
        self.workers[name] = proc
        self.applied_cpu[name] = cpu
        exits = asyncio.create_task(self._watch_exit(ns, name, proc, container["name"]))
        self._pending.add(exits)
        exits.add_done_callback(self._pending.discard)
        for _ in range(300):  # the readiness probe: GET /readyz
            if proc.returncode is not None:
                return
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(f"http://{ip}:{self.port}/readyz") as resp:
                    if resp.status == 200:
                        break
            await asyncio.sleep(0.05)
        await self._patch_status(ns, name, self._status(container["name"], ip, cpu, container))

    async def _watch_exit(self, ns: str, name: str, proc: asyncio.subprocess.Process,
                          cname: str) -> None:
        """restartPolicy Never: a container that exits leaves its pod Failed for good."""
        code = await proc.wait()
        if self.workers.get(name) is not proc:
            return  # deleted: the kubelet killed it
        oom = name in self.oom_killed or (
            name in self.cgroups and self.cgroups[name].oom_kills() > 0)
        reason = "OOMKilled" if oom else "Error"
        await self._patch_status(ns, name, {
            "phase": "Failed", "podIP": self.ips.get(name, ""),
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": cname, "ready": False, "state": {"terminated": {
                "reason": reason, "exitCode": 137 if oom else (code or 1)}}}]})

    async def oom_kill(self, pod_name: str) -> None:
        """What the kernel does at the memory limit: SIGKILL the container's process."""
        self.oom_killed.add(pod_name)
        proc = self.workers[pod_name]
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    def _status(self, cname: str, ip: str, cpu: int, container: dict[str, Any],
                conditions: list[dict[str, Any]] | None = None,
                generation: int | None = None) -> dict[str, Any]:
        mem = container.get("resources", {}).get("limits", {}).get("memory", "256Mi")
        alloc = {"cpu": format_cpu(cpu), "memory": mem}
        stamp = {} if generation is None else {"observedGeneration": generation}
        return {
            "phase": "Running", "podIP": ip, **stamp,
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "True"},
                           *({**c, **stamp} for c in conditions or [])],
            "containerStatuses": [{
                "name": cname, "ready": True, "state": {"running": {}},
                "allocatedResources": alloc,
                "resources": {"requests": alloc, "limits": alloc},
            }],
        }

    async def _maybe_resize(self, ns: str, name: str, obj: dict[str, Any]) -> None:
        container = obj["spec"]["containers"][0]
        try:
            desired = parse_cpu(container["resources"]["limits"]["cpu"])
        except (KeyError, ValueError):
            return
        applied = self.applied_cpu[name]
        generation = int((obj.get("metadata") or {}).get("generation") or 1)
        if self.observed.get(name) == generation:
            return  # this generation was handled (the watch also sees our status patches)
        self.observed[name] = generation
        conds = {c.get("type") for c in obj.get("status", {}).get("conditions") or []}
        ip = self.ips[name]
        if desired == applied:
            if "PodResizePending" in conds:  # the resize was withdrawn
                await self._patch_status(ns, name, self._status(container["name"], ip, applied,
                                                                container, None, generation))
            return
        pending: dict[str, str] | None = None
        if self.static_cpu_manager:
            pending = {"type": "PodResizePending", "status": "True", "reason": "Infeasible",
                       "message": "Resize is infeasible for Guaranteed Pods alongside CPU "
                                  "Manager static policy"}
        elif desired > self.node_cpu_millicores or self.defer_resizes:
            reason = "Deferred" if desired <= self.node_cpu_millicores else "Infeasible"
            pending = {"type": "PodResizePending", "status": "True", "reason": reason,
                       "message": f"Node didn't have enough capacity: cpu, requested: "
                                  f"{desired}, capacity: {self.node_cpu_millicores}"}
        elif self.fail_resizes:
            pending = {"type": "PodResizeInProgress", "status": "True", "reason": "Error",
                       "message": "failed to update container resources: runtime error"}
        if pending is not None:
            await self._patch_status(ns, name, self._status(
                container["name"], ip, applied, container, [pending], generation))
            return
        if self.resize_delay_s:
            await asyncio.sleep(self.resize_delay_s)
        if name in self.cgroups:  # in place: the new CFS quota, same process
            self.cgroups[name].set_cpu(desired)
        self.applied_cpu[name] = desired
        self.resizes.append((name, desired))
        await self._patch_status(ns, name, self._status(container["name"], ip, desired,
                                                        container, None, generation))


@pytest.fixture
async def k8s_api() -> AsyncIterator[tuple[StrictApiServer, str]]:
    """The strict emulator served over HTTP; yields (emulator, base URL)."""
    async with StrictApiServer(tokens={BACKEND_TOKEN, "admin-token"}) as emulator, \
            kmock.Server(emulator) as server:
        declare_core(emulator)
        yield emulator, str(server.url).rstrip("/")


class _TlsTestServer(aiohttp.test_utils.RawTestServer):
    ssl_context: ssl.SSLContext | None = None

    async def start_server(self, **kwargs: Any) -> None:
        await super().start_server(ssl=self.ssl_context, **kwargs)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("cluster-pki"))


@contextlib.asynccontextmanager
async def tls_listener(emulator: StrictApiServer, tls: Tls, *,
                       client_certs: bool) -> AsyncIterator[str]:
    """An HTTPS listener on the emulator; with `client_certs`, one that requires and trusts
    client certificates signed by the cluster CA (requests through it are authenticated)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.server_cert, tls.server_key)
    if client_certs:
        ctx.load_verify_locations(tls.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    server_cls = type("TlsServer", (_TlsTestServer,), {"ssl_context": ctx})
    async with kmock.Server(emulator, server_cls=server_cls) as server:
        if client_certs:
            emulator.mtls_ports.add(server.port)
        try:
            yield f"https://127.0.0.1:{server.port}"
        finally:
            emulator.mtls_ports.discard(server.port)


@pytest.fixture
async def kubelet(
    k8s_api: tuple[kmock.KubernetesEmulator, str], function_dirs: dict[str, Path]
) -> AsyncIterator[TestKubelet]:
    _, url = k8s_api
    async with TestKubelet(url, function_dirs, port=free_port()) as kl:
        yield kl


def free_port_pair() -> tuple[int, int]:
    return free_port(), free_port()


def cpu_str(millicores: int) -> str:
    return format_cpu(millicores)
