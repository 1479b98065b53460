"""Table (CSV/TSV) featurizer: rows and columns from a bounded sample.

Data-processing functions (aggregations, joins, model scoring) scale with rows x columns.
Columns come from parsing the first record; rows are exact for bodies within `sample_bytes`
and otherwise estimated as body bytes / mean line length of the sample.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping

from featurizers._util import Features, NotRecognized, count_lines, decode_text, sample_bytes

DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
_PROBE_LINES = 20
_PROBE_CHARS = 16384


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def delimiter(lines: list[str]) -> str | None:
    """The candidate delimiter that splits every line (quotes respected) into the same number
    of fields, more than one; the one giving the most fields wins."""
    best: tuple[int, str] | None = None
    for d in DELIMITERS:
        if not any(d in line for line in lines):
            continue
        widths = {len(row) for row in csv.reader(lines, delimiter=d)}
        if len(widths) == 1 and (n := widths.pop()) > 1 and (best is None or n > best[0]):
            best = (n, d)
    return best[1] if best else None


def probe_lines(text: str, complete: bool) -> list[str]:
    """Up to 20 complete, non-empty lines from the start of a decoded sample; the last line
    is dropped unless `complete` says the sample is the whole body (it may be cut)."""
    truncated = len(text) > _PROBE_CHARS or not complete
    lines = text[:_PROBE_CHARS].split("\n", _PROBE_LINES + 1)
    if len(lines) > _PROBE_LINES + 1 or (truncated and len(lines) > 1):
        lines = lines[:-1]
    return [ln.rstrip("\r") for ln in lines[:_PROBE_LINES] if ln.strip()]


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """Table features: rows (data records), columns, cells, header, delimiter.<name>."""
    limit = sample_bytes(options)
    text = decode_text(body[:limit])
    if text is None:
        raise NotRecognized("table: not UTF-8 text")
    lines = probe_lines(text, complete=len(body) <= limit)
    if not lines:
        raise NotRecognized("table: empty")
    delim = delimiter(lines) or ","
    records = list(csv.reader(io.StringIO("\n".join(lines[:2])), delimiter=delim))
    columns = len(records[0]) if records else 0
    header = 0.0
    if len(records) >= 2:
        first, second = records[0], records[1]
        if any(not _is_number(a) and _is_number(b) for a, b in zip(first, second, strict=False)):
            header = 1.0
    total, estimated = count_lines(body, limit)
    rows = max(total - header, 0.0)
    return {"rows": rows, "columns": float(columns), "cells": rows * columns,
            "header": header, "estimated": float(estimated),
            f"delimiter.{DELIMITERS[delim]}": 1.0}


def looks_like_table(text: str, complete: bool) -> bool:
    """Heuristic for `auto`: at least two lines with a consistent delimiter."""
    lines = probe_lines(text, complete)
    return len(lines) >= 2 and delimiter(lines) is not None
