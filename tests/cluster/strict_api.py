"""An emulated API server that refuses what a real one refuses (the rules that matter here).

kmock's `KubernetesEmulator` stores whatever it is sent. A real API server first
authenticates the request, then validates the object, and the backends and the operator
met only the former until issue #17: they sent no credentials and created pods every real
server rejects. `StrictApiServer` closes that gap for the rules this project can break:

- authentication: every request needs `Authorization: Bearer <token>` with a known token, or
  must arrive over the mutual-TLS listener (a client certificate signed by the cluster CA,
  verified in the handshake); anything else is 401, as kube-apiserver answers anonymous
  requests when anonymous auth is off (the default of every managed cluster);
- validation on create (and on pod resize), ported from kubernetes/kubernetes
  `pkg/apis/core/validation/validation.go` (commit 000f2605): `validateResizePolicy`
  (resource names cpu/memory, no duplicates, and `NotRequired` only when the pod's
  `restartPolicy` is `Never`), `ValidateContainerResourceRequirements` (requests <= limits;
  extended resources such as `nvidia.com/gpu` need requests == limits), container names
  (DNS-1123 labels), object names (DNS-1123 subdomains; DNS-1035 labels of at most 63
  characters for Knative objects, whose names become Service names and hostnames), label keys
  and values, and the resize subresource (only cpu/memory change; a Guaranteed pod stays
  Guaranteed);
- the official OpenAPI schemas: every created object of a built-in kind goes through
  `kubernetes-validate` in strict mode for Kubernetes 1.33 and 1.35 (as tests/chart does).

Rejections are 422 `Invalid` with the field path in the message, as a real server sends.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import kmock
import kubernetes_validate

from shabari.core.units import parse_cpu, parse_memory

#: the Kubernetes releases every created object is checked against (as tests/chart does)
K8S_VERSIONS = ("1.33.0", "1.35.0")
#: the token the test clients (kubelet, helpers) use; the backends get their own
ADMIN_TOKEN = "admin-token"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
#: kinds whose names must be DNS-1035 labels of at most 63 characters
_DNS1035_KINDS = {("serving.knative.dev", "Service"), ("serving.knative.dev", "Route"),
                  ("serving.knative.dev", "Configuration"), ("", "Service")}


def _group(obj: Mapping[str, Any]) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def name_errors(kind: tuple[str, str], name: object) -> list[str]:
    if not isinstance(name, str) or not name:
        return ["metadata.name: Required value"]
    if kind in _DNS1035_KINDS:
        if len(name) > 63 or not _DNS1035_LABEL.match(name):
            return [f"metadata.name: Invalid value: {name!r}: a DNS-1035 label must consist "
                    "of lower case alphanumeric characters or '-', start with a letter, end "
                    "with an alphanumeric character, at most 63 characters"]
        return []
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain "
                "(at most 253 characters)"]
    return []


def label_errors(labels: object, path: str) -> list[str]:
    errors: list[str] = []
    if not isinstance(labels, Mapping):
        return errors
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
            errors.append(f"{path}: Invalid value: {key!r}: prefix part must be a DNS subdomain")
        if len(name) > 63 or not _LABEL_NAME.match(name):
            errors.append(f"{path}: Invalid value: {key!r}: name part must be at most 63 "
                          "characters of [-A-Za-z0-9_.]")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(f"{path}: Invalid value: {value!r}: a valid label must be an empty "
                          "string or at most 63 characters of [-A-Za-z0-9_.]")
    return errors


def _quantity(resource: str, value: object) -> float:
    text = str(value)
    if resource == "cpu":
        return float(parse_cpu(text))
    if resource == "memory" or resource.startswith("hugepages-") or "storage" in resource:
        return float(parse_memory(text))
    return float(text)


def resources_errors(resources: object, path: str) -> list[str]:
    """`ValidateContainerResourceRequirements`: quantities parse, requests <= limits."""
    errors: list[str] = []
    if not isinstance(resources, Mapping):
        return errors
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    parsed: dict[str, dict[str, float]] = {"limits": {}, "requests": {}}
    for which, amounts in (("limits", limits), ("requests", requests)):
        for name, value in amounts.items():
            try:
                parsed[which][name] = _quantity(name, value)
            except (ValueError, TypeError, Exception):
                errors.append(f"{path}.{which}[{name}]: Invalid value: {value!r}: quantities "
                              "must match the regular expression")
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        extended = "/" in name and not name.startswith(("kubernetes.io/", "requests."))
        if extended and limit is None:
            errors.append(f"{path}.limits: Required value: Limit must be set for non "
                          f"overcommitable resources ({name})")
        elif limit is not None and request > limit:
            errors.append(f"{path}.requests: Invalid value: {requests[name]!r}: must be less "
                          f"than or equal to {name} limit of {limits[name]}")
        elif extended and limit is not None and request != limit:
            errors.append(f"{path}.requests[{name}]: Invalid value: {requests[name]!r}: must "
                          "be equal to {name} limit (non overcommitable resource)")
    return errors


def resize_policy_errors(policies: object, path: str, restart_policy: str) -> list[str]:
    """`validateResizePolicy` (validation.go), KEP-1287 in-place pod resize."""
    errors: list[str] = []
    if not isinstance(policies, list):
        return errors
    seen: set[str] = set()
    for i, p in enumerate(policies):
        name = str((p or {}).get("resourceName", ""))
        policy = str((p or {}).get("restartPolicy", ""))
        if name in seen:
            errors.append(f"{path}[{i}]: Duplicate value: {name!r}")
        seen.add(name)
        if name not in ("cpu", "memory"):
            errors.append(f"{path}: Unsupported value: {name!r}: supported values: "
                          '"cpu", "memory"')
        if policy not in ("NotRequired", "RestartContainer"):
            errors.append(f"{path}: Unsupported value: {policy!r}: supported values: "
                          '"NotRequired", "RestartContainer"')
        if restart_policy == "Never" and policy != "NotRequired":
            errors.append(f"{path}: Invalid value: {policy!r}: must be 'NotRequired' when "
                          "`restartPolicy` is 'Never'")
    return errors


def pod_spec_errors(spec: object, path: str, *, names_required: bool = True) -> list[str]:
    """Knative fills in container names (`user-container`), so they are optional there."""
    errors: list[str] = []
    if not isinstance(spec, Mapping):
        return [f"{path}: Required value"]
    restart = str(spec.get("restartPolicy") or "Always")
    if restart not in ("Always", "OnFailure", "Never"):
        errors.append(f"{path}.restartPolicy: Unsupported value: {restart!r}")
    containers = spec.get("containers") or []
    if not containers:
        errors.append(f"{path}.containers: Required value")
    names: set[str] = set()
    for i, c in enumerate(containers):
        cpath = f"{path}.containers[{i}]"
        name = c.get("name")
        if name is not None or names_required:
            if not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.match(name):
                errors.append(f"{cpath}.name: Invalid value: {name!r}: a lowercase RFC 1123 "
                              "label")
            elif name in names:
                errors.append(f"{cpath}.name: Duplicate value: {name!r}")
            names.add(str(name))
        if not c.get("image"):
            errors.append(f"{cpath}.image: Required value")
        errors += resources_errors(c.get("resources"), f"{cpath}.resources")
        errors += resize_policy_errors(c.get("resizePolicy"), f"{cpath}.resizePolicy", restart)
    return errors


def _qos_guaranteed(container: Mapping[str, Any]) -> bool:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    return all(k in limits and str(requests.get(k, limits[k])) == str(limits[k])
               for k in ("cpu", "memory"))


def object_errors(obj: Mapping[str, Any]) -> list[str]:
    """What kube-apiserver (or Knative's webhook) refuses in a created object."""
    kind = (_group(obj), str(obj.get("kind", "")))
    meta = obj.get("metadata") or {}
    errors = name_errors(kind, meta.get("name"))
    errors += label_errors(meta.get("labels"), "metadata.labels")
    spec = obj.get("spec") or {}
    if kind == ("", "Pod"):
        errors += pod_spec_errors(spec, "spec")
    elif kind == ("apps", "Deployment"):
        template = (spec.get("template") or {})
        errors += label_errors((template.get("metadata") or {}).get("labels"),
                               "spec.template.metadata.labels")
        errors += pod_spec_errors(template.get("spec"), "spec.template.spec")
    elif kind in (("serving.knative.dev", "Configuration"), ("serving.knative.dev", "Service")):
        template = spec.get("template") or {}
        errors += label_errors((template.get("metadata") or {}).get("labels"),
                               "spec.template.metadata.labels")
        errors += pod_spec_errors(template.get("spec"), "spec.template.spec",
                                  names_required=False)
    return errors


def schema_errors(obj: Mapping[str, Any]) -> list[str]:
    """kubernetes-validate, strict, for every release in K8S_VERSIONS (built-in kinds only)."""
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(dict(obj), version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            return []  # a CRD kind (Knative, FunctionSizingPolicy): no official schema
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"schema {version}: {exc.message} at "
                          f"{'.'.join(str(p) for p in exc.path)}")
    return errors


def resize_errors(pod: Mapping[str, Any], patch: object) -> list[str]:
    """The `pods/resize` subresource: only cpu/memory of existing containers; QoS kept."""
    errors: list[str] = []
    containers = ((patch or {}).get("spec") or {}).get("containers") if isinstance(
        patch, Mapping) else None
    if not isinstance(containers, list):
        return ["spec.containers: Required value (resize patches container resources)"]
    current = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
    for i, c in enumerate(containers):
        old = current.get(c.get("name"))
        if old is None:
            errors.append(f"spec.containers[{i}].name: Not found: {c.get('name')!r}")
            continue
        if set(c) - {"name", "resources", "resizePolicy"}:
            errors.append(f"spec.containers[{i}]: Forbidden: only resources and resizePolicy "
                          "may be changed by a resize")
        res = c.get("resources") or {}
        for which in ("requests", "limits"):
            for name in res.get(which) or {}:
                if name not in ("cpu", "memory"):
                    errors.append(f"spec.containers[{i}].resources.{which}[{name}]: Forbidden:"
                                  " only cpu and memory resources are mutable")
        merged = {"resources": {
            w: {**((old.get("resources") or {}).get(w) or {}), **(res.get(w) or {})}
            for w in ("requests", "limits")}}
        errors += resources_errors(merged["resources"], f"spec.containers[{i}].resources")
        if _qos_guaranteed(old) and not _qos_guaranteed(merged):
            errors.append("spec: Forbidden: Pod QOS Class may not change as a result of "
                          "resizing")
    return errors


@dataclass(frozen=True)
class Tls:
    """A throw-away cluster CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path) -> Tls:
    """Generate the certificates with the openssl command line (as kubeadm's docs do)."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=test-cluster-ca", "-keyout", "ca.key", "-out", "ca.crt")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
        "-keyout", "server.key", "-out", "server.csr")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=tester",
        "-keyout", "client.key", "-out", "client.csr")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "client.crt")
    return Tls(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt",
               d / "client.key")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


@attrs.define(kw_only=True)
class StrictApiServer(kmock.KubernetesEmulator):
    """kmock's emulator behind authentication and the validation rules above."""

    #: bearer tokens the server accepts (a real server: service-account or OIDC tokens)
    tokens: set[str] = attrs.field(factory=lambda: {ADMIN_TOKEN})
    #: ports of listeners that verified a client certificate in the TLS handshake
    mtls_ports: set[int] = attrs.field(factory=set)
    #: (method, path, Authorization header or None, via mTLS) of every request, in order
    auth_log: list[tuple[str, str, str | None, bool]] = attrs.field(factory=list)
    #: 422 answers given: (method, path, message)
    rejections: list[tuple[str, str, str]] = attrs.field(factory=list)
    #: a ResourceQuota on limits.cpu per namespace (millicores), enforced on create and resize
    cpu_quota: dict[str, int] = attrs.field(factory=dict)

    async def _handle(self, request: Any) -> Any:
        url = request.url
        auth = _header(request.headers, "Authorization")
        via_mtls = url.port in self.mtls_ports
        self.auth_log.append((str(request.method).upper().split(".")[-1], url.path, auth,
                              via_mtls))
        scheme, _, token = (auth or "").partition(" ")
        if not via_mtls and (scheme != "Bearer" or token not in self.tokens):
            raise kmock.KubernetesError(status=401, reason="Unauthorized",
                                        message="Unauthorized")
        errors = self._validate(request)
        if errors:
            message = "; ".join(errors)
            self.rejections.append((str(request.method), url.path, message))
            raise kmock.KubernetesError(status=422, reason="Invalid", message=message)
        self._admit_quota(request)
        self._stamp_generation(request)
        return await super()._handle(request)

    def _pods(self, namespace: str | None) -> list[Mapping[str, Any]]:
        return [obj.raw for (res, ns, _), obj in self._objects.items()
                if res.plural == "pods" and ns == namespace and not obj.deleted]

    def _admit_quota(self, request: Any) -> None:
        """The ResourceQuota admission plugin for `limits.cpu` (pods and pods/resize)."""
        quota = self.cpu_quota.get(request.namespace or "")
        data = request.data
        if quota is None or request.resource is None or request.resource.plural != "pods":
            return
        if not isinstance(data, dict):
            return

        def cpu(pod: Mapping[str, Any]) -> int:
            return sum(parse_cpu(str(((c.get("resources") or {}).get("limits") or {}).get(
                "cpu", "0"))) for c in (pod.get("spec") or {}).get("containers") or [])

        used = sum(cpu(p) for p in self._pods(request.namespace))
        if request.action == kmock.action.CREATE:
            requested = cpu(data)
        elif request.action == kmock.action.UPDATE and request.subresource == "resize":
            old = next((p for p in self._pods(request.namespace)
                        if p["metadata"]["name"] == request.name), None)
            if old is None:
                return
            new = {"spec": {"containers": [
                {**c, "resources": {**(c.get("resources") or {}), "limits": {
                    **((c.get("resources") or {}).get("limits") or {}),
                    **next(((p.get("resources") or {}).get("limits") or {}
                            for p in data.get("spec", {}).get("containers", [])
                            if p.get("name") == c.get("name")), {})}}}
                for c in old["spec"]["containers"]]}}
            used -= cpu(old)
            requested = cpu(new)
        else:
            return
        if used + requested > quota:
            name = (data.get("metadata") or {}).get("name") or request.name
            raise kmock.KubernetesError(
                status=403, reason="Forbidden",
                message=f'pods "{name}" is forbidden: exceeded quota: compute, requested: '
                        f"limits.cpu={requested}m, used: limits.cpu={used}m, limited: "
                        f"limits.cpu={quota}m")

    def _stamp_generation(self, request: Any) -> None:
        """metadata.generation: 1 at create, +1 for each spec change (resize included)."""
        data = request.data
        if request.resource is None or not isinstance(data, dict):
            return
        if request.action == kmock.action.CREATE:
            data.setdefault("metadata", {})["generation"] = 1
        elif (request.action == kmock.action.UPDATE and "spec" in data
              and request.subresource in (None, "resize")):
            key = (request.resource, request.namespace, request.name)
            if key in self._objects and not self._objects[key].deleted:
                old = int(self._objects[key].raw.get("metadata", {}).get("generation") or 1)
                data.setdefault("metadata", {})["generation"] = old + 1

    def _validate(self, request: Any) -> list[str]:
        data = request.data
        if request.resource is None or not isinstance(data, dict):
            return []
        if request.action == kmock.action.CREATE:
            return object_errors(data) + schema_errors(data) + self._knative_errors(data)
        if request.action == kmock.action.UPDATE and request.subresource == "resize":
            key = (request.resource, request.namespace, request.name)
            if key not in self._objects or self._objects[key].deleted:
                return []  # the 404 comes from the emulator
            return resize_errors(self._objects[key].raw, data)
        return []

    def _knative_errors(self, obj: Mapping[str, Any]) -> list[str]:
        """Knative's webhook: `initial-scale: "0"` needs `allow-zero-initial-scale: "true"` in
        knative-serving/config-autoscaler (serving pkg/apis/autoscaling validation)."""
        if (_group(obj), obj.get("kind")) not in (("serving.knative.dev", "Configuration"),
                                                  ("serving.knative.dev", "Service")):
            return []
        template = (obj.get("spec") or {}).get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if annotations.get("autoscaling.knative.dev/initial-scale") != "0":
            return []
        key = next((k for k in self._objects if k[0].plural == "configmaps"
                    and k[1] == "knative-serving" and k[2] == "config-autoscaler"), None)
        data = {} if key is None else (self._objects[key].raw.get("data") or {})
        if data.get("allow-zero-initial-scale") == "true":
            return []
        return ["metadata.annotations.autoscaling.knative.dev/initial-scale: invalid value: 0 "
                "(initial-scale=0 requires allow-zero-initial-scale in config-autoscaler)"]

    def requests_without_token(self, token: str) -> list[tuple[str, str, str | None]]:
        """Requests that did not carry exactly `Authorization: Bearer <token>`."""
        return [(m, p, a) for m, p, a, _ in self.auth_log if a != f"Bearer {token}"]


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def declare_core(k: kmock.KubernetesEmulator, extra: Iterable[str] = ()) -> None:
    """Pods (status, resize), nodes and configmaps, as the backends use them."""
    k.resources["v1/pods"] = kmock.ResourceInfo(
        kind="Pod", namespaced=True, subresources={"status", "resize"})
    k.resources["v1/nodes"] = kmock.ResourceInfo(kind="Node", namespaced=False)
    k.resources["v1/configmaps"] = kmock.ResourceInfo(kind="ConfigMap", namespaced=True)
    for resource in extra:
        k.resources[resource] = kmock.ResourceInfo(kind=resource.rsplit("/", 1)[-1].title(),
                                                   namespaced=True)
