"""`shabari evaluate --log decisions.jsonl --policy NAME|settings`: off-policy estimates.

Reads the gateway's decision log (every file given; rotated files too), keeps first attempts
with an outcome, and prints, per target policy, what it would have cost on that traffic:
IPS and doubly robust estimates with 95 % intervals (`ope`), its violation rate, the vCPUs it
allocates per invocation, and how much of the log supports it. Target policies:

    static-max        the largest size of the grid
    static-default    the function's default size (from --config, else the size the agent
                      ran during its safe start, else the largest)
    random            uniformly random over the grid
    recommended       what Recommend mode logged as the recommendation
    cpu=1             1 vCPU with the memory the logged decision chose (agent logs: memory is
                      predicted, never explored)
    cpu=500m,memory=512Mi[,gpu=0]   exactly this size
    shabari[:rate=0.05,enabled=false,warmup=0]   the learned model in --state-dir as it is now
                      (its checkpoints), optionally with other exploration settings: per
                      logged input, the probabilities its `explain` gives each CPU (warm pods
                      of every size assumed), memory as logged

Grids come from `--config` (the gateway's functions file) or, without it, from the sizes
seen in the log.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from shabari.core.errors import ConfigError, DataFormatError, SpecError
from shabari.core.spec import Size
from shabari.core.units import format_cpu, format_memory, parse_cpu, parse_memory
from shabari.evaluation import ope

NAMED = ("static-max", "static-default", "random", "recommended")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", action="append", required=True,
                   help="decision log (JSON lines); repeat for rotated files")
    p.add_argument("--policy", action="append", required=True,
                   help="target policy: static-max, static-default, random, recommended, "
                        "cpu=1 or cpu=500m,memory=512Mi (repeatable)")
    p.add_argument("--config", default=None, help="the gateway's functions file (grids)")
    p.add_argument("--state-dir", default=None,
                   help="the gateway's --state-dir: its model checkpoints (--policy shabari)")
    p.add_argument("--function", default=None, help="only this function")
    p.add_argument("--json", dest="json_out", default=None, help="also write the results here")


def _size(value: object, where: str) -> Size:
    if not isinstance(value, Mapping):
        raise DataFormatError(f"{where}: expected a size object, got {value!r}")
    try:
        return Size(int(value["cpu_millicores"]), int(value["memory_mib"]),
                    int(value.get("gpu", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{where}: invalid size {value!r} ({exc})") from None


def read_log(paths: Sequence[str | Path], function: str | None = None
             ) -> tuple[list[ope.LoggedDecision], dict[str, Counter[Size]]]:
    """First attempts with an outcome and a cost; plus, per function, the safe-start sizes."""
    records: list[ope.LoggedDecision] = []
    safe: dict[str, Counter[Size]] = defaultdict(Counter)
    for path in paths:
        for lineno, rec in _lines(Path(path)):
            where = f"{path}:{lineno}"
            if rec.get("attempt", 1) != 1 or rec.get("outcome") is None \
                    or rec.get("cost") is None:
                continue
            fn = str(rec.get("function", ""))
            if function is not None and fn != function:
                continue
            size = _size(rec.get("action"), f"{where}: action")
            probability = rec.get("probability")
            if not isinstance(probability, int | float) or not 0 < probability <= 1:
                raise DataFormatError(f"{where}: probability must be in (0, 1], "
                                      f"got {probability!r}")
            if rec.get("reason") == "safe-start":
                safe[fn][size] += 1
            raw_rec = rec.get("recommended")
            features = rec.get("features") or {}
            records.append(ope.LoggedDecision(
                function=fn,
                features={k: float(v) for k, v in features.items()
                          if isinstance(v, int | float)},
                size=size, probability=float(probability), cost=float(rec["cost"]),
                violated=bool(rec.get("violated")),
                recommended=None if raw_rec is None else _size(raw_rec,
                                                                f"{where}: recommended"),
                memory_drawn=rec.get("policy") == "random",
                slo_ms=float(rec["slo_ms"]) if isinstance(rec.get("slo_ms"), int | float)
                else None,
            ))
    return records, dict(safe)


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read decision log {path}: {exc.strerror or exc}") from None
    with handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise DataFormatError(f"{path}:{lineno}: not a JSON line") from None
            if isinstance(rec, dict):
                yield lineno, rec


def learned_target(text: str, state_dir: str | None, config: str | None) -> ope.TargetPolicy:
    """`shabari[:settings]`: the gateway's learned model, frozen, as a target policy."""
    import dataclasses

    from shabari.agent.shabari_agent import ShabariAgent
    from shabari.core import DecisionContext, Exploration, FunctionName
    from shabari.gateway.cli import bundled_entries
    from shabari.gateway.config import load_functions_yaml

    if state_dir is None:
        raise ConfigError(f"--policy {text!r} needs --state-dir (the gateway's model "
                          "checkpoints)")
    _, _, raw = text.partition(":")
    overrides: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            if key == "enabled" and sep:
                overrides["enabled"] = value.strip().lower() in {"true", "1", "yes"}
            elif key == "rate" and sep:
                overrides["rate"] = float(value)
            elif key == "warmup" and sep:
                overrides["warmup_invocations"] = int(value)
            else:
                raise ValueError(f"unknown setting {part!r}")
        except ValueError as exc:
            raise ConfigError(f"--policy {text!r}: {exc} (settings: enabled, rate, warmup)"
                              ) from None
    entries = load_functions_yaml(config) if config else bundled_entries()
    agent = ShabariAgent(0)
    models = Path(state_dir) / "models"
    for name in entries:
        ckpt = models / f"{name}.ckpt"
        if ckpt.exists():
            agent.restore(FunctionName(name), ckpt.read_bytes())
    specs = {}
    for name, entry in entries.items():
        spec = entry.spec
        if overrides:
            fields = {"enabled": spec.exploration.enabled,
                      "warmup_invocations": spec.exploration.warmup_invocations,
                      "rate": spec.exploration.rate, **overrides}
            try:
                spec = dataclasses.replace(spec, exploration=Exploration(**fields))
            except SpecError as exc:
                raise ConfigError(f"--policy {text!r}: {exc}") from None
        specs[name] = spec

    def target(r: ope.LoggedDecision, grid: Sequence[Size]) -> Mapping[Size, float]:
        spec = specs.get(r.function)
        if spec is None:
            raise ConfigError(f"function {r.function!r} is logged but not in "
                              f"{config or 'the bundled functions'}")
        ctx = DecisionContext(spec=spec, features=r.features, now=0.0,
                              warm_idle=spec.sizes, slo_ms=r.slo_ms)
        out: dict[Size, float] = {}
        for e in agent.explain(ctx).sizes:
            if e.probability > 0:
                size = Size(e.size.cpu_millicores, r.size.memory_mib, e.size.gpu)
                out[size] = out.get(size, 0.0) + e.probability
        return out

    return ope.arm_level(target)


def parse_target(text: str, defaults: Mapping[str, Size], state_dir: str | None = None,
                 config: str | None = None) -> ope.TargetPolicy:
    """A target policy from its name or its `cpu=...[,memory=...][,gpu=...]` settings."""
    name = text.strip()
    if name == "shabari" or name.startswith("shabari:"):
        return learned_target(name, state_dir, config)
    if name == "static-max":
        return ope.largest
    if name == "random":
        return ope.uniform
    if name == "recommended":
        return ope.recommended
    if name == "static-default":
        def default(r: ope.LoggedDecision, grid: Sequence[Size]) -> Mapping[Size, float]:
            size = defaults.get(r.function)
            return {size: 1.0} if size is not None else ope.largest(r, grid)
        return default
    settings: dict[str, str] = {}
    for part in name.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in {"cpu", "memory", "gpu"}:
            raise ConfigError(f"--policy {text!r}: expected one of {', '.join(NAMED)}, "
                              "shabari[:settings] or cpu=...[,memory=...][,gpu=...]")
        settings[key.strip()] = value.strip()
    if "cpu" not in settings:
        raise ConfigError(f"--policy {text!r}: settings need cpu=...")
    try:
        cpu = parse_cpu(settings["cpu"])
        gpu = int(settings["gpu"]) if "gpu" in settings else None
        if "memory" in settings:
            return ope.fixed(Size(cpu, parse_memory(settings["memory"]), gpu or 0))
    except (SpecError, ValueError) as exc:
        raise ConfigError(f"--policy {text!r}: {exc}") from None
    return ope.fixed_cpu(cpu, gpu)


def grids_and_defaults(records: Sequence[ope.LoggedDecision], safe: Mapping[str, Counter[Size]],
                       config: str | None) -> tuple[dict[str, list[Size]], dict[str, Size]]:
    grids: dict[str, list[Size]] = {}
    defaults: dict[str, Size] = {}
    if config is not None:
        from shabari.gateway.config import load_functions_yaml

        for name, entry in load_functions_yaml(config).items():
            grids[name] = list(entry.spec.sizes)
            defaults[name] = entry.spec.safe_default
    for r in records:
        if r.function not in grids:
            grids[r.function] = []
        if config is None and r.size not in grids[r.function]:
            grids[r.function].append(r.size)
    for fn, counts in safe.items():
        defaults.setdefault(fn, counts.most_common(1)[0][0])
    missing = sorted(fn for fn, grid in grids.items() if not grid)
    if missing:
        raise ConfigError(f"functions {missing} are logged but not in {config}")
    return grids, defaults


def _fmt(e: ope.Estimate) -> str:
    if not math.isfinite(e.value):
        return "n/a"
    return f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def format_table(logged: ope.Evaluation | None, results: Sequence[ope.Evaluation]) -> str:
    header = ("policy", "n", "cost IPS [95% CI]", "cost DR [95% CI]", "violations DR",
              "vCPU/inv", "support", "ESS")
    rows = []
    if logged is not None:
        rows.append(("(logged)", str(logged.n), f"{logged.logged_cost:.3f}",
                     f"{logged.logged_cost:.3f}", f"{logged.logged_violation_rate:.1%}",
                     f"{logged.logged_vcpu_per_invocation:.2f}", "100%", str(logged.n)))
    for e in results:
        ips = e.cost_ips if e.support > 0 else ope.Estimate(math.nan, math.nan, math.nan)
        rows.append((e.policy, str(e.n), _fmt(ips), _fmt(e.cost_dr),
                     f"{e.violation_dr.value:.1%}" if math.isfinite(e.violation_dr.value)
                     else "n/a",
                     f"{e.vcpu_per_invocation:.2f}", f"{e.support:.0%}", f"{e.ess:.0f}"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def run(args: argparse.Namespace) -> int:
    records, safe = read_log(args.log, args.function)
    if not records:
        raise ConfigError("no first attempts with an outcome in the decision log",
                          detail="is the gateway's --state-dir or --decision-log set?")
    grids, defaults = grids_and_defaults(records, safe, args.config)
    results = [ope.evaluate(records, grids,
                            parse_target(p, defaults, args.state_dir, args.config), p)
               for p in args.policy]
    functions = sorted({r.function for r in records})
    print(f"{len(records)} logged invocations of {len(functions)} function(s): "
          f"{', '.join(functions[:8])}{' ...' if len(functions) > 8 else ''}")
    for fn in functions[:8]:
        grid = grids[fn]
        print(f"  {fn}: grid {len(grid)} sizes, cpu {format_cpu(min(s.cpu_millicores for s in grid))}"
              f"..{format_cpu(max(s.cpu_millicores for s in grid))}, memory "
              f"{format_memory(min(s.memory_mib for s in grid))}"
              f"..{format_memory(max(s.memory_mib for s in grid))}")
    print(format_table(results[0] if results else None, results))
    unsupported = [e.policy for e in results if e.support == 0]
    if unsupported:
        print(f"note: the log never ran what {', '.join(unsupported)} would: no estimate "
              "(n/a); evaluate on a log with exploration (InPlace, or --policy random for a "
              "while)")
    thin = [e.policy for e in results if e.support > 0 and e.ess < 30]
    if thin:
        print(f"note: little support for {', '.join(thin)} (effective sample size < 30): the "
              "logging policy rarely ran what it would; treat the estimate as a rough guide")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"n": len(records), "functions": functions,
             "results": [e.to_dict() for e in results]}, indent=2) + "\n")
    return 0
