"""Image featurizer: dimensions and channels from the file header only, never a decode.

Resizing, rotating or classifying an image costs time and memory roughly proportional to its
pixel count, which the header states exactly: JPEG SOFn, PNG IHDR, GIF logical screen, WebP
VP8/VP8L/VP8X and TIFF IFD0 all sit in the first bytes (JPEG after its APPn/EXIF segments).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from featurizers._util import Features, NotRecognized, header_bytes, max_elements, one_hot

FORMATS = ("jpeg", "png", "gif", "webp", "tiff", "bmp")

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels (palette images decode to RGB; tRNS is not looked for).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# TIFF field types we read: SHORT, LONG, LONG8 (BigTIFF).
_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}


def image_format(head: bytes) -> str | None:
    """The image format named by the magic bytes of `head`, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(_PNG_SIG):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 26 and head[6:10] == b"\x00\x00\x00\x00":
        return "bmp"
    return None


def sniff(head: bytes) -> bool:
    return image_format(head) is not None


def _jpeg(body: bytes, options: Mapping[str, object]) -> Features:
    limit = min(len(body), header_bytes(options))
    budget = max_elements(options)
    pos = 2
    while pos + 4 <= limit and budget > 0:
        budget -= 1
        if body[pos] != 0xFF:
            raise NotRecognized("JPEG: expected a marker")
        marker = body[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI / SOS before any SOF
            break
        (length,) = struct.unpack_from(">H", body, pos + 2)
        if length < 2:
            raise NotRecognized("JPEG: bad segment length")
        if marker in _SOF_MARKERS:
            precision, height, width, components = struct.unpack_from(">BHHB", body, pos + 4)
            if width == 0 or height == 0 or components == 0:
                raise NotRecognized("JPEG: zero dimension in SOF")
            feats: Features = {
                "width": float(width),
                "height": float(height),
                "channels": float(components),
                "bit_depth": float(precision),
                "progressive": 1.0 if marker in _PROGRESSIVE_SOF else 0.0,
            }
            return feats
        pos += 2 + length
    raise NotRecognized("JPEG: no SOF marker within the header budget")


def _png(body: bytes) -> Features:
    if body[12:16] != b"IHDR":
        raise NotRecognized("PNG: first chunk is not IHDR")
    width, height, depth, colour = struct.unpack_from(">IIBB", body, 16)
    if width == 0 or height == 0 or colour not in _PNG_CHANNELS:
        raise NotRecognized("PNG: invalid IHDR")
    return {
        "width": float(width),
        "height": float(height),
        "channels": float(_PNG_CHANNELS[colour]),
        "bit_depth": float(depth),
    }


def _gif(body: bytes) -> Features:
    width, height = struct.unpack_from("<HH", body, 6)
    if width == 0 or height == 0:
        raise NotRecognized("GIF: zero logical screen size")
    return {"width": float(width), "height": float(height), "channels": 3.0, "bit_depth": 8.0}


def _webp(body: bytes) -> Features:
    chunk = body[12:16]
    if chunk == b"VP8 ":
        if body[23:26] != b"\x9d\x01\x2a":
            raise NotRecognized("WebP VP8: missing start code")
        w, h = struct.unpack_from("<HH", body, 26)
        width, height, channels = w & 0x3FFF, h & 0x3FFF, 3
    elif chunk == b"VP8L":
        if body[20] != 0x2F:
            raise NotRecognized("WebP VP8L: missing signature")
        (bits,) = struct.unpack_from("<I", body, 21)
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
        channels = 4 if (bits >> 28) & 1 else 3
    elif chunk == b"VP8X":
        if len(body) < 30:
            raise NotRecognized("WebP VP8X: truncated")
        flags = body[20]
        width = int.from_bytes(body[24:27], "little") + 1
        height = int.from_bytes(body[27:30], "little") + 1
        channels = 4 if flags & 0x10 else 3
    else:
        raise NotRecognized("WebP: unknown first chunk")
    if width == 0 or height == 0:
        raise NotRecognized("WebP: zero dimension")
    return {"width": float(width), "height": float(height), "channels": float(channels),
            "bit_depth": 8.0}


def _tiff(body: bytes, options: Mapping[str, object]) -> Features:
    endian = "<" if body[:2] == b"II" else ">"
    big = body[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 64-bit offsets, 20-byte entries
    if big:
        (ifd,) = struct.unpack_from(endian + "Q", body, 8)
        count_fmt, entry_fmt, entry_size, value_at = "Q", "HHQ", 20, 12
    else:
        (ifd,) = struct.unpack_from(endian + "I", body, 4)
        count_fmt, entry_fmt, entry_size, value_at = "H", "HHI", 12, 8
    if ifd < 8 or ifd >= min(len(body), header_bytes(options)):
        raise NotRecognized("TIFF: IFD0 offset out of range")
    (count,) = struct.unpack_from(endian + count_fmt, body, ifd)
    first = ifd + struct.calcsize(count_fmt)
    tags: dict[int, int] = {}
    for i in range(min(count, max_elements(options))):
        at = first + entry_size * i
        tag, typ, n = struct.unpack_from(endian + entry_fmt, body, at)
        if n < 1:
            continue
        fmt = _TIFF_TYPES.get(typ)
        if fmt is None or (typ == 16 and not big):
            continue
        where = at + value_at
        if n * struct.calcsize(fmt) > (8 if big else 4):  # values stored out of line
            (where,) = struct.unpack_from(endian + ("Q" if big else "I"), body, where)
        (value,) = struct.unpack_from(endian + fmt, body, where)
        tags[tag] = value
    width, height = tags.get(256, 0), tags.get(257, 0)
    if width == 0 or height == 0:
        raise NotRecognized("TIFF: IFD0 has no ImageWidth/ImageLength")
    return {
        "width": float(width),
        "height": float(height),
        "channels": float(tags.get(277, 1)),
        "bit_depth": float(tags.get(258, 1)),
    }


def _bmp(body: bytes) -> Features:
    (dib,) = struct.unpack_from("<I", body, 14)
    if dib == 12:
        w, h, _, bpp = struct.unpack_from("<HHHH", body, 18)
        width, height = w, h
    else:
        width, height, _, bpp = struct.unpack_from("<iiHH", body, 18)
    width, height = abs(width), abs(height)
    if width == 0 or height == 0:
        raise NotRecognized("BMP: zero dimension")
    return {"width": float(width), "height": float(height),
            "channels": 4.0 if bpp == 32 else (1.0 if bpp <= 8 else 3.0),
            "bit_depth": float(bpp)}


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """Image features: width, height, megapixels, channels, bit_depth, format.<name>."""
    fmt = image_format(body[:32])
    if fmt == "jpeg":
        feats = _jpeg(body, options)
    elif fmt == "png":
        feats = _png(body)
    elif fmt == "gif":
        feats = _gif(body)
    elif fmt == "webp":
        feats = _webp(body)
    elif fmt == "tiff":
        feats = _tiff(body, options)
    elif fmt == "bmp":
        feats = _bmp(body)
    else:
        raise NotRecognized("not a known image format")
    feats["megapixels"] = feats["width"] * feats["height"] / 1e6
    feats["pixels"] = feats["width"] * feats["height"]
    feats.update(one_hot("format", fmt))
    return feats
