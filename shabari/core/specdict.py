"""One schema for function specs, whatever the source.

The gateway's YAML config, a FunctionSizingPolicy's `.spec`, a bundled function's
`function.yaml` and the operator's published registry all use the same mapping shape (the
FunctionSizingPolicy CRD schema, DESIGN 4.8), parsed here once:

    slo:        {latencyMs: 200} | {slowdown: 1.5}
    featurizer: {type: image, options: {...}}      (or just "image")
    sizes:      {cpu: ["250m", "1"], memory: ["256Mi", "1Gi"], gpu: [0, 1]}
    resourcePolicy: {minAllowed: {cpu, memory}, maxAllowed: {cpu, memory}}   (instead of sizes)
    defaultSize: {cpu: "1", memory: "512Mi", gpu: 0}
    gpuCapable: true
    mode:       InPlace | Variants | Recommend | Off        (default InPlace)
    exploration: {enabled: true, warmupInvocations: 40, rate: 0.1}   (all optional)

Every error is a `SpecError` whose field is the dotted path of the offending value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from shabari.core.errors import SpecError
from shabari.core.ids import FunctionName
from shabari.core.spec import SLO, Exploration, FunctionSpec, Size, size_grid
from shabari.core.units import format_cpu, format_memory, parse_cpu, parse_memory


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"must be a mapping, got {type(value).__name__}", field=field)
    return value


def _list(value: object, field: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SpecError(f"must be a list, got {type(value).__name__}", field=field)
    if not value:
        raise SpecError("must not be empty", field=field)
    return value


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"must be a number, got {value!r}", field=field)
    return float(value)


def parse_slo(value: object, field: str = "slo") -> SLO:
    data = _mapping(value, field)
    unknown = set(data) - {"latencyMs", "slowdown"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", field=field)
    latency = data.get("latencyMs")
    slowdown = data.get("slowdown")
    try:
        return SLO(
            latency_ms=None if latency is None else _number(latency, f"{field}.latencyMs"),
            slowdown=None if slowdown is None else _number(slowdown, f"{field}.slowdown"),
        )
    except SpecError as exc:
        if exc.field.startswith(field):
            raise
        raise SpecError(exc.reason, field=field) from exc


def _quantities(value: object, field: str, parse: Any) -> list[int]:
    out: list[int] = []
    for i, item in enumerate(_list(value, field)):
        try:
            out.append(parse(item))
        except SpecError as exc:
            raise SpecError(exc.reason, field=f"{field}[{i}]") from exc
    return out


def _doubling(lo: int, hi: int) -> list[int]:
    values = [lo]
    while values[-1] * 2 < hi:
        values.append(values[-1] * 2)
    if values[-1] != hi:
        values.append(hi)
    return values


def parse_sizes(data: Mapping[str, Any], path: str = "") -> tuple[Size, ...]:
    """`sizes` (explicit grid) or `resourcePolicy` (doubling steps from min to max)."""
    if "sizes" in data and "resourcePolicy" in data:
        raise SpecError("set either sizes or resourcePolicy, not both", field=path or "spec")
    if "sizes" in data:
        f = _field(path, "sizes")
        sizes = _mapping(data["sizes"], f)
        cpus = _quantities(sizes.get("cpu"), f"{f}.cpu", parse_cpu)
        mems = _quantities(sizes.get("memory"), f"{f}.memory", parse_memory)
        gpus_raw = sizes.get("gpu", [0])
        gpus = [int(_number(g, f"{f}.gpu[{i}]")) for i, g in enumerate(_list(gpus_raw, f"{f}.gpu"))]
        for field_name, values in (("cpu", cpus), ("memory", mems), ("gpu", gpus)):
            if len(set(values)) != len(values):
                raise SpecError("duplicate values", field=f"{f}.{field_name}")
        if any(g < 0 for g in gpus):
            raise SpecError("must be >= 0", field=f"{f}.gpu")
        return size_grid(cpus, mems, gpus)
    if "resourcePolicy" in data:
        f = _field(path, "resourcePolicy")
        rp = _mapping(data["resourcePolicy"], f)
        lo = _mapping(rp.get("minAllowed"), f"{f}.minAllowed")
        hi = _mapping(rp.get("maxAllowed"), f"{f}.maxAllowed")
        cpu_lo = parse_cpu(lo.get("cpu", "250m"))
        cpu_hi = parse_cpu(hi.get("cpu", "4"))
        mem_lo = parse_memory(lo.get("memory", "128Mi"))
        mem_hi = parse_memory(hi.get("memory", "2Gi"))
        if cpu_lo > cpu_hi:
            raise SpecError("minAllowed.cpu exceeds maxAllowed.cpu", field=f)
        if mem_lo > mem_hi:
            raise SpecError("minAllowed.memory exceeds maxAllowed.memory", field=f)
        return size_grid(_doubling(cpu_lo, cpu_hi), _doubling(mem_lo, mem_hi))
    raise SpecError("set sizes or resourcePolicy", field=path or "spec")


def parse_exploration(value: object, field: str = "exploration") -> Exploration:
    data = _mapping(value, field)
    unknown = set(data) - {"enabled", "warmupInvocations", "rate"}
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}", field=field)
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SpecError(f"must be true or false, got {enabled!r}", field=f"{field}.enabled")
    warmup = data.get("warmupInvocations")
    if warmup is not None:
        number = _number(warmup, f"{field}.warmupInvocations")
        if number != int(number):
            raise SpecError(f"must be a whole number, got {warmup!r}",
                            field=f"{field}.warmupInvocations")
        warmup = int(number)
    rate = data.get("rate")
    try:
        return Exploration(enabled, warmup,
                           None if rate is None else _number(rate, f"{field}.rate"))
    except SpecError as exc:
        raise SpecError(exc.reason, field=exc.field.replace("exploration", field, 1)) from None


def parse_size(value: object, field: str) -> Size:
    data = _mapping(value, field)
    return Size(
        parse_cpu(data.get("cpu", "")),
        parse_memory(data.get("memory", "")),
        int(_number(data.get("gpu", 0), f"{field}.gpu")),
    )


#: a Kubernetes DNS-1123 label: what a function name may be (DESIGN 4.3)
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def check_function_name(name: object, path: str = "") -> str:
    """`name` when it is a DNS-1123 label (lowercase alphanumerics and '-', at most 63
    characters, starting and ending alphanumeric); a `SpecError` showing it otherwise.

    Function names become file names (model checkpoints, pod logs) and cgroup directories, so
    nothing outside this alphabet may reach them: `../escape` or `a/b` is refused at load.
    """
    if not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
        raise SpecError(
            f"function name {name!r} is not a DNS-1123 label",
            field=path, detail="use lowercase letters, digits and '-', at most 63 characters, "
                               "starting and ending with a letter or digit")
    return name


def spec_from_mapping(name: str, data: Mapping[str, Any], path: str = "") -> FunctionSpec:
    """Build a validated `FunctionSpec` from the shared mapping schema (see module doc)."""
    check_function_name(name, path)
    data = _mapping(data, path or "spec")
    slo = parse_slo(data.get("slo", {"slowdown": 1.5}), _field(path, "slo"))
    featurizer: object = data.get("featurizer", "auto")
    options: Mapping[str, object] = {}
    if isinstance(featurizer, Mapping):
        options = _mapping(featurizer.get("options", {}), _field(path, "featurizer.options"))
        featurizer = featurizer.get("type", "auto")
    if not isinstance(featurizer, str) or not featurizer:
        raise SpecError("must be a featurizer kind name", field=_field(path, "featurizer"))
    sizes = parse_sizes(data, path)
    gpu_capable = bool(data.get("gpuCapable", any(s.gpu for s in sizes)))
    default = None
    if data.get("defaultSize") is not None:
        default = parse_size(data["defaultSize"], _field(path, "defaultSize"))
    mode = data.get("mode", "InPlace")
    if not isinstance(mode, str):
        raise SpecError(f"must be a string, got {mode!r}", field=_field(path, "mode"))
    exploration = (Exploration() if data.get("exploration") is None
                   else parse_exploration(data["exploration"], _field(path, "exploration")))
    try:
        return FunctionSpec(
            name=FunctionName(name),
            slo=slo,
            sizes=sizes,
            featurizer=featurizer,
            featurizer_options=options,
            gpu_capable=gpu_capable,
            default_size=default,
            mode=mode,
            exploration=exploration,
        )
    except SpecError as exc:
        if not path:
            raise
        raise SpecError(exc.reason, field=_field(path, exc.field)) from None


def spec_to_mapping(spec: FunctionSpec) -> dict[str, Any]:
    """The inverse of `spec_from_mapping` (grid written as explicit sizes)."""
    slo: dict[str, float] = (
        {"latencyMs": spec.slo.latency_ms} if spec.slo.latency_ms is not None
        else {"slowdown": spec.slo.slowdown or 1.0}
    )
    out: dict[str, Any] = {
        "slo": slo,
        "featurizer": {"type": spec.featurizer, "options": dict(spec.featurizer_options)},
        "sizes": {
            "cpu": [format_cpu(c) for c in spec.cpu_options],
            "memory": [format_memory(m) for m in spec.memory_options],
            "gpu": list(spec.gpu_options),
        },
        "gpuCapable": spec.gpu_capable,
    }
    if spec.default_size is not None:
        d = spec.default_size
        out["defaultSize"] = {"cpu": format_cpu(d.cpu_millicores),
                              "memory": format_memory(d.memory_mib), "gpu": d.gpu}
    if spec.mode != "InPlace":
        out["mode"] = spec.mode
    if spec.exploration != Exploration():
        e = spec.exploration
        exploration: dict[str, Any] = {"enabled": e.enabled}
        if e.warmup_invocations is not None:
            exploration["warmupInvocations"] = e.warmup_invocations
        if e.rate is not None:
            exploration["rate"] = e.rate
        out["exploration"] = exploration
    return out
