"""The gateway's configuration: its own knobs and the functions it serves.

Functions come from a YAML file (`--config FILE`) whose top-level `functions:` mapping holds,
per function name, a spec in the shared schema (`shabari.core.specdict`: slo, featurizer,
sizes, defaultSize, gpuCapable) plus optional backend keys (`directory`, `handler`,
`perfTable`). The operator publishes exactly this YAML in a ConfigMap; on a fresh install,
before any policy exists, that is `functions: {}`, which is valid (the gateway serves nothing
until the registry is filled). An optional top-level `backend:` mapping holds the cluster
backend's options (`shabari.backends.registry.create_backend`). Without a file the gateway
serves the bundled functions with their own `function.yaml` specs.

Parsing is strict and every error is a `ConfigError`/`SpecError` naming the file and field, so a
typo in a ConfigMap is reported at start instead of surfacing as a wrong decision later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shabari.core import ConfigError, FunctionSpec, SpecError, spec_from_mapping

#: keys of a function entry that belong to the backend, not to the spec schema
BACKEND_KEYS = frozenset({"directory", "handler", "perfTable", "description", "namespace",
                          "target"})


@dataclass(frozen=True, slots=True)
class FunctionEntry:
    """One served function: its validated spec plus where the backend finds its code."""

    spec: FunctionSpec
    directory: Path | None = None
    handler: str | None = None
    perf_table: Path | None = None
    description: str = ""
    #: on Kubernetes: the namespace and workload the operator published this function for
    #: (its name is qualified by the namespace outside the operator's home namespace)
    namespace: str | None = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Operational limits of one gateway process (all have safe defaults)."""

    #: largest accepted request body; larger bodies get 413
    max_body_bytes: int = 32 * 1024 * 1024
    #: invocations executing at once (beyond this they wait in the admission queue)
    max_concurrent: int = 8
    #: invocations allowed to wait for a slot; beyond this: 429
    max_queue: int = 64
    #: how long an invocation may wait in the admission queue before a 503
    queue_timeout_s: float = 30.0
    #: how long an admitted invocation may wait for cluster capacity (scheduler QUEUE)
    capacity_wait_s: float = 30.0
    #: per-invocation execution timeout passed to the backend (504 beyond it)
    invoke_timeout_s: float = 60.0
    #: idle warm pods are stopped after this
    keep_alive_s: float = 120.0
    #: where models are checkpointed (restored at start); None = no persistence
    state_dir: Path | None = None
    #: decision log file (JSON lines, rotated); None = `state_dir/decisions.jsonl` or off
    decision_log: Path | None = None
    decision_log_max_bytes: int = 16 * 1024 * 1024
    decision_log_backups: int = 5
    #: seconds between keep-alive sweeps
    sweep_interval_s: float = 1.0
    #: retry an OOM-killed invocation once with escalated memory
    retry_oom: bool = True
    #: longest a graceful shutdown waits for in-flight invocations
    drain_timeout_s: float = 60.0
    #: seconds between checks of the functions file for changes (0 = never reload)
    registry_poll_s: float = 5.0
    #: a request body must arrive within this (408 otherwise); it is read before the request
    #: takes an admission slot, so a slow upload holds no slot
    body_timeout_s: float = 30.0
    #: request bodies held in memory at once, all requests together; beyond it a request
    #: waits (up to `queue_timeout_s`) for room, then 503 + Retry-After
    body_memory_bytes: int = 128 * 1024 * 1024
    #: open client connections; at the cap the longest-idle one is closed for a new one,
    #: and with none idle the new one is answered 503 (clamped below the open-file limit)
    max_connections: int = 1000
    #: seconds between checkpoints of the models that changed (DESIGN 4.3 durability)
    checkpoint_interval_s: float = 30.0
    #: when set, every endpoint but /healthz and /readyz needs `Authorization: Bearer <it>`
    auth_token: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def decision_log_path(self) -> Path | None:
        if self.decision_log is not None:
            return self.decision_log
        if self.state_dir is not None:
            return self.state_dir / "decisions.jsonl"
        return None

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / "models"


def entries_from_mapping(data: object, source: str = "config") -> dict[str, FunctionEntry]:
    """Parse the `functions:` document (already loaded YAML) into function entries."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping with a 'functions' key")
    functions = data.get("functions")
    if not isinstance(functions, Mapping):
        raise ConfigError(f"{source}: 'functions' must be a mapping of name -> spec "
                          f"(`functions: {{}}` serves none)")
    out: dict[str, FunctionEntry] = {}
    for name, raw in functions.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{source}: function names must be non-empty strings, got {name!r}")
        if not isinstance(raw, Mapping):
            raise SpecError(f"must be a mapping, got {type(raw).__name__}",
                            field=f"functions.{name}", detail=source)
        spec_part = {k: v for k, v in raw.items() if k not in BACKEND_KEYS}
        try:
            spec = spec_from_mapping(name, spec_part, f"functions.{name}")
        except SpecError as exc:
            raise SpecError(exc.reason, field=exc.field, detail=source) from exc
        out[name] = FunctionEntry(
            spec=spec,
            directory=_opt_path(raw.get("directory"), f"functions.{name}.directory", source),
            handler=_opt_str(raw.get("handler"), f"functions.{name}.handler", source),
            perf_table=_opt_path(raw.get("perfTable"), f"functions.{name}.perfTable", source),
            description=str(raw.get("description", "")),
            namespace=_opt_str(raw.get("namespace"), f"functions.{name}.namespace", source),
            target=_opt_str(raw.get("target"), f"functions.{name}.target", source),
        )
    return out


@dataclass(frozen=True, slots=True)
class GatewayFile:
    """Everything a `--config` file says: the functions and the backend's options."""

    functions: dict[str, FunctionEntry]
    #: the `backend:` mapping, passed as is to `create_backend` (which checks every key)
    backend: Mapping[str, object] = field(default_factory=dict)


def load_functions_yaml(path: str | Path) -> dict[str, FunctionEntry]:
    """Read and validate a functions YAML file; relative paths resolve against its folder."""
    return load_gateway_file(path).functions


def read_config_text(path: str | Path) -> str:
    """The file's text (a `ConfigError` naming it when it cannot be read)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read functions config {p}: {exc.strerror or exc}") from exc


def load_gateway_file(path: str | Path, text: str | None = None) -> GatewayFile:
    """Parse a `--config` file (its `text` when already read): functions + backend options."""
    p = Path(path)
    if text is None:
        text = read_config_text(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML", detail=str(exc)) from exc
    functions = _rebase_entries(entries_from_mapping(data, str(p)), p.resolve().parent)
    return GatewayFile(functions, _backend_section(data, p))


def load_backend_options(path: str | Path) -> dict[str, object]:
    """The `backend:` mapping of a YAML file (`--backend-config`: the chart keeps the backend's
    options apart from the registry, which the operator rewrites)."""
    p = Path(path)
    text = read_config_text(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML", detail=str(exc)) from exc
    if not isinstance(data, Mapping) or set(data) - {"backend"}:
        raise ConfigError(f"{p}: must be a mapping with only a 'backend' key")
    return _backend_section(data, p)


def _backend_section(data: object, p: Path) -> dict[str, object]:
    backend = data.get("backend") if isinstance(data, Mapping) else None
    if backend is None:
        return {}
    if not isinstance(backend, Mapping) or not all(isinstance(k, str) for k in backend):
        raise ConfigError(f"{p}: 'backend' must be a mapping of option -> value",
                          detail="see docs/platforms.md for each backend's options")
    return dict(backend)


def _rebase_entries(entries: Mapping[str, FunctionEntry], base: Path
                    ) -> dict[str, FunctionEntry]:
    return {
        name: FunctionEntry(
            spec=e.spec,
            directory=_rebase(e.directory, base),
            handler=e.handler,
            perf_table=_rebase(e.perf_table, base),
            description=e.description,
            namespace=e.namespace,
            target=e.target,
        )
        for name, e in entries.items()
    }


def _rebase(path: Path | None, base: Path) -> Path | None:
    if path is None or path.is_absolute():
        return path
    return base / path


def _opt_str(value: object, fld: str, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SpecError("must be a non-empty string", field=fld, detail=source)
    return value


def _opt_path(value: object, fld: str, source: str) -> Path | None:
    s = _opt_str(value, fld, source)
    return None if s is None else Path(s)
