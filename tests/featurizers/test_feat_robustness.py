"""Property tests: on random, truncated, bit-flipped and spliced versions of real files,
`extract` never raises, always reports `bytes`, and returns only finite floats.

Hypothesis' per-example deadline is the "bounded time" check: parsers only read headers and
bounded samples, so each example stays far below it even for the 20 MiB-claiming sizes that
corrupted length fields produce.
"""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurizers import extract, kinds

SETTINGS = settings(max_examples=250, deadline=timedelta(seconds=2),
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
CONTENT_TYPES = st.sampled_from([None, "", "image/jpeg", "video/mp4", "audio/ogg", "text/csv",
                                 "application/json", "text/plain", "application/x-npy", ";;;"])


def _check(body: bytes, features: dict[str, float]) -> None:
    assert isinstance(features, dict)
    assert features["bytes"] == float(len(body))
    assert 0.0 <= features["entropy"] <= 8.0
    for key, value in features.items():
        assert isinstance(key, str)
        assert type(value) is float and math.isfinite(value), (key, value)


def _kind() -> st.SearchStrategy[str]:
    return st.sampled_from(["auto", *kinds(), "bogus"])


class TestNeverRaises:
    @SETTINGS
    @given(body=st.binary(max_size=4096), ctype=CONTENT_TYPES, kind=_kind())
    def test_random_bytes(self, body: bytes, ctype: str | None, kind: str) -> None:
        _check(body, extract(body, ctype, kind))

    @SETTINGS
    @given(data=st.data(), kind=_kind())
    def test_truncated_real_files(self, corpus: dict[str, bytes], data: st.DataObject,
                                  kind: str) -> None:
        name = data.draw(st.sampled_from(sorted(corpus)))
        body = corpus[name]
        cut = data.draw(st.integers(0, len(body)))
        _check(body[:cut], extract(body[:cut], kind=kind))

    @SETTINGS
    @given(data=st.data())
    def test_bit_flipped_real_files(self, corpus: dict[str, bytes], data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(corpus)))
        body = bytearray(corpus[name])
        # Flips concentrated in the headers, where the parsers look.
        window = min(len(body), data.draw(st.sampled_from([64, 512, 4096, len(body)])))
        for pos in data.draw(st.lists(st.integers(0, window - 1), min_size=1, max_size=16)):
            body[pos] ^= 1 << data.draw(st.integers(0, 7))
        _check(bytes(body), extract(bytes(body)))

    @SETTINGS
    @given(data=st.data())
    def test_overwritten_length_fields(self, corpus: dict[str, bytes], data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(corpus)))
        body = bytearray(corpus[name])
        pos = data.draw(st.integers(0, max(0, min(len(body), 4096) - 4)))
        body[pos : pos + 4] = data.draw(st.sampled_from(
            [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\x7f\xff\xff\xff"]))
        _check(bytes(body), extract(bytes(body)))

    @SETTINGS
    @given(data=st.data(), kind=_kind())
    def test_spliced_real_files(self, corpus: dict[str, bytes], data: st.DataObject,
                                kind: str) -> None:
        names = sorted(corpus)
        a = corpus[data.draw(st.sampled_from(names))]
        b = corpus[data.draw(st.sampled_from(names))]
        body = a[: data.draw(st.integers(0, len(a)))] + b[data.draw(st.integers(0, len(b))):]
        _check(body, extract(body, kind=kind))


class TestRealFilesParse:
    def test_every_corpus_file_is_recognised(self, corpus: dict[str, bytes]) -> None:
        for name, body in corpus.items():
            f = extract(body)
            _check(body, f)
            if name.endswith(".ts"):
                continue  # MPEG-TS has no container header to parse (ffprobe fallback only)
            assert "malformed" not in f, name


class TestAdversarialInputsStayBounded:
    """Inputs built to defeat naive parsers: each must come back with a sane answer."""

    def test_very_deep_json(self) -> None:
        f = extract(b"[" * 30000 + b"]" * 30000)
        assert (f["depth"], f["length"]) == (30000.0, 1.0)

    def test_very_deep_json_mismatched(self) -> None:
        assert extract(b"[{" * 15000 + b"]}" * 15000)["malformed"] == 1.0

    def test_unclosed_json_longer_than_sample(self) -> None:
        f = extract(b"[" * 300000)
        assert f["estimated"] == 1.0 and f["depth"] == 32768.0  # the head sample's depth

    def test_mp3_sync_search_has_a_budget(self) -> None:
        body = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff" * 100000
        assert extract(body)["malformed"] == 1.0

    def test_npy_with_too_many_dimensions(self) -> None:
        header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (" + b"1, " * 20000 + b")}"
        body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
        assert extract(body)["malformed"] == 1.0

    def test_one_huge_text_matrix_row(self) -> None:
        body = (" ".join(["1"] * 30000) + "\n").encode()
        f = extract(body, kind="array")
        assert (f["dim0"], f["dim1"]) == (1.0, 30000.0)
