"""Performance tables (DESIGN 4.4): what a function does at each size, for each input.

A performance table is the measured ground truth the simulator replays and the gateway uses to
resolve slowdown SLOs. `shabari profile` writes one per bundled function with
`write_perf_table`; the vSwarm converter (`shabari.data.vswarm`) produces one from the shared
profile. The CSV is long format, one row per measured sample:

    function,input,cpu_millicores,memory_mib,latency_ms,ok[,gpu][,cold_start_ms]
        [,peak_memory_mib][,cpu_used_millicores][,feature.<name> ...]

Several rows of the same (function, input, size) are samples of its latency distribution;
`ok=0` means the run failed at that size (OOM, timeout). The sizes present for a function are
its grid. Loading validates every cell and reports the first bad one with its line and column
(`DataFormatError`), so a hand-edited table fails with a message the user can act on.

Lookups the simulator does per invocation (`sample_latency`, `median_latency_ms`) are
precomputed dictionary/tuple accesses: no per-call allocation.
"""

from __future__ import annotations

import csv
import math
import random
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from shabari.core import SLO, DataFormatError, FunctionName, FunctionSpec, Size, SpecError

__all__ = [
    "REQUIRED_COLUMNS",
    "PerfRow",
    "PerfTable",
    "load_perf_table",
    "load_perf_tables",
    "read_perf_rows",
    "write_perf_table",
]

REQUIRED_COLUMNS = ("function", "input", "cpu_millicores", "memory_mib", "latency_ms", "ok")
OPTIONAL_COLUMNS = ("gpu", "cold_start_ms", "peak_memory_mib", "cpu_used_millicores")
FEATURE_PREFIX = "feature."

_EMPTY_FEATURES: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PerfRow:
    """One measured sample: `function` on `input` at (cpu, memory, gpu) took `latency_ms`."""

    function: str
    input: str
    cpu_millicores: int
    memory_mib: int
    latency_ms: float
    ok: bool
    features: Mapping[str, float] = field(default_factory=lambda: _EMPTY_FEATURES)
    gpu: int = 0
    cold_start_ms: float | None = None
    peak_memory_mib: float | None = None
    cpu_used_millicores: float | None = None

    @property
    def size(self) -> Size:
        return Size(self.cpu_millicores, self.memory_mib, self.gpu)


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


def write_perf_table(rows: Iterable[PerfRow], path: str | Path) -> None:
    """Write `rows` as a DESIGN 4.4 CSV (optional columns only when some row has them)."""
    rows = list(rows)
    feature_names = sorted({k for r in rows for k in r.features})
    optional = [
        c
        for c in OPTIONAL_COLUMNS
        if any((r.gpu if c == "gpu" else getattr(r, c)) not in (None, 0) for r in rows)
    ]
    header = [*REQUIRED_COLUMNS, *optional, *(FEATURE_PREFIX + f for f in feature_names)]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            line = [
                r.function,
                r.input,
                str(r.cpu_millicores),
                str(r.memory_mib),
                _fmt(r.latency_ms),
                "1" if r.ok else "0",
            ]
            for c in optional:
                line.append(str(r.gpu) if c == "gpu" else _fmt(getattr(r, c)))
            line.extend(_fmt(r.features.get(f)) for f in feature_names)
            w.writerow(line)


# --------------------------------------------------------------------------------------------
# loading


def _parse_int(text: str, path: str, line: int, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(f"expected an integer, got {text!r}", path=path, line=line,
                              column=column) from None
    if not value.is_integer():
        raise DataFormatError(f"expected an integer, got {text!r}", path=path, line=line,
                              column=column)
    return int(value)


def _parse_float(text: str, path: str, line: int, column: str, *, minimum: float = 0.0) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(f"expected a number, got {text!r}", path=path, line=line,
                              column=column) from None
    if not math.isfinite(value) or value < minimum:
        raise DataFormatError(f"expected a finite number >= {minimum:g}, got {text!r}",
                              path=path, line=line, column=column)
    return value


def _parse_bool(text: str, path: str, line: int, column: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes"):
        return True
    if t in ("0", "false", "no"):
        return False
    raise DataFormatError(f"expected 0 or 1, got {text!r}", path=path, line=line, column=column)


def read_perf_rows(path: str | Path) -> list[PerfRow]:
    """The validated rows of one table file (`DataFormatError` with line and column)."""
    path = Path(path)
    where = str(path)
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise DataFormatError(f"cannot read performance table ({exc.strerror})",
                              path=where) from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DataFormatError("empty file: expected a header", path=where, line=1) from None
        except csv.Error as exc:
            raise DataFormatError(f"not a CSV file ({exc})", path=where, line=1) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataFormatError(
                f"missing column(s) {', '.join(missing)}; a performance table needs "
                f"{','.join(REQUIRED_COLUMNS)} (DESIGN 4.4)", path=where, line=1)
        known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
        for h in header:
            if h not in known and not (h.startswith(FEATURE_PREFIX) and len(h) > 8):
                raise DataFormatError(
                    f"unknown column {h!r} (feature columns are named feature.<name>)",
                    path=where, line=1, column=h)
        idx = {h: i for i, h in enumerate(header)}
        feats = [(h[len(FEATURE_PREFIX):], i) for h, i in idx.items()
                 if h.startswith(FEATURE_PREFIX)]
        rows: list[PerfRow] = []
        lineno = 1
        try:
            for cells in reader:
                lineno += 1
                if not cells or all(not c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise DataFormatError(
                        f"expected {len(header)} cells, got {len(cells)}", path=where,
                        line=lineno)

                def cell(name: str, cells: list[str] = cells) -> str:
                    return cells[idx[name]].strip()

                fn = cell("function")
                inp = cell("input")
                if not fn:
                    raise DataFormatError("empty function name", path=where, line=lineno,
                                          column="function")
                if not inp:
                    raise DataFormatError("empty input name", path=where, line=lineno,
                                          column="input")
                cpu = _parse_int(cell("cpu_millicores"), where, lineno, "cpu_millicores")
                mem = _parse_int(cell("memory_mib"), where, lineno, "memory_mib")
                if cpu <= 0:
                    raise DataFormatError(f"must be positive, got {cpu}", path=where,
                                          line=lineno, column="cpu_millicores")
                if mem <= 0:
                    raise DataFormatError(f"must be positive, got {mem}", path=where,
                                          line=lineno, column="memory_mib")
                lat = _parse_float(cell("latency_ms"), where, lineno, "latency_ms")
                ok = _parse_bool(cell("ok"), where, lineno, "ok")
                gpu = 0
                if "gpu" in idx and cell("gpu"):
                    gpu = _parse_int(cell("gpu"), where, lineno, "gpu")
                    if gpu < 0:
                        raise DataFormatError(f"must be >= 0, got {gpu}", path=where,
                                              line=lineno, column="gpu")
                opt: dict[str, float | None] = {}
                for c in ("cold_start_ms", "peak_memory_mib", "cpu_used_millicores"):
                    opt[c] = (_parse_float(cell(c), where, lineno, c)
                              if c in idx and cell(c) else None)
                features: dict[str, float] = {}
                for name, i in feats:
                    text = cells[i].strip()
                    if text:
                        features[name] = _parse_float(text, where, lineno,
                                                      FEATURE_PREFIX + name, minimum=-math.inf)
                rows.append(PerfRow(fn, inp, cpu, mem, lat, ok,
                                    MappingProxyType(features) if features else _EMPTY_FEATURES,
                                    gpu, opt["cold_start_ms"], opt["peak_memory_mib"],
                                    opt["cpu_used_millicores"]))
        except csv.Error as exc:
            raise DataFormatError(f"malformed CSV ({exc})", path=where, line=lineno) from None
    if not rows:
        raise DataFormatError("no data rows", path=where, line=2)
    return rows


def load_perf_table(path: str | Path) -> PerfTable:
    """Load and validate one table (`DataFormatError` with line and column on bad cells)."""
    return PerfTable(read_perf_rows(Path(path)), source=str(path))


def load_perf_tables(paths: Iterable[str | Path]) -> PerfTable:
    """Several tables as one (e.g. one per bundled function); a function may appear once."""
    rows: list[PerfRow] = []
    sources: list[str] = []
    owner: dict[str, str] = {}
    for p in paths:
        part = read_perf_rows(Path(p))
        for fn in {r.function for r in part}:
            if fn in owner:
                raise DataFormatError(f"function {fn!r} is also defined in {owner[fn]}",
                                      path=str(p))
            owner[fn] = str(p)
        rows.extend(part)
        sources.append(str(p))
    if not sources:
        raise DataFormatError("no performance table given")
    return PerfTable(rows, source=",".join(sources))


# --------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True, slots=True)
class _Cell:
    """All samples of one (function, input, size)."""

    latencies: tuple[float, ...]
    oks: tuple[bool, ...]
    #: median over samples, failures counting as +inf (so a size that fails half the time
    #: is never "best")
    median_ms: float
    ok_fraction: float
    peak_memory_mib: float | None
    cpu_used_millicores: float | None


def _median_with_failures(lat: list[float], ok: list[bool]) -> float:
    vals = sorted(v if o else math.inf for v, o in zip(lat, ok, strict=True))
    n = len(vals)
    mid = n // 2
    if n % 2:
        return vals[mid]
    a, b = vals[mid - 1], vals[mid]
    return math.inf if math.isinf(a) or math.isinf(b) else (a + b) / 2.0


class PerfTable:
    """Per function: its size grid, its inputs (with features) and samples per (input, size)."""

    def __init__(self, rows: Iterable[PerfRow], *, source: str = "") -> None:
        self.source = source
        grouped: dict[str, dict[str, dict[Size, list[PerfRow]]]] = {}
        features: dict[str, dict[str, dict[str, float]]] = {}
        cold: dict[str, list[float]] = {}
        for r in rows:
            try:
                size = r.size
            except SpecError as exc:
                raise DataFormatError(f"invalid size for {r.function}/{r.input}: {exc}",
                                      path=source) from None
            grouped.setdefault(r.function, {}).setdefault(r.input, {}).setdefault(
                size, []).append(r)
            features.setdefault(r.function, {}).setdefault(r.input, {}).update(r.features)
            if r.cold_start_ms is not None:
                cold.setdefault(r.function, []).append(r.cold_start_ms)
        if not grouped:
            raise DataFormatError("performance table has no rows", path=source)
        self._sizes: dict[str, tuple[Size, ...]] = {}
        self._inputs: dict[str, tuple[str, ...]] = {}
        self._cells: dict[tuple[str, str, Size], _Cell] = {}
        self._features: dict[tuple[str, str], Mapping[str, float]] = {}
        self._best: dict[tuple[str, str], float] = {}
        self._cold: dict[str, float] = {fn: statistics.median(v) for fn, v in cold.items()}
        for fn, by_input in grouped.items():
            grid = sorted({s for by_size in by_input.values() for s in by_size})
            self._sizes[fn] = tuple(grid)
            self._inputs[fn] = tuple(sorted(by_input))
            for inp, by_size in by_input.items():
                missing = [s for s in grid if s not in by_size]
                if missing:
                    raise DataFormatError(
                        f"function {fn!r} input {inp!r} has no sample at size "
                        f"{missing[0]} (every input needs every size of the grid)",
                        path=source)
                best = math.inf
                for size, samples in by_size.items():
                    lat = [s.latency_ms for s in samples]
                    ok = [s.ok for s in samples]
                    peaks = [s.peak_memory_mib for s in samples if s.peak_memory_mib is not None]
                    used = [s.cpu_used_millicores for s in samples
                            if s.cpu_used_millicores is not None]
                    cell = _Cell(tuple(lat), tuple(ok), _median_with_failures(lat, ok),
                                 sum(ok) / len(ok), max(peaks) if peaks else None,
                                 statistics.median(used) if used else None)
                    self._cells[(fn, inp, size)] = cell
                    best = min(best, cell.median_ms)
                if math.isinf(best):
                    raise DataFormatError(
                        f"function {fn!r} input {inp!r} fails at every size: no SLO can be "
                        "derived for it", path=source)
                self._best[(fn, inp)] = best
                self._features[(fn, inp)] = MappingProxyType(dict(features[fn][inp]))
        # log-feature vectors for nearest-input lookups
        self._logvec: dict[str, list[tuple[str, dict[str, float]]]] = {
            fn: [(inp, {k: _logf(v) for k, v in self._features[(fn, inp)].items()})
                 for inp in self._inputs[fn]]
            for fn in self._sizes
        }

    # ---- structure
    def functions(self) -> list[str]:
        return sorted(self._sizes)

    def _check(self, function: str) -> None:
        if function not in self._sizes:
            raise KeyError(f"function {function!r} is not in the performance table "
                           f"({self.source}); known: {', '.join(self.functions())}")

    def sizes(self, function: str) -> tuple[Size, ...]:
        self._check(function)
        return self._sizes[function]

    def inputs(self, function: str) -> tuple[str, ...]:
        self._check(function)
        return self._inputs[function]

    def features(self, function: str, input: str) -> Mapping[str, float]:
        return self._features[(function, input)]

    def spec(self, function: str, slo: SLO, *, name: str | None = None,
             default_size: Size | None = None) -> FunctionSpec:
        """A FunctionSpec whose grid is exactly this function's sizes (DESIGN 4.4)."""
        return FunctionSpec(name=FunctionName(name or function), slo=slo,
                            sizes=self.sizes(function),
                            gpu_capable=any(s.gpu for s in self.sizes(function)),
                            default_size=default_size,
                            memory_floor_mib=min(64, *(s.memory_mib
                                                       for s in self.sizes(function))))

    # ---- latency
    def best_median_latency_ms(self, function: str, input: str) -> float:
        """The best median latency of `input` over the grid: the base of slowdown SLOs."""
        return self._best[(function, input)]

    def median_latency_ms(self, function: str, input: str, size: Size) -> float:
        """Median latency at `size` (+inf when the size fails at least half the time)."""
        return self._cells[(function, input, size)].median_ms

    def ok_fraction(self, function: str, input: str, size: Size) -> float:
        return self._cells[(function, input, size)].ok_fraction

    def sample_latency(self, function: str, input: str, size: Size,
                       rng: random.Random) -> tuple[float, bool]:
        """One sample of the latency distribution at `size`: (latency_ms, ok)."""
        return self.latency_at(function, input, size, rng.random())

    def latency_at(self, function: str, input: str, size: Size, u: float) -> tuple[float, bool]:
        """The sample at quantile position `u` in [0, 1) of the measured samples (in file
        order): lets a driver reuse one random number per invocation across policies."""
        cell = self._cells[(function, input, size)]
        n = len(cell.latencies)
        i = 0 if n == 1 else min(int(u * n), n - 1)
        return cell.latencies[i], cell.oks[i]

    def has_size(self, function: str, input: str, size: Size) -> bool:
        return (function, input, size) in self._cells

    def peak_memory_mib(self, function: str, input: str, size: Size) -> float | None:
        return self._cells[(function, input, size)].peak_memory_mib

    def cpu_used_millicores(self, function: str, input: str, size: Size) -> float | None:
        return self._cells[(function, input, size)].cpu_used_millicores

    def cold_start_ms(self, function: str) -> float | None:
        """Median measured cold start of `function`, or None when the table has none."""
        return self._cold.get(function)

    def estimate_best_latency_ms(self, function: str,
                                 features: Mapping[str, float]) -> float | None:
        """Best median latency of the nearest measured input in log-feature space.

        Distance is Euclidean over the features both sides have, on log1p(|x|) with the sign
        kept; ties go to the first input in name order. None when the function is unknown or
        no measured input shares a feature with `features`.
        """
        candidates = self._logvec.get(function)
        if not candidates:
            return None
        q = {k: _logf(v) for k, v in features.items()}
        best_inp: str | None = None
        best_d = math.inf
        for inp, vec in candidates:
            common = q.keys() & vec.keys()
            if not common:
                continue
            d = sum((q[k] - vec[k]) ** 2 for k in common) / len(common)
            if d < best_d:
                best_d, best_inp = d, inp
        return None if best_inp is None else self._best[(function, best_inp)]


def _logf(x: float) -> float:
    return math.copysign(math.log1p(abs(x)), x)
