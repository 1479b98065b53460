"""Array featurizer: shape, element count and dtype from an NPY header or a numeric text matrix.

Numerical functions (matrix multiply, inference on a tensor, FFT) scale with the array's shape
and element size, which an NPY file states in its first few hundred bytes: a Python-literal dict
whose `descr`/`shape`/`fortran_order` are read with regular expressions in the common case and
with `ast.literal_eval` (never `eval`, never unpickling) for structured dtypes. Whitespace or
comma separated numeric text is also accepted: rows are counted (or estimated) and columns
taken from the first row.
"""

from __future__ import annotations

import ast
import math
import re
import struct
from collections.abc import Mapping

from featurizers._util import (
    WHITESPACE,
    Features,
    NotRecognized,
    count_lines,
    count_words,
    decode_text,
    sample_bytes,
)

MAGIC = b"\x93NUMPY"
#: NumPy dtype kinds used in the `dtype.<kind>` one-hot features.
DTYPE_KINDS = {"b": "bool", "i": "int", "u": "uint", "f": "float", "c": "complex",
               "U": "unicode", "S": "bytes", "V": "void", "O": "object", "M": "datetime",
               "m": "timedelta"}
MAX_DIMS = 8  # dim0..dim7 are reported
MAX_NDIM = 64  # numpy's own limit (NPY_MAXDIMS)
_MAX_HEADER = 65536
_MAX_LITERAL_HEADER = 10000  # numpy.load's default max_header_size
_SHAPE = re.compile(r"['\"]shape['\"]\s*:\s*\(([\d\s,]*)\)")
_SIMPLE_DESCR = re.compile(r"['\"]descr['\"]\s*:\s*['\"]([^'\"]*)['\"]")
_FORTRAN = re.compile(r"['\"]fortran_order['\"]\s*:\s*True")
_CHECK_TOKENS = 64  # numbers per row that are parsed to confirm a numeric matrix
_TYPESTR = re.compile(r"^[<>|=]?([a-zA-Z])(\d*)")
_SPLIT = re.compile(r"[,\s;]+")
_SEPARATORS = WHITESPACE.copy()
_SEPARATORS[[ord(","), ord(";")]] = True


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _itemsize(descr: object) -> tuple[str, int]:
    """(dtype kind, itemsize in bytes) of an NPY `descr` (a typestr or a structured list)."""
    if isinstance(descr, str):
        m = _TYPESTR.match(descr)
        if m is None:
            raise NotRecognized(f"NPY: unknown descr {descr!r}")
        kind, size = m.group(1), int(m.group(2) or 0)
        if kind == "U":
            size *= 4
        elif kind == "O":
            size = 8
        return kind, size
    if isinstance(descr, list):
        total = 0
        for field in descr[:256]:
            if isinstance(field, tuple) and len(field) >= 2:
                _, sub = _itemsize(field[1])
                count = 1
                if len(field) >= 3 and isinstance(field[2], tuple):
                    count = math.prod(int(d) for d in field[2])
                total += sub * count
        return "V", total
    raise NotRecognized("NPY: descr is neither a string nor a field list")


def _shape_features(shape: tuple[int, ...], kind: str, itemsize: int) -> Features:
    feats: Features = {"ndim": float(len(shape))}
    for i, d in enumerate(shape[:MAX_DIMS]):
        feats[f"dim{i}"] = float(d)
    elements = float(math.prod(shape))
    feats["elements"] = elements
    feats["itemsize"] = float(itemsize)
    feats["nbytes"] = elements * itemsize
    feats[f"dtype.{DTYPE_KINDS.get(kind, 'other')}"] = 1.0
    return feats


def _npy(body: bytes) -> Features:
    major = body[6]
    if major == 1:
        (hlen,) = struct.unpack_from("<H", body, 8)
        hstart = 10
    elif major in (2, 3):
        (hlen,) = struct.unpack_from("<I", body, 8)
        hstart = 12
    else:
        raise NotRecognized(f"NPY: unsupported version {major}")
    if hlen > _MAX_HEADER or hstart + hlen > len(body):
        raise NotRecognized("NPY: header length out of range")
    encoding = "utf-8" if major == 3 else "latin-1"
    text = body[hstart : hstart + hlen].decode(encoding)
    shape_m = _SHAPE.search(text)
    descr_m = _SIMPLE_DESCR.search(text)
    if shape_m is not None and descr_m is not None:
        # The common case, parsed without building Python literals: a typestr and a shape.
        dims = [d for d in shape_m.group(1).replace(" ", "").split(",") if d]
        if len(dims) > MAX_NDIM:
            raise NotRecognized(f"NPY: more than numpy's {MAX_NDIM} dimensions")
        shape = tuple(int(d) for d in dims)
        header: dict[object, object] = {"descr": descr_m.group(1),
                                        "fortran_order": _FORTRAN.search(text) is not None}
    else:
        # Structured dtypes: a literal dict (never eval), within numpy's own header limit.
        if hlen > _MAX_LITERAL_HEADER:
            raise NotRecognized("NPY: structured header too long to parse cheaply")
        parsed = ast.literal_eval(text)
        if not isinstance(parsed, dict):
            raise NotRecognized("NPY: header is not a dict")
        header = parsed
        raw_shape = header.get("shape")
        if not isinstance(raw_shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw_shape
        ):
            raise NotRecognized("NPY: invalid shape")
        shape = raw_shape
    if len(shape) > MAX_NDIM:
        raise NotRecognized(f"NPY: more than numpy's {MAX_NDIM} dimensions")
    kind, itemsize = _itemsize(header.get("descr"))
    feats = _shape_features(shape, kind, itemsize)
    feats["fortran_order"] = float(bool(header.get("fortran_order")))
    feats["format.npy"] = 1.0
    return feats


def _text_matrix(body: bytes, options: Mapping[str, object]) -> Features:
    limit = sample_bytes(options)
    text = decode_text(body[:limit])
    if text is None:
        raise NotRecognized("array: neither NPY nor text")
    lines = [ln for ln in text.split("\n")[:50] if ln.strip() and not ln.lstrip().startswith("#")]
    if len(body) > limit and len(lines) > 1:
        lines = lines[:-1]  # the last sampled line may be cut
    if not lines:
        raise NotRecognized("array: empty text")
    widths = set()
    for ln in lines:
        head = [t for t in _SPLIT.split(ln.strip(), maxsplit=_CHECK_TOKENS)[:_CHECK_TOKENS] if t]
        for t in head:
            float(t)  # ValueError -> not a numeric matrix
        widths.add(count_words(ln.encode(), _SEPARATORS))
    if len(widths) != 1:
        raise NotRecognized("array: rows have different lengths")
    rows, _ = count_lines(body, limit)
    cols = widths.pop()
    feats = _shape_features((round(rows), cols), "f", 8)
    feats["format.text"] = 1.0
    return feats


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """Array features: ndim, dim0..dim7, elements, itemsize, nbytes, dtype.<kind>, format.*."""
    if sniff(body):
        return _npy(body)
    return _text_matrix(body, options)
