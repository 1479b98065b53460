"""Invocation traces: Azure Functions 2019 and 2021, and the project's own invocation CSV.

The simulator and the demo replay a `Trace`: arrivals sorted by time, each naming its
function, plus per-function statistics where the source has them (durations and memory of the
Azure 2019 trace). Three formats:

* Azure Functions 2019 (Shahrad et al., ATC'20): `*_inv.csv` holds per-minute invocation
  counts (`HashOwner,HashApp,HashFunction[,Trigger],1..1440` in the official files,
  `minute_1..minute_1440` in the In-Vitro samples; any column order). Inside a minute the arrivals of a function are a seeded Poisson process: given the
  count, its points are uniform in the minute. The `*_run.csv` (duration percentiles, ms) and
  `*_mem.csv` (allocated memory percentiles per app, MB) siblings are joined when present and
  each arrival draws a duration from its function's percentile curve.
* Azure Functions 2021 (`app,func,end_timestamp,duration`, seconds): one row per invocation;
  the arrival is `end_timestamp - duration`, shifted so the trace starts at 0.
* The project's invocation CSV: `time_s,function[,duration_ms,memory_mib]`.

Every malformed cell raises `DataFormatError` with the file, line and column.
"""

from __future__ import annotations

import bisect
import csv
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TextIO

import numpy as np

from shabari.core import DataFormatError

__all__ = [
    "Arrival",
    "FunctionStats",
    "Trace",
    "load_azure2019",
    "load_azure2021",
    "load_invocations",
    "load_trace",
    "write_invocations",
]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One invocation of `function` at `time_s` seconds from the start of the trace."""

    time_s: float
    function: str
    duration_ms: float | None = None
    memory_mib: float | None = None


@dataclass(frozen=True, slots=True)
class FunctionStats:
    """What the trace says about one function beyond its arrivals (Azure 2019 run/mem)."""

    #: (percentile, duration_ms) points, ascending
    duration_percentiles: tuple[tuple[float, float], ...] = ()
    #: (percentile, memory_mib) points of the function's app, ascending
    memory_percentiles: tuple[tuple[float, float], ...] = ()

    @property
    def median_duration_ms(self) -> float | None:
        return _interp(self.duration_percentiles, 50.0) if self.duration_percentiles else None

    @property
    def median_memory_mib(self) -> float | None:
        return _interp(self.memory_percentiles, 50.0) if self.memory_percentiles else None


@dataclass(frozen=True, slots=True)
class Trace:
    name: str
    arrivals: tuple[Arrival, ...]
    stats: Mapping[str, FunctionStats] = field(default_factory=lambda: MappingProxyType({}))

    def functions(self) -> list[str]:
        """Functions in order of first arrival (stable: the simulator maps them in this order)."""
        seen: dict[str, None] = {}
        for a in self.arrivals:
            seen.setdefault(a.function, None)
        for fn in self.stats:
            seen.setdefault(fn, None)
        return list(seen)

    @property
    def duration_s(self) -> float:
        return self.arrivals[-1].time_s if self.arrivals else 0.0

    def __len__(self) -> int:
        return len(self.arrivals)

    def head(self, n: int) -> Trace:
        """The first `n` arrivals (benchmarks scale traces with it)."""
        return Trace(f"{self.name}[:{n}]", self.arrivals[:n], self.stats)


def _interp(points: Sequence[tuple[float, float]], q: float) -> float:
    xs = [p for p, _ in points]
    i = bisect.bisect_left(xs, q)
    if i <= 0:
        return points[0][1]
    if i >= len(points):
        return points[-1][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (q - x0) / (x1 - x0)


def _num(text: str, path: str, line: int, column: str, *, integer: bool = False) -> float:
    try:
        v = float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise DataFormatError(f"expected {kind}, got {text!r}", path=path, line=line,
                              column=column) from None
    if not math.isfinite(v) or v < 0 or (integer and not v.is_integer()):
        kind = "a non-negative integer" if integer else "a finite non-negative number"
        raise DataFormatError(f"expected {kind}, got {text!r}", path=path, line=line,
                              column=column)
    return v


def _open_csv(path: Path) -> tuple[list[str], Iterable[list[str]], TextIO]:
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise DataFormatError(f"cannot read trace ({exc.strerror})", path=str(path)) from None
    reader = csv.reader(fh)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        fh.close()
        raise DataFormatError("empty file: expected a header", path=str(path), line=1) from None
    return header, reader, fh


def _records(rows: Iterable[list[str]], width: int, where: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank data row; a row of another width is an error."""
    for lineno, cells in enumerate(rows, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != width:
            raise DataFormatError(f"expected {width} cells, got {len(cells)}",
                                  path=where, line=lineno)
        yield lineno, cells


def _limit(minutes: float | None) -> float:
    if minutes is None:
        return math.inf
    if minutes <= 0:
        raise DataFormatError(f"--minutes must be positive, got {minutes}")
    return minutes * 60.0


# --------------------------------------------------------------------------------------------
# Azure 2019

_MINUTE = re.compile(r"^(?:minute_)?(\d+)$")  # official files: 1..1440; In-Vitro: minute_N


def _sibling(inv: Path, kind: str) -> Path | None:
    name = inv.name
    if "_inv" in name:
        cand = inv.with_name(name.replace("_inv", f"_{kind}"))
        if cand.exists():
            return cand
    m = re.search(r"invocations_per_function_md\.anon\.(d\d+)\.csv$", name)
    if m:
        target = ("function_durations_percentiles.anon." if kind == "run"
                  else "app_memory_percentiles.anon.") + m.group(1) + ".csv"
        cand = inv.with_name(target)
        if cand.exists():
            return cand
    return None


def _read_percentiles(
    path: Path, key: str, pattern: str, what: str, scale: float = 1.0
) -> dict[str, tuple[tuple[float, float], ...]]:
    """Rows of `key` -> sorted (percentile, value x scale) from the columns matching `pattern`
    (whose first group is the percentile): the shape shared by the run and memory files."""
    header, rows, fh = _open_csv(path)
    where = str(path)
    try:
        if key not in header:
            raise DataFormatError(f"missing column {key}", path=where, line=1)
        pcols = [(float(m.group(1)), i) for i, h in enumerate(header)
                 if (m := re.match(pattern, h))]
        if not pcols:
            raise DataFormatError(f"no {what} columns", path=where, line=1)
        ki = header.index(key)
        out: dict[str, tuple[tuple[float, float], ...]] = {}
        for lineno, cells in _records(rows, len(header), where):
            out[cells[ki]] = tuple(sorted(
                (p, _num(cells[i], where, lineno, header[i]) * scale) for p, i in pcols))
        return out
    finally:
        fh.close()


def _read_run(path: Path) -> dict[str, tuple[tuple[float, float], ...]]:
    """Duration percentiles (ms) per HashFunction."""
    return _read_percentiles(path, "HashFunction", r"^percentile_Average_(\d+)$",
                             "percentile_Average_<p>")


def _read_mem(path: Path) -> dict[str, tuple[tuple[float, float], ...]]:
    """Allocated-memory percentiles per HashApp, converted from MB to MiB."""
    return _read_percentiles(path, "HashApp", r"^AverageAllocatedMb_pct(\d+)$",
                             "AverageAllocatedMb_pct<p>", scale=1e6 / 2**20)


def load_azure2019(inv_csv_path: str | Path, *, minutes: float | None = None,
                   seed: int = 1) -> Trace:
    """Load an Azure Functions 2019 invocation-count file (with or without `Trigger`).

    Arrivals inside each minute are a seeded Poisson process (uniform given the count);
    the same seed gives the same trace. Only the first `minutes` minutes are kept.
    """
    path = Path(inv_csv_path)
    where = str(path)
    limit = _limit(minutes)
    header, rows, fh = _open_csv(path)
    try:
        if "HashFunction" not in header:
            raise DataFormatError(
                "missing column HashFunction: is this an Azure 2019 *_inv.csv file?",
                path=where, line=1)
        fi = header.index("HashFunction")
        ai = header.index("HashApp") if "HashApp" in header else None
        minute_cols = [(int(m.group(1)) - 1, i) for i, h in enumerate(header)
                       if (m := _MINUTE.match(h))]
        if not minute_cols:
            raise DataFormatError("no per-minute columns (1..1440 or minute_1..)", path=where,
                                  line=1)
        if limit < math.inf:
            minute_cols = [(m, i) for m, i in minute_cols if m * 60.0 < limit]
        counts_rows: list[tuple[str, str | None, np.ndarray]] = []
        seen: set[str] = set()
        for lineno, cells in _records(rows, len(header), where):
            fn = cells[fi].strip()
            if not fn:
                raise DataFormatError("empty function hash", path=where, line=lineno,
                                      column="HashFunction")
            if fn in seen:
                # the official trace has a few duplicate hashes across triggers
                fn = f"{fn}#{lineno}"
            seen.add(fn)
            counts = np.empty(len(minute_cols), dtype=np.int64)
            for k, (_m, i) in enumerate(minute_cols):
                text = cells[i]
                if text.isdigit():
                    counts[k] = int(text)
                else:
                    counts[k] = int(_num(text, where, lineno, header[i], integer=True))
            counts_rows.append((fn, cells[ai].strip() if ai is not None else None, counts))
    except csv.Error as exc:
        raise DataFormatError(f"malformed CSV ({exc})", path=where) from None
    finally:
        fh.close()
    run_path, mem_path = _sibling(path, "run"), _sibling(path, "mem")
    durations = _read_run(run_path) if run_path else {}
    memory = _read_mem(mem_path) if mem_path else {}
    rng = np.random.default_rng(seed)
    minute_starts = np.array([m * 60.0 for m, _ in minute_cols])
    times_parts: list[np.ndarray] = []
    fn_parts: list[np.ndarray] = []
    dur_parts: list[np.ndarray] = []
    stats: dict[str, FunctionStats] = {}
    names: list[str] = []
    for fn, app, counts in counts_rows:
        base = fn.split("#", 1)[0]
        dp = durations.get(base, ())
        mp = memory.get(app, ()) if app is not None else ()
        stats[fn] = FunctionStats(dp, mp)
        total = int(counts.sum())
        if total == 0:
            continue
        names.append(fn)
        starts = np.repeat(minute_starts, counts)
        t = starts + rng.random(total) * 60.0
        times_parts.append(t)
        fn_parts.append(np.full(total, len(names) - 1, dtype=np.int32))
        if dp:
            qs = rng.random(total) * 100.0
            xs = np.array([p for p, _ in dp])
            ys = np.array([v for _, v in dp])
            dur_parts.append(np.interp(qs, xs, ys))
        else:
            dur_parts.append(np.full(total, np.nan))
    if not times_parts:
        return Trace(path.name, (), MappingProxyType(stats))
    times = np.concatenate(times_parts)
    fidx = np.concatenate(fn_parts)
    durs = np.concatenate(dur_parts)
    keep = times < limit
    times, fidx, durs = times[keep], fidx[keep], durs[keep]
    order = np.argsort(times, kind="stable")
    mem_med = [stats[n].median_memory_mib for n in names]
    arrivals = tuple(
        Arrival(float(t), names[i], None if math.isnan(d) else float(d), mem_med[i])
        for t, i, d in zip(times[order].tolist(), fidx[order].tolist(), durs[order].tolist(),
                           strict=True)
    )
    return Trace(path.name, arrivals, MappingProxyType(stats))


# --------------------------------------------------------------------------------------------
# Azure 2021 and the project's own CSV


def load_azure2021(path: str | Path, *, minutes: float | None = None) -> Trace:
    """Load the Azure Functions 2021 per-invocation trace (`app,func,end_timestamp,duration`)."""
    p = Path(path)
    where = str(p)
    limit = _limit(minutes)
    header, rows, fh = _open_csv(p)
    raw: list[tuple[float, str, float]] = []
    try:
        need = ("app", "func", "end_timestamp", "duration")
        missing = [c for c in need if c not in header]
        if missing:
            raise DataFormatError(f"missing column(s) {', '.join(missing)}; expected "
                                  "app,func,end_timestamp,duration", path=where, line=1)
        ia, ifn, ie, idur = (header.index(c) for c in need)
        for lineno, cells in _records(rows, len(header), where):
            end = _num(cells[ie], where, lineno, "end_timestamp")
            dur = _num(cells[idur], where, lineno, "duration")
            raw.append((end - dur, f"{cells[ia].strip()}/{cells[ifn].strip()}", dur * 1000.0))
    except csv.Error as exc:
        raise DataFormatError(f"malformed CSV ({exc})", path=where) from None
    finally:
        fh.close()
    raw.sort(key=lambda r: r[0])
    t0 = raw[0][0] if raw else 0.0
    arrivals = tuple(Arrival(t - t0, fn, d) for t, fn, d in raw if t - t0 < limit)
    return Trace(p.name, arrivals)


def load_invocations(path: str | Path, *, minutes: float | None = None) -> Trace:
    """Load the project's invocation CSV: `time_s,function[,duration_ms,memory_mib]`."""
    p = Path(path)
    where = str(p)
    limit = _limit(minutes)
    header, rows, fh = _open_csv(p)
    out: list[Arrival] = []
    try:
        for c in ("time_s", "function"):
            if c not in header:
                raise DataFormatError(f"missing column {c}; expected time_s,function"
                                      "[,duration_ms,memory_mib]", path=where, line=1)
        it, ifn = header.index("time_s"), header.index("function")
        idur = header.index("duration_ms") if "duration_ms" in header else None
        imem = header.index("memory_mib") if "memory_mib" in header else None
        for lineno, cells in _records(rows, len(header), where):
            t = _num(cells[it], where, lineno, "time_s")
            fn = cells[ifn].strip()
            if not fn:
                raise DataFormatError("empty function name", path=where, line=lineno,
                                      column="function")
            d = (_num(cells[idur], where, lineno, "duration_ms")
                 if idur is not None and cells[idur].strip() else None)
            m = (_num(cells[imem], where, lineno, "memory_mib")
                 if imem is not None and cells[imem].strip() else None)
            if t < limit:
                out.append(Arrival(t, fn, d, m))
    except csv.Error as exc:
        raise DataFormatError(f"malformed CSV ({exc})", path=where) from None
    finally:
        fh.close()
    out.sort(key=lambda a: a.time_s)
    return Trace(p.name, tuple(out))


def write_invocations(trace: Trace | Iterable[Arrival], path: str | Path) -> None:
    """Write arrivals in the project's invocation CSV format."""
    arrivals = trace.arrivals if isinstance(trace, Trace) else tuple(trace)
    has_d = any(a.duration_ms is not None for a in arrivals)
    has_m = any(a.memory_mib is not None for a in arrivals)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time_s", "function", *(["duration_ms"] if has_d else []),
                    *(["memory_mib"] if has_m else [])])
        for a in arrivals:
            row = [f"{a.time_s:.3f}", a.function]
            if has_d:
                row.append("" if a.duration_ms is None else f"{a.duration_ms:.1f}")
            if has_m:
                row.append("" if a.memory_mib is None else f"{a.memory_mib:.0f}")
            w.writerow(row)


def load_trace(path: str | Path, fmt: str = "azure2019", *, minutes: float | None = None,
               seed: int = 1) -> Trace:
    """Dispatch on the CLI's `--trace-format`."""
    if fmt == "azure2019":
        return load_azure2019(path, minutes=minutes, seed=seed)
    if fmt == "azure2021":
        return load_azure2021(path, minutes=minutes)
    if fmt == "invocations":
        return load_invocations(path, minutes=minutes)
    raise DataFormatError(f"unknown trace format {fmt!r} (azure2019, azure2021, invocations)")
