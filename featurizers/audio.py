"""Audio featurizer: duration, sample rate and channels from headers (WAV, FLAC, MP3, OGG, M4A).

Speech recognition, transcoding and audio analysis scale with samples = duration x rate x
channels. Each format states these in a small header (WAV fmt/data, FLAC STREAMINFO, Vorbis/Opus
identification packet + the last page's granule position, MP3 frame header + Xing/Info/VBRI
frame count), so nothing is decoded and at most a bounded prefix and suffix are searched.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from featurizers import _ebml, _isobmff
from featurizers._util import (
    Features,
    NotRecognized,
    header_bytes,
    max_elements,
    one_hot,
    sample_bytes,
)
from featurizers.video import mkv

FORMATS = ("wav", "flac", "mp3", "vorbis", "opus", "m4a", "webm")

_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_MP3_BITRATES = {  # (mpeg1?, layer) -> kbit/s by index
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _id3_end(body: bytes) -> int:
    """Offset just past a leading ID3v2 tag (0 if none)."""
    if body[:3] != b"ID3" or len(body) < 10:
        return 0
    flags = body[5]
    size = 0
    for b in body[6:10]:
        size = (size << 7) | (b & 0x7F)
    return 10 + size + (10 if flags & 0x10 else 0)


def _mp3_header(body: bytes, pos: int) -> tuple[int, int, int, int, int, bool] | None:
    """Decode the frame header at pos -> (bitrate, rate, channels, samples, frame_len, mpeg1)."""
    if pos + 4 > len(body) or body[pos] != 0xFF or body[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = body[pos + 1], body[pos + 2], body[pos + 3]
    version = (b1 >> 3) & 3
    layer_bits = (b1 >> 1) & 3
    br_index = b2 >> 4
    sr_index = (b2 >> 2) & 3
    if version == 1 or layer_bits == 0 or br_index in (0, 15) or sr_index == 3:
        return None
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _MP3_BITRATES[(mpeg1, layer)][br_index] * 1000
    rate = _MP3_RATES[version][sr_index]
    padding = (b2 >> 1) & 1
    channels = 1 if (b3 >> 6) == 3 else 2
    if layer == 1:
        samples, frame_len = 384, (12 * bitrate // rate + padding) * 4
    else:
        samples = 1152 if (layer == 2 or mpeg1) else 576
        frame_len = samples // 8 * bitrate // rate + padding
    return bitrate, rate, channels, samples, frame_len, mpeg1


def _find_mp3_frame(body: bytes, start: int, limit: int, budget: int) -> int:
    """First offset >= start whose header is valid and is followed by another valid header,
    trying at most `budget` candidate sync bytes."""
    pos = start
    end = min(len(body), limit)
    for _ in range(budget):
        pos = body.find(b"\xff", pos, end)
        if pos < 0:
            break
        hdr = _mp3_header(body, pos)
        if hdr is not None:
            nxt = pos + hdr[4]
            if nxt + 4 > len(body) or _mp3_header(body, nxt) is not None:
                return pos
        pos += 1
    raise NotRecognized("MP3: no frame sync within the header budget")


def looks_like_mp3(head: bytes) -> bool:
    if head[:3] == b"ID3":
        return True
    hdr = _mp3_header(head, 0)
    return hdr is not None and (hdr[4] + 4 > len(head) or _mp3_header(head, hdr[4]) is not None)


def _mp3(body: bytes, options: Mapping[str, object]) -> Features:
    start = _id3_end(body)
    pos = _find_mp3_frame(body, start, start + sample_bytes(options), max_elements(options))
    hdr = _mp3_header(body, pos)
    assert hdr is not None
    bitrate, rate, channels, samples, _frame_len, mpeg1 = hdr
    side = (32 if channels == 2 else 17) if mpeg1 else (17 if channels == 2 else 9)
    tag = body[pos + 4 + side : pos + 8 + side]
    frames = 0
    vbr = 0.0
    if tag in (b"Xing", b"Info"):
        (flags,) = struct.unpack_from(">I", body, pos + 8 + side)
        if flags & 1:
            (frames,) = struct.unpack_from(">I", body, pos + 12 + side)
        vbr = 1.0 if tag == b"Xing" else 0.0
    elif body[pos + 36 : pos + 40] == b"VBRI":
        (frames,) = struct.unpack_from(">I", body, pos + 36 + 14)
        vbr = 1.0
    audio_bytes = len(body) - pos - (128 if body[-128:-125] == b"TAG" else 0)
    # Xing/Info/VBRI frame count when present, else a constant-bitrate estimate.
    duration = frames * samples / rate if frames > 0 else max(audio_bytes, 0) * 8.0 / bitrate
    return {"duration_s": duration, "sample_rate": float(rate), "channels": float(channels),
            "bitrate": (audio_bytes * 8.0 / duration) if duration > 0 else float(bitrate),
            "vbr": vbr, **one_hot("format", "mp3")}


def _wav(body: bytes, options: Mapping[str, object]) -> Features:
    pos = 12
    budget = max_elements(options)
    limit = min(len(body), header_bytes(options))
    fmt: tuple[int, int, int, int, int, int] | None = None
    data_size = -1
    while pos + 8 <= limit and budget > 0:
        budget -= 1
        cid, size = struct.unpack_from("<4sI", body, pos)
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", body, pos + 8)
            if fmt[0] == _WAVE_FORMAT_EXTENSIBLE and size >= 40:
                # The real format tag is the first two bytes of the SubFormat GUID.
                (sub,) = struct.unpack_from("<H", body, pos + 8 + 24)
                fmt = (sub, *fmt[1:])
        elif cid == b"data":
            data_size = min(size, len(body) - pos - 8)
            break
        pos += 8 + size + (size & 1)
    if fmt is None:
        raise NotRecognized("WAV: no fmt chunk")
    tag, channels, rate, byte_rate, block_align, bits = fmt
    if rate == 0 or channels == 0:
        raise NotRecognized("WAV: zero sample rate or channels")
    if byte_rate == 0:
        byte_rate = rate * max(block_align, 1)
    feats: Features = {"sample_rate": float(rate), "channels": float(channels),
                       "bits_per_sample": float(bits), "float_samples": float(tag == 3),
                       **one_hot("format", "wav")}
    if data_size >= 0:
        feats["duration_s"] = data_size / byte_rate
        feats["bitrate"] = byte_rate * 8.0
    return feats


def _flac(body: bytes, start: int) -> Features:
    if body[start : start + 4] != b"fLaC" or body[start + 4] & 0x7F != 0:
        raise NotRecognized("FLAC: STREAMINFO is not the first metadata block")
    info = start + 8
    (packed,) = struct.unpack_from(">Q", body, info + 10)
    rate = packed >> 44
    channels = ((packed >> 41) & 7) + 1
    bits = ((packed >> 36) & 31) + 1
    total = packed & ((1 << 36) - 1)
    if rate == 0:
        raise NotRecognized("FLAC: zero sample rate")
    feats: Features = {"sample_rate": float(rate), "channels": float(channels),
                       "bits_per_sample": float(bits), **one_hot("format", "flac")}
    if total > 0:
        feats["duration_s"] = total / rate
        feats["bitrate"] = len(body) * 8.0 / feats["duration_s"]
    return feats


def _ogg(body: bytes, options: Mapping[str, object]) -> Features:
    nseg = body[26]
    packet = 27 + nseg
    (serial,) = struct.unpack_from("<I", body, 14)
    if body[packet : packet + 7] == b"\x01vorbis":
        channels = body[packet + 11]
        (rate,) = struct.unpack_from("<I", body, packet + 12)
        fmt, pre_skip, granule_rate, sample_rate = "vorbis", 0, rate, rate
    elif body[packet : packet + 8] == b"OpusHead":
        channels = body[packet + 9]
        (pre_skip,) = struct.unpack_from("<H", body, packet + 10)
        fmt, granule_rate, sample_rate = "opus", 48000, 48000
    else:
        raise NotRecognized("OGG: first stream is neither Vorbis nor Opus")
    if granule_rate == 0 or channels == 0:
        raise NotRecognized("OGG: zero sample rate or channels")
    feats: Features = {"sample_rate": float(sample_rate), "channels": float(channels),
                       **one_hot("format", fmt)}
    # The last page of the stream carries the total granule position (samples).
    tail_start = max(0, len(body) - sample_bytes(options))
    pos = len(body)
    for _ in range(max_elements(options)):
        pos = body.rfind(b"OggS", tail_start, pos)
        if pos < 0 or pos + 27 > len(body):
            break
        granule, page_serial = struct.unpack_from("<qI", body, pos + 6)
        if page_serial == serial and granule > 0:
            duration = (granule - pre_skip) / granule_rate
            if duration > 0:
                feats["duration_s"] = duration
                feats["bitrate"] = len(body) * 8.0 / duration
            break
    return feats


def _m4a(body: bytes, options: Mapping[str, object]) -> Features:
    movie = _isobmff.parse(body, max_elements(options))
    track = next((t for t in movie.tracks if t.handler == b"soun"), None)
    if track is None:
        raise NotRecognized("M4A: no sound track")
    duration = _isobmff.movie_duration_s(movie)
    rate = track.sample_rate or float(track.timescale)
    feats: Features = {"duration_s": duration, "sample_rate": rate,
                       "channels": float(track.channels), **one_hot("format", "m4a")}
    if duration > 0:
        feats["bitrate"] = len(body) * 8.0 / duration
    return feats


def _webm(body: bytes, options: Mapping[str, object]) -> Features:
    """Audio-only WebM/Matroska (e.g. a browser MediaRecorder upload): the EBML reader."""
    f = mkv(body, options)
    if "sample_rate" not in f:
        raise NotRecognized("Matroska: no audio track")
    keep = ("duration_s", "sample_rate", "channels", "bitrate", "duration_estimated")
    return {**{k: f[k] for k in keep if k in f}, **one_hot("format", "webm")}


def audio_format(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if _ebml.sniff(head) and _ebml.audio_only(head):
        return "webm"
    if _isobmff.sniff(head) and _isobmff.major_brand(head) in _isobmff.AUDIO_BRANDS:
        return "m4a"
    if looks_like_mp3(head):
        return "mp3"
    return None


def sniff(head: bytes) -> bool:
    return audio_format(head) is not None


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """Audio features: duration_s, sample_rate, channels, bitrate, format.<name>, ..."""
    fmt = audio_format(body[:4096])
    if fmt == "wav":
        return _wav(body, options)
    if fmt == "ogg":
        return _ogg(body, options)
    if fmt == "m4a":
        return _m4a(body, options)
    if fmt == "webm" or _ebml.sniff(body):
        return _webm(body, options)
    if fmt == "flac":
        return _flac(body, 0)
    start = _id3_end(body)
    if body[start : start + 4] == b"fLaC":
        return _flac(body, start)
    if fmt == "mp3":
        return _mp3(body, options)
    raise NotRecognized("not a known audio format")
