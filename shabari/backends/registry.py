"""One factory for every backend, so `shabari gateway --backend NAME` needs one call.

Imports are lazy: choosing `local` never imports the cluster clients, and a cluster backend's
options are validated when it is created (a `ConfigError` naming the option, before the gateway
starts serving). Options come from the gateway's config file (a `backend:` mapping) merged
over what the platform's own conventions provide (for OpenWhisk: `~/.wskprops`); see
docs/platforms.md for every option.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shabari.backends._options import opt_int
from shabari.backends.base import Backend
from shabari.core.errors import ConfigError

__all__ = ["BACKENDS", "create_backend", "wskprops"]

BACKENDS = ("local", "kubernetes", "knative", "openwhisk")


def create_backend(name: str, options: Mapping[str, object] | None = None) -> Backend:
    """Build (not start) the backend `name`; call `await backend.start()` before use.

    local:      options `functions` (Mapping[str, BundledFunction]; default: bundled ones),
                `cpu_millicores`, `memory_mib`, `cgroup_root`, `node_id`, `cpu_shares`.
    kubernetes: shabari.backends.kubernetes.KubernetesOptions keys + the API connection
                (`api_url`, `token`, `ca_file`, `namespace`, ... or kubeconfig/in-cluster).
    knative:    `ingress_url` (required), `manage_variants`, `cold_start_threshold_ms`, ...
    openwhisk:  `api_host`, `auth` ("uuid:key"), `namespace` (defaults from ~/.wskprops).
    """
    opts: dict[str, Any] = dict(options or {})
    if name == "local":
        from shabari.backends.local import LocalBackend

        keys = ("cpu_millicores", "memory_mib", "cgroup_root", "node_id")
        kwargs: dict[str, Any] = {k: opts[k] for k in keys if k in opts}
        if "cpu_shares" in opts:  # the instance's CPU weight against the rest of the machine
            kwargs["cpu_shares"] = opt_int(opts, "cpu_shares", "local", 1024, minimum=2)
        local: Backend = LocalBackend(opts.get("functions"), **kwargs)
        return local
    if name == "kubernetes":
        from shabari.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(opts)
    if name == "knative":
        from shabari.backends.knative import KnativeBackend

        return KnativeBackend(opts)
    if name == "openwhisk":
        from shabari.backends.openwhisk import OpenWhiskBackend

        props = wskprops()
        merged = {"api_host": props.get("APIHOST"), "auth": props.get("AUTH"),
                  "namespace": props.get("NAMESPACE")}
        merged = {k: v for k, v in merged.items() if v}
        return OpenWhiskBackend({**merged, **opts})
    raise ConfigError(f"unknown backend {name!r}", detail=f"choose one of {', '.join(BACKENDS)}")


def wskprops(path: str | None = None) -> dict[str, str]:
    """The `KEY=value` lines of the OpenWhisk CLI's properties file (`$WSK_CONFIG_FILE` or
    `~/.wskprops`); empty when there is none."""
    where = Path(path or os.environ.get("WSK_CONFIG_FILE") or Path.home() / ".wskprops")
    try:
        text = where.read_text()
    except OSError:
        return {}
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            props[key.strip()] = value.strip()
    return props
