"""Helpers: kmock's KubernetesEmulator served over real HTTP, and the operator running in it.

kopf runs in-process (`kopf.operator` in a task of the test's event loop) against the
emulator; every wait is bounded so a broken handler fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml

# Settings the handlers module reads at import (the timer interval) and at start-up.
os.environ["SHABARI_STATS_INTERVAL_S"] = "0.5"
os.environ["SHABARI_RETRY_S"] = "0.5"

import attrs
import jsonpatch
import kmock

FSP = "shabari.dev/v1alpha1/functionsizingpolicies"
KSVC = "serving.knative.dev/v1/services"
KCONFIG = "serving.knative.dev/v1/configurations"
KROUTE = "serving.knative.dev/v1/routes"
DEPLOY = "apps/v1/deployments"
CONFIGMAPS = "v1/configmaps"
EVENTS = "v1/events"
SYSTEM_NS = "shabari-system"


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus the metadata bookkeeping of a real API server.

    kopf guards its patches with a JSON-patch `test` of `metadata.resourceVersion`, and the
    operator reports `metadata.generation`; the plain emulator sets neither, so this
    subclass stamps uid, resourceVersion, generation and creationTimestamp on writes.
    """

    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1),
                                                  init=False)

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.resource is not None and request.action == kmock.action.CREATE and (
            isinstance(data, dict)
        ):
            meta = data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("generation", 1)
            meta.setdefault("creationTimestamp",
                            datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta["resourceVersion"] = str(next(self._versions))
        elif request.resource is not None and request.action == kmock.action.UPDATE:
            version = str(next(self._versions))
            bump = request.subresource is None and self._touches_spec(data)
            generation = self._generation(request) + (1 if bump else 0)
            if isinstance(data, dict):
                data.setdefault("metadata", {})
                if isinstance(data["metadata"], dict):
                    data["metadata"]["resourceVersion"] = version
                    data["metadata"]["generation"] = generation
            elif isinstance(data, list):
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
                data.append({"op": "add", "path": "/metadata/generation", "value": generation})
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed:
            # The client patched a stale version. kmock's watch can replay an object's ADDED
            # event after a newer MODIFIED one; a real watch would deliver the latest state
            # next, so do that here, or kopf waits forever for a newer event.
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key in self._objects and not self._objects[key].deleted:
                    raw = self._objects[key].raw
                    await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
            raise

    async def _serve_list(self, request: Any) -> Any:
        """kmock's list plus `kind`, and server-side printing (a `meta.k8s.io/v1` Table with
        the CRD's additionalPrinterColumns) when the client asks for it, as kubectl does."""
        listed = await super()._serve_list(request)
        kind = self._kind(request)
        listed.update(apiVersion=_api_version(request.resource), kind=f"{kind}List")
        if "as=Table" not in request.headers.get("Accept", ""):
            return listed
        return self._table(request, listed["items"])

    async def _serve_fetch(self, request: Any) -> Any:
        obj = await super()._serve_fetch(request)
        if "as=Table" not in request.headers.get("Accept", "") or not isinstance(obj, dict):
            return obj
        return self._table(request, [obj])

    def _kind(self, request: Any) -> str:
        info = self.resources.get(_resource_key(request.resource))
        return str(getattr(info, "kind", "") or "List")

    def _table(self, request: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
        columns: list[dict[str, Any]] = [{"name": "Name", "type": "string", "format": "name",
                                          "description": "", "priority": 0}]
        printer = self._printer_columns(request.resource)
        if not printer:
            printer = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        columns += [{"name": c["name"], "type": c.get("type", "string"), "format": "",
                     "description": c.get("description", ""), "priority": c.get("priority", 0)}
                    for c in printer]
        rows = []
        for obj in items:
            cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
            for c in printer:
                value = _json_path(obj, c["jsonPath"])
                if c.get("type") == "date" and isinstance(value, str):
                    value = _age(value)
                cells.append(value)
            rows.append({"cells": cells, "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {})}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": "..."}, "columnDefinitions": columns,
                "rows": rows}

    def _printer_columns(self, resource: Any) -> list[dict[str, Any]]:
        for (res, _ns, _name), obj in self._objects.items():
            if res.plural != "customresourcedefinitions" or obj.deleted:
                continue
            spec = obj.raw.get("spec", {})
            if spec.get("names", {}).get("plural") == resource.plural and spec.get(
                    "group") == resource.group:
                for version in spec.get("versions", []):
                    if version.get("name") == resource.version:
                        return list(version.get("additionalPrinterColumns") or [])
        return []

    async def _render_error(self, exc: Exception) -> Any:
        # A failed `test` of a JSON patch is 422 Unprocessable Entity on a real API server;
        # kopf then re-reads the object instead of retrying the stale patch.
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)

    @staticmethod
    def _touches_spec(data: Any) -> bool:
        if isinstance(data, dict):
            return "spec" in data
        if isinstance(data, list):
            return any(str(op.get("path", "")).startswith("/spec") for op in data)
        return False

    def _generation(self, request: Any) -> int:
        key = (request.resource, request.namespace, request.name)
        if key in self._objects and not self._objects[key].deleted:
            return int(self._objects[key].get("metadata", {}).get("generation", 1))
        return 1


def _resource_key(resource: Any) -> str:
    return f"{_api_version(resource)}/{resource.plural}"


def _api_version(resource: Any) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


def _json_path(obj: Any, path: str) -> Any:
    """The subset of kubectl JSONPath that printer columns use: `.a.b` and
    `.list[?(@.key=="value")].field`."""
    import re

    node = obj
    for part in re.findall(r'\.([A-Za-z0-9_-]+)(\[\?\(@\.(\w+)=="([^"]*)"\)\])?', path):
        name, _filt, key, want = part
        node = node.get(name) if isinstance(node, dict) else None
        if key and isinstance(node, list):
            node = next((x for x in node if isinstance(x, dict) and x.get(key) == want), None)
        if node is None:
            return None
    return node


def _age(timestamp: str) -> str:
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:
        return timestamp
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def declare_resources(k: kmock.KubernetesEmulator, knative: bool = True) -> None:
    """What a cluster with the Shabari CRD (and Knative, unless told not) advertises."""
    rw = {"get", "list", "watch", "create", "patch", "update", "delete"}
    k.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False,
                                                      verbs={"get", "list", "watch"})
    k.resources[EVENTS] = kmock.ResourceInfo(kind="Event", namespaced=True, verbs=rw)
    k.resources[CONFIGMAPS] = kmock.ResourceInfo(kind="ConfigMap", namespaced=True, verbs=rw)
    k.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs=rw)
    k.resources[FSP] = kmock.ResourceInfo(
        kind="FunctionSizingPolicy", singular="functionsizingpolicy", namespaced=True,
        shortnames={"fsp"}, verbs=rw, subresources={"status"})
    k.resources[DEPLOY] = kmock.ResourceInfo(kind="Deployment", singular="deployment",
                                             namespaced=True, verbs=rw,
                                             subresources={"status", "scale"})
    if not knative:
        return
    k.resources[KSVC] = kmock.ResourceInfo(kind="Service", singular="service", namespaced=True,
                                           shortnames={"ksvc"}, verbs=rw,
                                           subresources={"status"})
    k.resources[KCONFIG] = kmock.ResourceInfo(kind="Configuration", singular="configuration",
                                              namespaced=True, verbs=rw,
                                              subresources={"status"})
    k.resources[KROUTE] = kmock.ResourceInfo(kind="Route", singular="route", namespaced=True,
                                             verbs=rw, subresources={"status"})


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                       "namespace": "default"}}],
    }))
    return path


class Cluster:
    """The emulator, its URL, its kubeconfig, and a few conveniences for assertions."""

    def __init__(self, emulator: kmock.KubernetesEmulator, url: str, kubeconfig: Path) -> None:
        self.k = emulator
        self.url = url
        self.kubeconfig = kubeconfig

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            obj = self.k.objects[resource, namespace, name]
        except KeyError:
            return None
        return None if obj.deleted else dict(obj.raw)

    def names(self, resource: str, namespace: str) -> set[str]:
        out = set()
        for (res, ns, name), obj in self.k.objects.items():
            if str(res) and ns == namespace and not obj.deleted and _same(res, resource):
                out.add(name)
        return out

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [dict(obj.raw) for (res, _ns, _n), obj in self.k.objects.items()
                if _same(res, EVENTS) and not obj.deleted and obj.raw.get("reason") == reason]

    async def wait(self, check: Callable[[], Any], timeout: float = 15.0,
                   what: str = "condition") -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            result = check()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.05)


def _same(res: Any, resource: str) -> bool:
    group_version, _, plural = resource.rpartition("/")
    group, _, version = group_version.rpartition("/")
    return bool(res.plural == plural and res.version == version and (res.group or "") == group)


@contextlib.asynccontextmanager
async def running_operator(cluster: Cluster) -> AsyncIterator[Cluster]:
    """The Shabari operator (kopf) running against the emulator inside the block.

    kopf runs in its own thread and event loop, as in production: `kopf.operator` cancels
    every task started after it on shutdown, which in the test's loop would include the
    emulator's own request handlers and pytest's teardown.
    """
    import kopf

    import shabari.k8s.handlers  # noqa: F401  (registers the handlers)

    logging.getLogger("kopf").setLevel(os.environ.get("SHABARI_TEST_KOPF_LOG", "WARNING"))
    stop = threading.Event()
    ready = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(kopf.operator(clusterwide=True, standalone=True, stop_flag=stop,
                                      ready_flag=ready))
        except BaseException as exc:  # reported to the test below
            failure.append(exc)

    thread = threading.Thread(target=main, name="kopf-operator", daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(ready.wait, 15):
            raise AssertionError(f"the operator did not start within 15s: {failure}")
        yield cluster
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)
        if thread.is_alive():
            raise AssertionError("the operator did not stop within 15s")
        if failure:
            raise AssertionError(f"the operator crashed: {failure[0]!r}") from failure[0]
