"""Image featurizer: exact dimensions and channels of real Pillow-written files, headers only."""

from __future__ import annotations

import io
import struct

import pytest
from feat_media import image_bytes
from PIL import Image

from featurizers import extract

SIZES = [(1, 1), (17, 9), (640, 480), (3001, 7)]


def _check(body: bytes, size: tuple[int, int], fmt: str, channels: int) -> dict[str, float]:
    f = extract(body)
    assert "malformed" not in f
    assert f["kind.image"] == 1.0
    assert f[f"format.{fmt}"] == 1.0
    assert (f["width"], f["height"]) == (float(size[0]), float(size[1]))
    assert f["megapixels"] == pytest.approx(size[0] * size[1] / 1e6)
    assert f["channels"] == channels
    assert f["bytes"] == len(body)
    return f


class TestJpeg:
    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize(("mode", "channels"), [("RGB", 3), ("L", 1), ("CMYK", 4)])
    def test_baseline_dimensions(self, size: tuple[int, int], mode: str, channels: int) -> None:
        f = _check(image_bytes("JPEG", size, mode), size, "jpeg", channels)
        assert f["progressive"] == 0.0

    @pytest.mark.parametrize("size", SIZES)
    def test_progressive_sof2(self, size: tuple[int, int]) -> None:
        body = image_bytes("JPEG", size, progressive=True)
        assert b"\xff\xc2" in body
        f = _check(body, size, "jpeg", 3)
        assert f["progressive"] == 1.0

    def test_exif_and_icc_segments_before_sof_are_skipped(self) -> None:
        exif = Image.Exif()
        exif[0x010F] = "ShabariCam"  # Make
        exif[0x9286] = "x" * 20000  # a long UserComment pushes SOF far out
        icc = bytes(range(256)) * 200
        body = image_bytes("JPEG", (801, 599), exif=exif.tobytes(), icc_profile=icc)
        assert body.index(b"Exif") < body.index(b"\xff\xc0")
        _check(body, (801, 599), "jpeg", 3)

    def test_sof_beyond_header_budget_is_malformed_not_slow(self) -> None:
        body = image_bytes("JPEG", (32, 32))
        # 3000 empty APP15 segments before SOF: more than a small max_elements budget allows.
        padded = body[:2] + b"\xff\xef\x00\x02" * 3000 + body[2:]
        assert extract(padded, options={"max_elements": 100})["malformed"] == 1.0
        assert extract(padded, options={"max_elements": 10000})["width"] == 32.0


class TestPng:
    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize(("mode", "channels"),
                             [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4), ("P", 3)])
    def test_ihdr(self, size: tuple[int, int], mode: str, channels: int) -> None:
        _check(image_bytes("PNG", size, mode), size, "png", channels)

    def test_sixteen_bit(self) -> None:
        f = _check(image_bytes("PNG", (40, 30), "I;16"), (40, 30), "png", 1)
        assert f["bit_depth"] == 16.0


class TestGif:
    @pytest.mark.parametrize("size", SIZES)
    def test_logical_screen(self, size: tuple[int, int]) -> None:
        _check(image_bytes("GIF", size, "P"), size, "gif", 3)


class TestWebp:
    @pytest.mark.parametrize("size", SIZES)
    def test_lossy_vp8(self, size: tuple[int, int]) -> None:
        body = image_bytes("WEBP", size, quality=80)
        assert body[12:16] == b"VP8 "
        _check(body, size, "webp", 3)

    @pytest.mark.parametrize("size", SIZES)
    def test_lossless_vp8l(self, size: tuple[int, int]) -> None:
        body = image_bytes("WEBP", size, lossless=True)
        assert body[12:16] == b"VP8L"
        _check(body, size, "webp", 3)

    def test_lossless_with_alpha(self) -> None:
        body = image_bytes("WEBP", (50, 20), "RGBA", lossless=True)
        _check(body, (50, 20), "webp", 4)

    @pytest.mark.parametrize("size", SIZES)
    def test_extended_vp8x_with_alpha(self, size: tuple[int, int]) -> None:
        exif = Image.Exif()
        exif[0x010F] = "ShabariCam"
        body = image_bytes("WEBP", size, "RGBA", quality=80, exif=exif.tobytes())
        assert body[12:16] == b"VP8X"
        _check(body, size, "webp", 4)


class TestTiff:
    @pytest.mark.parametrize("size", SIZES)
    def test_little_endian(self, size: tuple[int, int]) -> None:
        body = image_bytes("TIFF", size)
        assert body[:2] == b"II"
        f = _check(body, size, "tiff", 3)
        assert f["bit_depth"] == 8.0

    @pytest.mark.parametrize("size", SIZES)
    def test_big_endian(self, size: tuple[int, int]) -> None:
        body = image_bytes("TIFF", size, "I;16B")
        assert body[:2] == b"MM"
        f = _check(body, size, "tiff", 1)
        assert f["bit_depth"] == 16.0

    def test_bigtiff(self) -> None:
        body = image_bytes("TIFF", (300, 200), "RGBA", big_tiff=True)
        assert body[:4] == b"II+\x00"
        _check(body, (300, 200), "tiff", 4)

    def test_compressed(self) -> None:
        _check(image_bytes("TIFF", (99, 98), "L", compression="tiff_lzw"), (99, 98), "tiff", 1)


class TestBmp:
    def test_dimensions(self) -> None:
        _check(image_bytes("BMP", (70, 35)), (70, 35), "bmp", 3)


class TestMalformedImages:
    def test_png_truncated_inside_ihdr(self) -> None:
        f = extract(image_bytes("PNG", (10, 10))[:20])
        assert f["malformed"] == 1.0
        assert "width" not in f

    def test_jpeg_without_sof(self) -> None:
        f = extract(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9")
        assert f["malformed"] == 1.0 and f["kind.image"] == 1.0

    def test_zero_sized_gif_header(self) -> None:
        body = b"GIF89a" + struct.pack("<HH", 0, 5) + b"\x00" * 10
        assert extract(body)["malformed"] == 1.0

    def test_explicit_image_kind_on_text_is_malformed(self) -> None:
        f = extract(b"hello world", kind="image")
        assert f == {"bytes": 11.0, "entropy": f["entropy"], "kind.image": 1.0, "malformed": 1.0}

    def test_pillow_roundtrip_agrees(self) -> None:
        body = image_bytes("PNG", (123, 77), "RGBA")
        with Image.open(io.BytesIO(body)) as im:
            assert (extract(body)["width"], extract(body)["height"]) == im.size
