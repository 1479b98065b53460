"""`shabari gateway`: wire the policy, scheduler, backend and featurizers, then serve HTTP.

`build_gateway` is also what the demo, the gateway benchmark and the tests use, so every way of
running the gateway assembles it the same way. SIGTERM/SIGINT trigger a graceful shutdown:
stop admitting (503), drain in-flight invocations, checkpoint every model, stop every pod.

Backends: `local` is built here from the functions' directories (and `--node-cpus`/
`--node-memory-gib`); `kubernetes`, `knative` and `openwhisk` come from
`shabari.backends.registry.create_backend` with the `backend:` mapping of the `--config`
file, overridden key by key by the one of `--backend-config` (a misspelt option is a
`ConfigError` naming it: exit 1, one line). With `--config`, the
file is followed while serving (`shabari.gateway.reload`): the operator's registry changes
apply without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

import featurizers
from shabari.agent.policy import Policy
from shabari.backends._options import check_keys
from shabari.backends.base import Backend
from shabari.backends.registry import create_backend
from shabari.core import ConfigError, FunctionSpec
from shabari.data.perf import load_perf_table
from shabari.gateway.config import (
    FunctionEntry,
    GatewayConfig,
    GatewayFile,
    load_backend_options,
    load_gateway_file,
    read_config_text,
)
from shabari.gateway.lease import LEASE_DURATION_S, Election, LeaseElector, LeaseTiming
from shabari.gateway.reload import RegistryWatcher
from shabari.gateway.replica import Replica, ReplicaConfig
from shabari.gateway.serve import serve
from shabari.gateway.service import FunctionsChange, Gateway
from shabari.gateway.slo import BestLatencyTable, SloResolver
from shabari.runtime.catalog import BundledFunction, bundled_functions
from shabari.scheduler import SchedulerConfig

log = logging.getLogger(__name__)

POLICIES = ("shabari", "static-max", "static-default", "random")


def make_policy(name: str, seed: int) -> Policy:
    """The policy objects the simulator also uses, by their fixed names.

    Decision ids start with a prefix drawn fresh for this process: the models are restored
    from checkpoints across restarts, the ids (in the decision log, `retry_of`, the
    `X-Shabari-Decision-Id` header) must not repeat."""
    from shabari.agent import make_policy as agent_policy

    if name not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; the gateway serves {', '.join(POLICIES)}")
    return agent_policy(name, seed, id_prefix=f"{name[:2]}{secrets.token_hex(5)}")


def bundled_entries(names: list[str] | None = None) -> dict[str, FunctionEntry]:
    """The bundled functions as gateway entries (their own specs and perf tables)."""
    catalog = bundled_functions()
    if names is not None:
        missing = sorted(set(names) - set(catalog))
        if missing:
            raise ConfigError(f"no bundled function named {', '.join(missing)}",
                              detail=f"bundled: {', '.join(sorted(catalog))}")
        catalog = {n: catalog[n] for n in names}
    return {
        name: FunctionEntry(spec=f.spec, directory=f.directory, perf_table=f.perf_table_path,
                            description=f.description)
        for name, f in catalog.items()
    }


def _as_bundled(entries: Mapping[str, FunctionEntry]) -> dict[str, BundledFunction]:
    catalog: dict[str, BundledFunction] | None = None
    out: dict[str, BundledFunction] = {}
    for name, e in entries.items():
        directory = e.directory
        if directory is None:
            if catalog is None:
                catalog = bundled_functions()
            if name not in catalog:
                raise ConfigError(f"function {name!r} has no 'directory' and is not bundled",
                                  detail="set functions.<name>.directory to its folder")
            directory = catalog[name].directory
        out[name] = BundledFunction(name, directory, e.spec, e.description)
    return out


def perf_tables(entries: Mapping[str, FunctionEntry]) -> dict[str, BestLatencyTable]:
    """Load each function's performance table, when it has one (bad tables are skipped loudly)."""
    tables: dict[str, BestLatencyTable] = {}
    catalog: dict[str, BundledFunction] | None = None
    for name, e in entries.items():
        path = e.perf_table
        if path is None and e.directory is None:
            if catalog is None:
                try:
                    catalog = bundled_functions()
                except ConfigError:
                    catalog = {}
            if name in catalog:
                path = catalog[name].perf_table_path
        if path is None and e.directory is not None and (e.directory / "perf.csv").is_file():
            path = e.directory / "perf.csv"
        if path is None:
            continue
        try:
            table = load_perf_table(path)
        except (ConfigError, OSError) as exc:
            log.warning("performance table %s not used: %s", path, exc)
            continue
        if name in table.functions():
            tables[name] = table
    return tables


#: `backend:` options of the local backend (its capacity also has CLI flags)
LOCAL_OPTIONS = ("cpu_millicores", "memory_mib", "cgroup_root", "node_id", "cpu_shares")


def make_backend(kind: str, entries: Mapping[str, FunctionEntry], *,
                 node_cpus: float | None = None, node_memory_gib: float | None = None,
                 options: Mapping[str, object] | None = None) -> Backend:
    """The backend by name, built (not started).

    `local` schedules onto this machine (or the capacity given: more than the machine has is
    overcommitted, each pod still capped by its own cgroup) and runs the entries' code.
    The cluster backends are `create_backend(kind, options)`: `options` is the config
    file's `backend:` mapping, checked by the backend (docs/platforms.md lists the keys).
    """
    opts = dict(options or {})
    if kind == "local":
        check_keys(opts, LOCAL_OPTIONS, "local")
        if node_cpus:
            opts["cpu_millicores"] = round(node_cpus * 1000)
        if node_memory_gib:
            opts["memory_mib"] = round(node_memory_gib * 1024)
        return create_backend("local", {**opts, "functions": _as_bundled(entries)})
    if node_cpus or node_memory_gib:
        raise ConfigError(f"--node-cpus/--node-memory-gib apply to the local backend only; "
                          f"the {kind} backend reports its own capacity",
                          detail="drop the flags (or set the backend's capacity options)")
    return create_backend(kind, opts)


def build_gateway(
    entries: Mapping[str, FunctionEntry],
    *,
    policy: Policy,
    backend: Backend,
    config: GatewayConfig | None = None,
) -> Gateway:
    config = config or GatewayConfig()
    specs: dict[str, FunctionSpec] = {n: e.spec for n, e in entries.items()}
    check_featurizers(specs)
    # the scheduler is built by Gateway.start() from the started backend's nodes: a cluster
    # backend knows its real nodes only then
    return Gateway(functions=specs, policy=policy, backend=backend,
                   featurize=featurizers.extract, slo=SloResolver(perf_tables(entries)),
                   config=config,
                   scheduler_config=SchedulerConfig(keep_alive_s=config.keep_alive_s,
                                                    supports_resize=backend.supports_resize))


def check_featurizers(specs: Mapping[str, FunctionSpec]) -> None:
    known = set(featurizers.kinds()) | {"auto"}
    for spec in specs.values():
        spec.check_featurizer(known)


def registry_applier(gateway: Gateway, backend_options: Mapping[str, object]
                     ) -> Callable[[GatewayFile], Awaitable[FunctionsChange]]:
    """What a changed functions file does to the running gateway (`RegistryWatcher`)."""
    started_with = dict(backend_options)

    async def apply(new: GatewayFile) -> FunctionsChange:
        specs = {n: e.spec for n, e in new.functions.items()}
        check_featurizers(specs)
        if dict(new.backend) != started_with:
            log.warning("registry: the 'backend' options changed; they apply at the next "
                        "start of the gateway")
            started_with.clear()
            started_with.update(new.backend)
        local_functions = getattr(gateway.backend, "functions", None)
        if gateway.backend.name == "local" and isinstance(local_functions, dict):
            # the local backend runs code from the entries' directories: teach it new ones
            local_functions.update(_as_bundled(
                {n: e for n, e in new.functions.items()
                 if n not in gateway.functions or gateway.functions[n] != e.spec}))
        return await gateway.update_functions(specs, perf_tables(new.functions))

    return apply


def attach_watcher(app: web.Application, watcher: RegistryWatcher) -> None:
    """Poll the functions file while `app` serves (started after the gateway, stopped first)."""
    async def _start(app: web.Application) -> None:
        watcher.start()

    async def _stop(app: web.Application) -> None:
        await watcher.stop()

    app.on_startup.append(_start)
    app.on_shutdown.insert(0, _stop)


def run(args: argparse.Namespace) -> int:
    from shabari.gateway.app import make_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    config_text = read_config_text(args.config) if args.config else None
    file = (load_gateway_file(args.config, config_text) if args.config
            else GatewayFile(bundled_entries()))
    entries = file.functions
    state_dir = getattr(args, "state_dir", None)
    knobs: dict[str, Any] = {}
    for arg, key in (("max_concurrent", "max_concurrent"), ("max_queue", "max_queue"),
                     ("keep_alive", "keep_alive_s"), ("registry_poll", "registry_poll_s")):
        value = getattr(args, arg, None)
        if value is not None:
            knobs[key] = value
    for arg, key in (("checkpoint_interval", "checkpoint_interval_s"),
                     ("max_connections", "max_connections"),
                     ("invoke_timeout", "invoke_timeout_s"), ("body_timeout", "body_timeout_s"),
                     ("drain_timeout", "drain_timeout_s")):
        value = getattr(args, arg, None)
        if value is not None:
            knobs[key] = value
    if getattr(args, "body_memory_mib", None) is not None:
        knobs["body_memory_bytes"] = round(args.body_memory_mib * 1024 * 1024)
    if getattr(args, "decision_log", None):
        knobs["decision_log"] = Path(args.decision_log)
    token = auth_token(getattr(args, "auth_token_file", None))
    config = GatewayConfig(state_dir=Path(state_dir) if state_dir else None, auth_token=token,
                           **knobs)
    policy = make_policy(getattr(args, "policy", "shabari") or "shabari",
                         getattr(args, "seed", 1) or 1)
    options = dict(file.backend)
    backend_config = getattr(args, "backend_config", None)
    if backend_config:
        options.update(load_backend_options(backend_config))
    backend = make_backend(args.backend, entries,
                           node_cpus=getattr(args, "node_cpus", None),
                           node_memory_gib=getattr(args, "node_memory_gib", None),
                           options=options)
    gateway = build_gateway(entries, policy=policy, backend=backend, config=config)
    app = make_app(gateway)
    if getattr(args, "lease", None):
        from shabari.gateway.app import attach_replica

        attach_replica(app, build_replica(gateway, args))
    if args.config and config.registry_poll_s > 0:
        attach_watcher(app, RegistryWatcher(
            gateway, args.config, registry_applier(gateway, file.backend),
            interval_s=config.registry_poll_s, loaded_text=config_text))
    log.info("serving %d functions with policy %s on %s:%d", len(entries),
             getattr(policy, "name", "?"), args.host, args.port)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(app, args.host, args.port))
    return 0


def build_replica(gateway: Gateway, args: argparse.Namespace) -> Replica:
    """A replica of a replicated gateway (`--lease NAMESPACE/NAME`), electing its learner
    through that Lease on the API server of `--kube-api` (or in-cluster, or kubeconfig)."""
    namespace, sep, name = str(args.lease).partition("/")
    if not sep or not namespace or not name:
        raise ConfigError(f"--lease must be NAMESPACE/NAME, got {args.lease!r}",
                          detail="e.g. --lease shabari-system/shabari-learner")
    identity = (getattr(args, "replica_id", None) or os.environ.get("POD_NAME")
                or socket.gethostname())
    url = getattr(args, "advertise_url", None)
    if not url:
        host = os.environ.get("POD_IP") or args.host
        url = f"http://{host}:{args.port}"
    duration = getattr(args, "lease_duration", None) or LEASE_DURATION_S
    options: dict[str, object] = {"namespace": namespace}
    if getattr(args, "kube_api", None):
        options["api_url"] = args.kube_api
    timing = LeaseTiming.for_duration(float(duration))
    rcfg = ReplicaConfig(
        identity=identity, url=url,
        ship_interval_s=getattr(args, "outcome_ship_interval", None) or 0.1,
        sync_interval_s=getattr(args, "model_sync_interval", None) or 0.5)
    replica = Replica(gateway, rcfg)
    replica.elector = LeaseElector(
        None, namespace, name, Election(identity, url, timing), api_options=options,
        on_started_leading=replica.started_leading,
        on_stopped_leading=replica.stopped_leading,
        on_leader_changed=replica.leader_changed)
    log.info("replica %s (%s): electing the learner with Lease %s/%s (%gs)", identity, url,
             namespace, name, timing.lease_duration_s)
    return replica


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop (libuv: cheaper sockets and callbacks than asyncio's selector loop,
    ~1/3 of the gateway's own time per request), or asyncio's when uvloop is not installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep serving without it
        log.warning("uvloop not installed: serving on asyncio's default event loop")
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def auth_token(path: str | None) -> str | None:
    """The bearer token every endpoint but the probes requires: the first line of `path`
    (`--auth-token-file`, the chart mounts a Secret there), else `$SHABARI_AUTH_TOKEN`,
    else None (no authentication)."""
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the auth token file {path}: "
                              f"{exc.strerror or exc}") from exc
        if not token:
            raise ConfigError(f"the auth token file {path} is empty")
        return token
    return os.environ.get("SHABARI_AUTH_TOKEN") or None
