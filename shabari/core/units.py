"""Kubernetes-style quantities: CPU as millicores, memory as MiB.

Parsing is strict: anything that is not a positive quantity raises `SpecError` naming the
value, so an annotation such as `cpu=2x` is reported instead of silently misread.
"""

from __future__ import annotations

import re

from shabari.core.errors import SpecError

_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")
_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|K|M|G|T|)\s*$")
_MEM_FACTOR_MIB = {
    "": 1.0 / (1024 * 1024),
    "Ki": 1.0 / 1024,
    "Mi": 1.0,
    "Gi": 1024.0,
    "Ti": 1024.0 * 1024,
    "k": 1000.0 / (1024 * 1024),
    "K": 1000.0 / (1024 * 1024),
    "M": 1e6 / (1024 * 1024),
    "G": 1e9 / (1024 * 1024),
    "T": 1e12 / (1024 * 1024),
}


def parse_cpu(value: str | int | float) -> int:
    """`"250m"` -> 250, `"1"` -> 1000, `"0.5"` -> 500, `2` -> 2000 (whole cores)."""
    if isinstance(value, bool):
        raise SpecError(f"invalid CPU quantity {value!r}")
    if isinstance(value, int | float):
        millis = round(float(value) * 1000)
    else:
        m = _CPU.match(value)
        if not m:
            raise SpecError(f"invalid CPU quantity {value!r} (expected e.g. 250m, 1, 1.5)")
        number = float(m.group(1))
        millis = round(number) if m.group(2) == "m" else round(number * 1000)
    if millis <= 0:
        raise SpecError(f"CPU quantity {value!r} must be positive")
    return millis


def parse_memory(value: str | int | float) -> int:
    """`"512Mi"` -> 512, `"1Gi"` -> 1024, `"1G"` -> 954; bare numbers are bytes (Kubernetes)."""
    if isinstance(value, bool):
        raise SpecError(f"invalid memory quantity {value!r}")
    if isinstance(value, int | float):
        mib = float(value) / (1024 * 1024)
    else:
        m = _MEM.match(value)
        if not m:
            raise SpecError(f"invalid memory quantity {value!r} (expected e.g. 256Mi, 1Gi)")
        mib = float(m.group(1)) * _MEM_FACTOR_MIB[m.group(2)]
    result = round(mib)
    if result <= 0:
        raise SpecError(f"memory quantity {value!r} must be at least 1Mi")
    return result


def format_cpu(millicores: int) -> str:
    return f"{millicores // 1000}" if millicores % 1000 == 0 else f"{millicores}m"


def format_memory(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"
