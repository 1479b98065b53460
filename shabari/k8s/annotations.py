"""SLO annotations on Knative Services and Deployments (DESIGN 4.8).

Users who do not write a FunctionSizingPolicy annotate their workload instead:

    shabari.dev/slo-latency-ms: "200"          or  shabari.dev/slo-slowdown: "1.5"
    shabari.dev/sizes: "cpu=250m,500m,1,2;memory=256Mi,512Mi,1Gi"   (optional; ;gpu=0,1)
    shabari.dev/featurizer: image              (optional; default auto)
    shabari.dev/gpu: "true"                    (GPU-capable: adds a 1-GPU variant of each size)
    shabari.dev/mode: InPlace | Variants | Recommend | Off   (optional; default InPlace on a
                      Deployment, Variants on a Knative Service: it cannot resize in place)

One SLO annotation is enough: without `shabari.dev/sizes` the grid is derived from the
container's requests and limits (`shabari.k8s.sizing`).

The annotations are turned into the shared spec mapping and validated by the same parser as
a FunctionSizingPolicy (`core.specdict`), so errors name the same fields; the message also
names the annotation a user has to fix.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from shabari.core.errors import SpecError
from shabari.core.specdict import spec_from_mapping
from shabari.k8s.types import MODES

PREFIX = "shabari.dev/"
SLO_LATENCY_MS = PREFIX + "slo-latency-ms"
SLO_SLOWDOWN = PREFIX + "slo-slowdown"
FEATURIZER = PREFIX + "featurizer"
SIZES = PREFIX + "sizes"
GPU = PREFIX + "gpu"
MODE = PREFIX + "mode"

#: the annotations that make a workload a Shabari function
KNOWN = (SLO_LATENCY_MS, SLO_SLOWDOWN, FEATURIZER, SIZES, GPU, MODE)

#: spec field (as core.specdict names it) -> the annotation that sets it
_FIELD_SOURCE = (
    ("slo.latencyMs", SLO_LATENCY_MS),
    ("slo.slowdown", SLO_SLOWDOWN),
    ("slo", f"{SLO_LATENCY_MS} / {SLO_SLOWDOWN}"),
    ("sizes", SIZES),
    ("featurizer", FEATURIZER),
    ("gpu", GPU),
    ("mode", MODE),
)

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}
_SIZE_KEYS = {"cpu", "memory", "gpu"}


def has_shabari_annotations(annotations: Mapping[str, str] | None) -> bool:
    return bool(annotations) and any(key in KNOWN for key in annotations or {})


def _number_or_raw(value: str) -> float | str:
    # Non-numbers pass through so the shared parser reports them under their field name.
    try:
        return float(value)
    except ValueError:
        return value


def _parse_sizes(value: str) -> dict[str, list[Any]]:
    sizes: dict[str, list[Any]] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, items = part.partition("=")
        key = key.strip()
        if not sep or key not in _SIZE_KEYS:
            raise SpecError(
                f"expected 'cpu=...;memory=...' (keys cpu, memory, gpu), got {part.strip()!r}",
                field="sizes",
            )
        if key in sizes:
            raise SpecError(f"{key} is given twice", field="sizes")
        values: list[Any] = [v.strip() for v in items.split(",") if v.strip()]
        if key == "gpu":
            values = [_number_or_raw(v) for v in values]
        sizes[key] = values
    return sizes


def _parse_gpu(value: str) -> int:
    text = value.strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    if text.isdigit():
        return int(text)
    raise SpecError(f"expected true, false or a GPU count, got {value!r}", field="gpu")


def mapping_from_annotations(annotations: Mapping[str, str]) -> dict[str, Any]:
    """The shared spec mapping (plus `mode`) the annotations describe; `SpecError` if malformed."""
    data: dict[str, Any] = {}
    slo: dict[str, Any] = {}
    if SLO_LATENCY_MS in annotations:
        slo["latencyMs"] = _number_or_raw(annotations[SLO_LATENCY_MS])
    if SLO_SLOWDOWN in annotations:
        slo["slowdown"] = _number_or_raw(annotations[SLO_SLOWDOWN])
    if slo:
        data["slo"] = slo
    if FEATURIZER in annotations:
        data["featurizer"] = {"type": annotations[FEATURIZER].strip(), "options": {}}
    if SIZES in annotations:
        data["sizes"] = _parse_sizes(annotations[SIZES])
    if GPU in annotations:
        gpus = _parse_gpu(annotations[GPU])
        data["gpuCapable"] = gpus > 0
        if gpus and "sizes" in data and "gpu" not in data["sizes"]:
            data["sizes"]["gpu"] = [0, gpus]
    mode = annotations.get(MODE, "InPlace").strip()
    if mode not in MODES:
        raise SpecError(f"must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    data["mode"] = mode
    return data


def _annotation_error(exc: SpecError) -> SpecError:
    for prefix, source in _FIELD_SOURCE:
        if exc.field == prefix or exc.field.startswith(prefix + ".") or exc.field.startswith(
            prefix + "["
        ):
            return SpecError(exc.message, field=source)
    return exc


def policy_spec_from_annotations(
    name: str, annotations: Mapping[str, str], known_featurizers: Collection[str] | None,
    derived: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validated `.spec` mapping (without targetRef) for a derived FunctionSizingPolicy.

    Without `shabari.dev/sizes` the returned mapping has no grid (the operator derives it
    from the target when it reconciles the policy); `derived` is that grid
    (`sizing.derived_sizes`), used here only to validate the rest against it.
    Raises `SpecError` whose field is the annotation to fix, e.g.
    `shabari.dev/sizes: sizes.cpu[1]: invalid CPU quantity '2x' (expected e.g. 250m, 1, 1.5)`.
    """
    try:
        data = mapping_from_annotations(annotations)
        if SLO_LATENCY_MS not in annotations and SLO_SLOWDOWN not in annotations \
                and SIZES not in annotations:
            raise SpecError(f"set {SLO_LATENCY_MS} or {SLO_SLOWDOWN} (one SLO annotation is "
                            "enough)", field="slo")
        checked = dict(data)
        if "sizes" not in data:
            if data.get("gpuCapable"):
                raise SpecError(f"a GPU-capable function needs {SIZES} with gpu=...",
                                field="gpu")
            checked.update(derived or {"sizes": {"cpu": ["1"], "memory": ["1Gi"]}})
        spec = spec_from_mapping(name, checked)
        if known_featurizers is not None:
            spec.check_featurizer(known_featurizers)
    except SpecError as exc:
        raise _annotation_error(exc) from exc
    return data
