"""Asynchronous Kubernetes calls through kopf's own authenticated API client.

The operator must never block its event loop, so it uses the aiohttp client kopf already
runs (credentials from the `@kopf.on.login` handler, retries and backoff included) instead
of the synchronous `kubernetes` package. This is the only module that touches kopf's
client internals; the rest of the operator calls these few verbs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import errors as kopf_errors

from shabari.core.errors import ConfigError

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}

#: (apiVersion, kind) -> plural of every resource the operator reads or writes
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("apps/v1", "Deployment"): "deployments",
    ("serving.knative.dev/v1", "Service"): "services",
    ("serving.knative.dev/v1", "Configuration"): "configurations",
    ("serving.knative.dev/v1", "Route"): "routes",
    ("shabari.dev/v1alpha1", "FunctionSizingPolicy"): "functionsizingpolicies",
}

APIError = kopf_errors.APIError
APIForbiddenError = kopf_errors.APIForbiddenError


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

    def __init__(self, settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self._settings = settings
        self._logger = logger

    async def get(self, api_version: str, kind: str, namespace: str,
                  name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await kopf_api.get(
                object_path(api_version, kind, namespace, name),
                settings=self._settings, logger=self._logger)
        except kopf_errors.APINotFoundError:
            return None
        return obj

    async def list(self, api_version: str, kind: str, namespace: str,
                   labels: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Objects of a kind, filtered by labels here (not every server honours selectors)."""
        try:
            rsp = await kopf_api.get(collection_path(api_version, kind, namespace),
                                     settings=self._settings, logger=self._logger)
        except kopf_errors.APINotFoundError:
            return []
        items: list[dict[str, Any]] = list(rsp.get("items") or [])
        if labels:
            items = [i for i in items
                     if all(((i.get("metadata") or {}).get("labels") or {}).get(k) == v
                            for k, v in labels.items())]
        return items

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        meta = body.get("metadata", {})
        obj: dict[str, Any] = await kopf_api.post(
            collection_path(str(body.get("apiVersion")), str(body.get("kind")),
                            str(meta.get("namespace"))),
            payload=dict(body), settings=self._settings, logger=self._logger)
        return obj

    async def patch(self, api_version: str, kind: str, namespace: str, name: str,
                    patch: Mapping[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = await kopf_api.patch(
            object_path(api_version, kind, namespace, name), payload=dict(patch),
            headers=MERGE_PATCH, settings=self._settings, logger=self._logger)
        return obj

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete; False if it was not there (idempotent)."""
        try:
            await kopf_api.delete(object_path(api_version, kind, namespace, name),
                                  settings=self._settings, logger=self._logger)
        except kopf_errors.APINotFoundError:
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
            except kopf_errors.APIConflictError:
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
