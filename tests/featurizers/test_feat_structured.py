"""Array, table, JSON and text featurizers: exact values for small bodies, bounded estimates for
large ones, and `malformed` for inputs that only look like the kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from feat_media import npy_bytes

from featurizers import extract


class TestNpy:
    @pytest.mark.parametrize("shape", [(), (0,), (5,), (7, 3), (2, 3, 4, 5), (1,) * 10])
    def test_shape_and_elements(self, shape: tuple[int, ...]) -> None:
        f = extract(npy_bytes(np.zeros(shape, dtype=np.float64)))
        assert f["kind.array"] == 1.0 and f["format.npy"] == 1.0 and "malformed" not in f
        assert f["ndim"] == len(shape)
        assert f["elements"] == float(np.prod(shape))
        for i, d in enumerate(shape[:8]):
            assert f[f"dim{i}"] == d
        assert "dim8" not in f
        assert f["itemsize"] == 8.0 and f["dtype.float"] == 1.0

    @pytest.mark.parametrize(("dtype", "kind", "itemsize"), [
        (np.int16, "int", 2), (np.uint8, "uint", 1), (np.complex128, "complex", 16),
        (np.bool_, "bool", 1), ("U5", "unicode", 20), ("S3", "bytes", 3),
        ("datetime64[s]", "datetime", 8),
    ])
    def test_dtype_kinds(self, dtype: str | type, kind: str, itemsize: int) -> None:
        f = extract(npy_bytes(np.zeros((4, 2), dtype=dtype)))
        assert f[f"dtype.{kind}"] == 1.0 and f["itemsize"] == itemsize
        assert f["nbytes"] == 8 * itemsize

    def test_structured_dtype(self) -> None:
        dt = np.dtype([("x", "<f4"), ("y", "<i8", (3,))])
        f = extract(npy_bytes(np.zeros(6, dtype=dt)))
        assert f["dtype.void"] == 1.0 and f["itemsize"] == dt.itemsize and f["dim0"] == 6

    @pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
    def test_header_versions(self, version: tuple[int, int]) -> None:
        body = npy_bytes(np.ones((11, 13), dtype=np.float32, order="F"), version=version)
        assert body[6] == version[0]
        f = extract(body)
        assert (f["dim0"], f["dim1"], f["itemsize"], f["fortran_order"]) == (11, 13, 4, 1.0)

    def test_object_arrays_are_described_not_unpickled(self) -> None:
        body = npy_bytes(np.array([{"a": 1}, None], dtype=object))
        f = extract(body)
        assert f["dtype.object"] == 1.0 and f["dim0"] == 2

    def test_code_in_header_is_not_evaluated(self) -> None:
        header = b"{'descr': __import__('os').system('false'), 'shape': (1,)}"
        body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
        assert extract(body)["malformed"] == 1.0

    def test_text_matrix(self) -> None:
        rows = "\n".join(" ".join(str(i * j) for j in range(4)) for i in range(25)) + "\n"
        f = extract(rows.encode(), kind="array")
        assert (f["ndim"], f["dim0"], f["dim1"], f["elements"]) == (2, 25, 4, 100)
        assert f["format.text"] == 1.0

    def test_ragged_text_is_malformed(self) -> None:
        assert extract(b"1 2 3\n4 5\n", kind="array")["malformed"] == 1.0


class TestTable:
    def test_small_csv_exact(self) -> None:
        body = b"name,age,city\nann,31,paris\nbob,42,rome\ncy,7,oslo\n"
        f = extract(body)
        assert f["kind.table"] == 1.0
        assert (f["rows"], f["columns"], f["header"], f["estimated"]) == (3, 3, 1.0, 0.0)
        assert f["delimiter.comma"] == 1.0 and f["cells"] == 9

    def test_tsv_without_header(self) -> None:
        body = b"1\t2\t3\t4\n5\t6\t7\t8\n"
        f = extract(body, content_type="text/tab-separated-values")
        assert (f["rows"], f["columns"], f["header"]) == (2, 4, 0.0)
        assert f["delimiter.tab"] == 1.0

    def test_quoted_delimiters_inside_fields(self) -> None:
        body = b'id;label\n1;"a;b"\n2;"c"\n'
        f = extract(body, kind="table")
        assert f["columns"] == 2 and f["delimiter.semicolon"] == 1.0

    def test_large_csv_estimated_from_sample(self) -> None:
        rng = np.random.default_rng(7)
        lines = [f"{i},{rng.integers(0, 10**6)},{rng.random():.6f}" for i in range(200_000)]
        body = ("id,value,score\n" + "\n".join(lines) + "\n").encode()
        assert len(body) > 4 * 65536
        f = extract(body)
        assert f["estimated"] == 1.0 and f["columns"] == 3
        assert f["rows"] == pytest.approx(200_000, rel=0.05)


class TestJson:
    @pytest.mark.parametrize(("doc", "length", "depth"), [
        ([], 0, 1), ({}, 0, 1), ([1, 2, 3], 3, 1), ({"a": 1, "b": [1, [2]]}, 2, 3),
        (["x,]}", {"k": "\\\"]"}], 2, 2), ([[[[[]]]]], 1, 5),
    ])
    def test_length_and_depth(self, doc: object, length: int, depth: int) -> None:
        f = extract(json.dumps(doc).encode())
        assert f["kind.json"] == 1.0 and "malformed" not in f
        assert (f["length"], f["depth"], f["estimated"]) == (length, depth, 0.0)

    def test_scalar(self) -> None:
        f = extract(b"42", kind="json")
        assert f["json.scalar"] == 1.0 and f["length"] == 1.0

    def test_large_array_estimated(self) -> None:
        doc = [{"id": i, "name": f"item-{i:06d}"} for i in range(50_000)]
        body = json.dumps(doc).encode()
        f = extract(body)
        assert f["estimated"] == 1.0 and f["json.array"] == 1.0
        assert f["length"] == pytest.approx(50_000, rel=0.05)

    @pytest.mark.parametrize("body", [b"[1, 2", b"[1, 2]]", b'{"a": [1}', b"[1] x"])
    def test_broken_json_is_malformed(self, body: bytes) -> None:
        assert extract(body, kind="json")["malformed"] == 1.0

    def test_content_type_plus_json(self) -> None:
        f = extract(b'{"a": 1}', content_type="application/vnd.api+json; charset=utf-8")
        assert f["kind.json"] == 1.0


class TestText:
    def test_exact_counts(self) -> None:
        f = extract("héllo wörld\nsecond line here\nthird".encode())
        assert f["kind.text"] == 1.0
        assert (f["lines"], f["words"], f["estimated"]) == (3, 6, 0.0)

    def test_large_text_estimated(self) -> None:
        body = ("the quick brown fox jumps over the lazy dog\n" * 40_000).encode()
        f = extract(body)
        assert f["estimated"] == 1.0
        assert f["lines"] == pytest.approx(40_000, rel=0.01)
        assert f["words"] == pytest.approx(360_000, rel=0.01)

    def test_binary_is_generic(self) -> None:
        body = bytes(range(256)) * 4
        f = extract(body)
        assert f["kind.generic"] == 1.0 and "malformed" not in f
        assert f["entropy"] == pytest.approx(8.0)

    def test_empty_body(self) -> None:
        f = extract(b"")
        assert f["bytes"] == 0.0 and f["entropy"] == 0.0 and f["kind.generic"] == 1.0
