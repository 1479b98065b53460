"""`shabari gateway`: wire the policy, scheduler, backend and featurizers, then serve HTTP.

`build_gateway` is also what the demo, the gateway benchmark and the tests use, so every way of
running the gateway assembles it the same way. SIGTERM/SIGINT trigger a graceful shutdown:
stop admitting (503), drain in-flight invocations, checkpoint every model, stop every pod.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import featurizers
from shabari.agent.policy import Policy
from shabari.backends.base import Backend
from shabari.core import ConfigError, FunctionSpec
from shabari.data.perf import load_perf_table
from shabari.gateway.config import FunctionEntry, GatewayConfig, load_functions_yaml
from shabari.gateway.service import Gateway
from shabari.gateway.slo import BestLatencyTable, SloResolver
from shabari.runtime.catalog import BundledFunction, bundled_functions
from shabari.scheduler import Scheduler, SchedulerConfig

log = logging.getLogger(__name__)

POLICIES = ("shabari", "static-max", "static-default", "random")


def make_policy(name: str, seed: int) -> Policy:
    """The policy objects the simulator also uses, by their fixed names."""
    from shabari.agent import make_policy as agent_policy

    if name not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; the gateway serves {', '.join(POLICIES)}")
    return agent_policy(name, seed)


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


def make_backend(kind: str, entries: Mapping[str, FunctionEntry], *,
                 node_cpus: float | None = None, node_memory_gib: float | None = None
                 ) -> Backend:
    """The backend by name; the local one schedules onto this machine (or the capacity given:
    more than the machine has is overcommitted, each pod still capped by its own cgroup)."""
    if kind == "local":
        from shabari.backends.local import LocalBackend

        backend: Backend = LocalBackend(
            _as_bundled(entries),
            cpu_millicores=round(node_cpus * 1000) if node_cpus else None,
            memory_mib=round(node_memory_gib * 1024) if node_memory_gib else None)
        return backend
    raise ConfigError(f"backend {kind!r} is not available to `shabari gateway` in this build",
                      detail="use --backend local")


def build_gateway(
    entries: Mapping[str, FunctionEntry],
    *,
    policy: Policy,
    backend: Backend,
    config: GatewayConfig | None = None,
) -> Gateway:
    config = config or GatewayConfig()
    specs: dict[str, FunctionSpec] = {n: e.spec for n, e in entries.items()}
    known = set(featurizers.kinds()) | {"auto"}
    for spec in specs.values():
        spec.check_featurizer(known)
    scheduler = Scheduler(backend.nodes(), SchedulerConfig(
        keep_alive_s=config.keep_alive_s, supports_resize=backend.supports_resize))
    return Gateway(functions=specs, policy=policy, scheduler=scheduler, backend=backend,
                   featurize=featurizers.extract, slo=SloResolver(perf_tables(entries)),
                   config=config)


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from shabari.gateway.app import make_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    entries = (load_functions_yaml(args.config) if args.config else bundled_entries())
    state_dir = getattr(args, "state_dir", None)
    knobs: dict[str, Any] = {}
    for arg, key in (("max_concurrent", "max_concurrent"), ("max_queue", "max_queue"),
                     ("keep_alive", "keep_alive_s")):
        value = getattr(args, arg, None)
        if value is not None:
            knobs[key] = value
    config = GatewayConfig(state_dir=Path(state_dir) if state_dir else None, **knobs)
    policy = make_policy(getattr(args, "policy", "shabari") or "shabari",
                         getattr(args, "seed", 1) or 1)
    backend = make_backend(args.backend, entries,
                           node_cpus=getattr(args, "node_cpus", None),
                           node_memory_gib=getattr(args, "node_memory_gib", None))
    gateway = build_gateway(entries, policy=policy, backend=backend, config=config)
    app = make_app(gateway)
    log.info("serving %d functions with policy %s on %s:%d", len(entries),
             getattr(policy, "name", "?"), args.host, args.port)
    web.run_app(app, host=args.host, port=args.port, print=None,
                shutdown_timeout=config.drain_timeout_s, access_log=None)
    return 0
