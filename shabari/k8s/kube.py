"""Asynchronous Kubernetes calls for the operator, through the project's own REST client.

The operator must never block its event loop, so it uses `shabari.backends._k8s_api.KubeApi`
(aiohttp, every call bounded by a timeout, failures mapped onto the project's error tree),
the client the kubernetes and knative backends already use, instead of kopf's private client
module. Credentials come from the same places kopf's own login uses (in-cluster service
account, then $KUBECONFIG / ~/.kube/config), read once by the official `kubernetes` client's
public configuration loaders (`KubeConfig.load`). The rest of the operator calls these verbs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shabari.backends._k8s_api import (
    MERGE_PATCH,
    KubeApi,
    KubeApiError,
    KubeConfig,
    KubeConflictError,
    KubeForbiddenError,
    KubeNotFoundError,
)
from shabari.core.errors import ConfigError

__all__ = ["PLURALS", "APIForbiddenError", "Kube", "KubeApiError", "collection_path",
           "object_path"]

#: 403: RBAC does not allow the verb (callers that can do without the object catch it)
APIForbiddenError = KubeForbiddenError

#: (apiVersion, kind) -> plural of every resource the operator reads or writes
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("apps/v1", "Deployment"): "deployments",
    ("serving.knative.dev/v1", "Service"): "services",
    ("serving.knative.dev/v1", "Configuration"): "configurations",
    ("serving.knative.dev/v1", "Route"): "routes",
    ("shabari.dev/v1alpha1", "FunctionSizingPolicy"): "functionsizingpolicies",
}


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    plural = PLURALS.get((api_version, kind))
    if plural is None:
        raise ConfigError(f"unsupported resource {api_version} {kind}",
                          detail=f"supported: {sorted(PLURALS)}")
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(api_version, kind, namespace)}/{name}"


class Kube:
    """get / list / create / patch / delete for the resources in `PLURALS`."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api

    @classmethod
    async def connect(cls, options: Mapping[str, object] | None = None) -> Kube:
        """Load credentials (in-cluster, then kubeconfig) and open the connection pool."""
        api = KubeApi(await KubeConfig.load(dict(options or {}), backend="operator"))
        await api.start()
        return cls(api)

    async def close(self) -> None:
        await self._api.close()

    async def get(self, api_version: str, kind: str, namespace: str,
                  name: str) -> dict[str, Any] | None:
        try:
            return await self._api.get(object_path(api_version, kind, namespace, name))
        except KubeNotFoundError:
            return None

    async def list(self, api_version: str, kind: str, namespace: str,
                   labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Objects of a kind, filtered by labels here (not every server honours selectors)."""
        try:
            rsp = await self._api.get(collection_path(api_version, kind, namespace))
        except KubeNotFoundError:
            return []
        items: list[dict[str, Any]] = list(rsp.get("items") or [])
        if labels:
            items = [i for i in items
                     if all(((i.get("metadata") or {}).get("labels") or {}).get(k) == v
                            for k, v in labels.items())]
        return items

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body.get("metadata", {})
        return await self._api.create(
            collection_path(str(body.get("apiVersion")), str(body.get("kind")),
                            str(meta.get("namespace"))), dict(body))

    async def patch(self, api_version: str, kind: str, namespace: str, name: str,
                    patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._api.patch(object_path(api_version, kind, namespace, name),
                                     dict(patch), content_type=MERGE_PATCH)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete; False if it was not there (idempotent)."""
        try:
            await self._api.delete(object_path(api_version, kind, namespace, name))
        except KubeNotFoundError:
            return False
        return True

    async def apply(self, body: Mapping[str, Any]) -> bool:
        """Create `body`, or merge-patch its labels, owners and spec if they differ.

        Returns True when something was written.
        """
        meta = body.get("metadata", {})
        api_version, kind = str(body.get("apiVersion")), str(body.get("kind"))
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        existing = await self.get(api_version, kind, namespace, name)
        if existing is None:
            try:
                await self.create(body)
                return True
            except KubeConflictError:
                existing = await self.get(api_version, kind, namespace, name)
                if existing is None:
                    raise
        old_meta = existing.get("metadata", {})
        patch: dict[str, Any] = {}
        labels = meta.get("labels") or {}
        if any((old_meta.get("labels") or {}).get(k) != v for k, v in labels.items()):
            patch.setdefault("metadata", {})["labels"] = labels
        owners = meta.get("ownerReferences")
        if owners is not None and old_meta.get("ownerReferences") != owners:
            patch.setdefault("metadata", {})["ownerReferences"] = owners
        if "spec" in body and existing.get("spec") != body["spec"]:
            patch["spec"] = body["spec"]
        if not patch:
            return False
        await self.patch(api_version, kind, namespace, name, patch)
        return True
