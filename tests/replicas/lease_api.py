"""kmock's Kubernetes emulator taught to serve `coordination.k8s.io/v1` Leases like an API server.

Leader election is only correct if the server arbitrates: a write carries the
`metadata.resourceVersion` its writer read, and a write over a newer version is refused with
409 Conflict. kmock stores objects but neither versions them nor serves PUT (replace), the verb
client-go's election (and ours) uses. This subclass adds exactly that for every resource:
creates and replaces get a fresh `resourceVersion`, a PUT naming a stale one gets 409, a PUT of
a missing object 404. It records each request's verb so tests can check the replicas used only
what the chart's RBAC grants (get, create, update on leases).

(A uniquely named module rather than conftest.py, so test modules import it by a name no other
test folder's conftest can shadow.)
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp.web
import attrs
import kmock

LEASES = "coordination.k8s.io/v1/leases"

_VERBS = {("GET", False): "get", ("GET", True): "list", ("POST", True): "create",
          ("PUT", False): "update", ("PATCH", False): "patch", ("DELETE", False): "delete"}


@attrs.define(kw_only=True)
class LeaseApiServer(kmock.KubernetesEmulator):
    """The emulator with optimistic concurrency (resourceVersion) and PUT."""

    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1),
                                                  init=False)
    #: (verb, resource plural) of every Kubernetes request, in order
    verbs: list[tuple[str, str]] = attrs.field(factory=list)
    #: PUTs refused with 409 (stale resourceVersion)
    conflicts: int = 0
    #: `spec.holderIdentity` of every accepted PUT of a Lease, in order (None: released)
    holders: list[str | None] = attrs.field(factory=list)

    async def _handle(self, request: Any) -> Any:
        method = str(request.method).upper().split(".")[-1]
        if request.resource is not None:
            named = request.name is not None
            self.verbs.append((_VERBS.get((method, not named), method.lower()),
                               request.resource.plural))
        if request.resource is not None and method == "PUT" and request.name is not None:
            return await self._replace(request)
        data = request.data
        if request.resource is not None and request.action == kmock.action.CREATE and (
                isinstance(data, dict)):
            data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)

    async def _replace(self, request: Any) -> Any:
        key = (request.resource, request.namespace, request.name)
        data = request.data
        if not isinstance(data, dict):
            return await self._render_error(kmock.KubernetesError(
                status=400, reason="BadRequest", message="PUT needs a JSON object"))
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                return await self._render_error(kmock.KubernetesError(
                    status=404, reason="NotFound", message=f"{request.name} not found"))
            stored = self._objects[key].raw
            have = str((stored.get("metadata") or {}).get("resourceVersion"))
            sent = (data.get("metadata") or {}).get("resourceVersion")
            if sent is not None and str(sent) != have:
                self.conflicts += 1
                return await self._render_error(kmock.KubernetesError(
                    status=409, reason="Conflict",
                    message=f"the object has been modified (resourceVersion {sent} != {have})"))
            new = dict(data)
            new["metadata"] = {**(stored.get("metadata") or {}), **(data.get("metadata") or {}),
                               "resourceVersion": str(next(self._versions))}
            # a replace: fields the writer left out are gone (merge patch cannot drop them)
            for field in list(stored):
                if field not in new:
                    new[field] = None
            self._objects[key].patch(new)
            if request.resource.plural == "leases":
                self.holders.append((data.get("spec") or {}).get("holderIdentity"))
            raw = self._objects[key].raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return aiohttp.web.json_response(raw)


def declare_leases(k: kmock.KubernetesEmulator) -> None:
    k.resources[LEASES] = kmock.ResourceInfo(kind="Lease", singular="lease", namespaced=True,
                                             verbs={"get", "list", "watch", "create", "update",
                                                    "patch", "delete"})


@asynccontextmanager
async def lease_api() -> AsyncIterator[tuple[LeaseApiServer, str]]:
    """The emulator with Leases, served over real HTTP; yields (emulator, base URL)."""
    async with LeaseApiServer() as emulator, kmock.Server(emulator) as server:
        declare_leases(emulator)
        yield emulator, str(server.url).rstrip("/")
