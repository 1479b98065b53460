"""Convert the vSwarm profile (vhive-serverless/loader `profile.json`) into a performance table.

What the source holds: for each vSwarm benchmark function and input parameter (the number in
the entry name: frames, image index, input length), percentiles of the CPU it used (millicores,
`kubectl top`), of its memory (MiB) and of its duration (ms), measured at ONE deployment size.
So the source shows how work and memory grow with the input, but not how latency responds to
the allocation. The converter therefore has to extrapolate the grid, with this model:

* CPU: a work-conserving CPU cap (CFS quota). The input needs `u` millicores (the median of the
  measured CPU) for `d` ms (the measured duration). At an allocation of `c` millicores it runs
  `d * max(1, u / c)`: throttled in proportion below its demand, never faster than measured
  above it (no speed-up beyond the parallelism it showed is invented). Light inputs
  (u < the smallest CPU option) are therefore flat across CPU sizes, which is what the data
  says about them.
* Memory: the run fails (`ok=0`, an OOM) at every size whose memory is below the measured
  peak (the 100th percentile), and is unaffected by memory otherwise.
* Latency distribution: one sample per duration percentile (5, 25, 50, 75, 95), each scaled by
  the same CPU factor, so tail and median scale together.
* Inputs whose peak exceeds the largest memory option are left out (they fail everywhere).
* Features: `feature.param` (the first number of the name) and `feature.param2` (the second,
  when there is one); single-input services get `param = 0`.

What it cannot express: CPU speed-ups from parallelism the profile did not show, memory
pressure slowdowns (swap, GC) below or near the peak, cold starts (none measured: the simulator
uses its per-function default), GPU variants, and variance that depends on the allocation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shabari.core import DataFormatError
from shabari.data.perf import PerfRow

__all__ = ["DEFAULT_CPU_GRID", "DEFAULT_MEMORY_GRID", "convert_vswarm", "load_vswarm_rows"]

DEFAULT_CPU_GRID = (250, 500, 1000, 2000, 4000)
DEFAULT_MEMORY_GRID = (128, 256, 512, 1024, 2048)
_PERCENTILES = (5, 25, 50, 75, 95)
_NAME = re.compile(r"^(?P<fn>.*?)-(?P<a>\d+)(?:-(?P<b>\d+))?$")


def _pct(entry: dict[str, Any], metric: str, p: int, name: str, path: str) -> float:
    try:
        v = float(entry[metric][f"{p}-percentile"])
    except (KeyError, TypeError, ValueError):
        raise DataFormatError(f"entry {name!r} has no numeric {metric}.{p}-percentile",
                              path=path) from None
    if not math.isfinite(v) or v < 0:
        raise DataFormatError(f"entry {name!r}: {metric}.{p}-percentile is {v!r}", path=path)
    return v


def load_vswarm_rows(
    path: str | Path,
    *,
    cpu_grid: Sequence[int] = DEFAULT_CPU_GRID,
    memory_grid: Sequence[int] = DEFAULT_MEMORY_GRID,
) -> list[PerfRow]:
    """The performance-table rows the model above derives from `profile.json`."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise DataFormatError(f"cannot read vSwarm profile ({exc.strerror})", path=where) from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"not JSON ({exc.msg})", path=where, line=exc.lineno) from None
    if not isinstance(data, dict) or not data:
        raise DataFormatError("expected a JSON object of profile entries", path=where)
    rows: list[PerfRow] = []
    for name in sorted(data):
        entry = data[name]
        if not isinstance(entry, dict):
            raise DataFormatError(f"entry {name!r} is not an object", path=where)
        m = _NAME.match(name)
        if m:
            fn, inp = m.group("fn"), name[len(m.group("fn")) + 1:]
            features = {"param": float(m.group("a"))}
            if m.group("b") is not None:
                features["param2"] = float(m.group("b"))
        else:
            fn, inp, features = name, "default", {"param": 0.0}
        demand = max(_pct(entry, "cpu", 50, name, where), 1.0)
        peak = _pct(entry, "memory", 100, name, where)
        if peak > max(memory_grid):
            continue  # fails at every size of this grid: no SLO can be derived for it
        durations = [_pct(entry, "duration", p, name, where) for p in _PERCENTILES]
        for cpu in cpu_grid:
            factor = max(1.0, demand / cpu)
            used = min(demand, float(cpu))
            for mem in memory_grid:
                ok = mem >= peak
                for d in durations:
                    rows.append(PerfRow(fn, inp, cpu, mem, round(d * factor, 3), ok, features,
                                        peak_memory_mib=round(peak, 1),
                                        cpu_used_millicores=round(used, 1)))
    return rows


def convert_vswarm(src: str | Path, out: str | Path, **grid: Sequence[int]) -> int:
    """Write the converted table to `out` (DESIGN 4.4 CSV); returns the number of rows."""
    from shabari.data.perf import write_perf_table

    rows = load_vswarm_rows(src, **grid)
    write_perf_table(rows, out)
    return len(rows)
