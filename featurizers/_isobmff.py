"""A bounded ISO-BMFF (MP4/MOV/M4A) box-tree reader for the video and audio featurizers.

Only box headers are walked: top-level boxes are skipped by their size, so a `moov` at the end
of a 20 MB file (the default without `-movflags +faststart`) costs a handful of jumps, and only
the few small boxes the features need are read (mvhd, tkhd, mdhd, hdlr, stsd, stts).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from featurizers._util import NotRecognized

_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"})
#: Audio-only brands: an MP4 with one of these major brands is treated as audio.
AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_MAX_STTS_ENTRIES = 4096


def sniff(head: bytes) -> bool:
    """True when `head` starts like an ISO-BMFF file (an ftyp, or a QuickTime moov/mdat/wide)."""
    if len(head) < 12:
        return False
    typ = head[4:8]
    if typ == b"ftyp":
        return True
    # Older QuickTime files start without ftyp; demand a binary-looking size to avoid text.
    return typ in (b"moov", b"wide", b"mdat") and head[0] < 0x20


def major_brand(head: bytes) -> bytes:
    return head[8:12] if head[4:8] == b"ftyp" else b""


@dataclass
class Track:
    handler: bytes = b""
    codec: bytes = b""
    width: float = 0.0
    height: float = 0.0
    timescale: int = 0
    duration: int = 0
    samples: int = 0
    sample_ticks: int = 0
    channels: int = 0
    sample_rate: float = 0.0


@dataclass
class Movie:
    timescale: int = 0
    duration: int = 0
    tracks: list[Track] = field(default_factory=list)
    found_moov: bool = False


def _boxes(data: bytes, start: int, end: int, budget: list[int]) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload_start, payload_end) for the boxes in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        budget[0] -= 1
        if budget[0] < 0:
            return
        size, typ = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            raise NotRecognized(f"ISO-BMFF: box {typ!r} has size {size}")
        box_end = pos + size
        yield typ, pos + header, min(box_end, end)
        pos = box_end


def _full_box_version(data: bytes, pos: int) -> int:
    return data[pos]


def _parse_trak(data: bytes, start: int, end: int, budget: list[int]) -> Track:
    track = Track()
    stack = [(start, end)]
    while stack:
        s, e = stack.pop()
        for typ, ps, pe in _boxes(data, s, e, budget):
            if typ in _CONTAINERS:
                stack.append((ps, pe))
            elif typ == b"tkhd":
                off = 88 if _full_box_version(data, ps) == 1 else 76
                w, h = struct.unpack_from(">II", data, ps + off)
                track.width, track.height = w / 65536.0, h / 65536.0
            elif typ == b"mdhd":
                if _full_box_version(data, ps) == 1:
                    track.timescale, track.duration = struct.unpack_from(">IQ", data, ps + 20)
                else:
                    track.timescale, track.duration = struct.unpack_from(">II", data, ps + 12)
            elif typ == b"hdlr" and not track.handler:
                # The first hdlr is mdia's (media type); QuickTime adds a minf data handler.
                track.handler = data[ps + 8 : ps + 12]
            elif typ == b"stsd":
                _parse_stsd(data, ps, pe, track)
            elif typ == b"stts":
                (count,) = struct.unpack_from(">I", data, ps + 4)
                count = min(count, _MAX_STTS_ENTRIES, max(0, (pe - ps - 8) // 8))
                for i in range(count):
                    n, delta = struct.unpack_from(">II", data, ps + 8 + 8 * i)
                    track.samples += n
                    track.sample_ticks += n * delta
    return track


def _parse_stsd(data: bytes, ps: int, pe: int, track: Track) -> None:
    (count,) = struct.unpack_from(">I", data, ps + 4)
    if count < 1 or ps + 16 > pe:
        return
    entry = ps + 8
    track.codec = data[entry + 4 : entry + 8]
    # Sample entry: 8-byte box header, 6 reserved, 2 data_reference_index, then:
    if track.handler == b"soun" or (not track.handler and entry + 36 <= pe):
        channels, _bits = struct.unpack_from(">HH", data, entry + 24)
        (rate,) = struct.unpack_from(">I", data, entry + 32)
        track.channels = channels
        track.sample_rate = rate / 65536.0
        if track.codec == b"mp4a":
            _parse_esds(data, entry, min(pe, entry + int.from_bytes(data[entry : entry + 4])), track)
    elif track.handler == b"vide" and entry + 36 <= pe and not track.width:
        w, h = struct.unpack_from(">HH", data, entry + 32)
        track.width, track.height = float(w), float(h)


def _descriptor(data: bytes, pos: int) -> tuple[int, int, int]:
    """MPEG-4 descriptor at pos -> (tag, payload_start, payload_size)."""
    tag = data[pos]
    size = 0
    pos += 1
    for _ in range(4):
        b = data[pos]
        pos += 1
        size = (size << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    return tag, pos, size


def _parse_esds(data: bytes, entry: int, end: int, track: Track) -> None:
    """AAC channel configuration from esds (the mp4a entry's channelcount is often just 2)."""
    at = data.find(b"esds", entry + 36, end)
    if at < 0:
        return
    tag, pos, _ = _descriptor(data, at + 8)  # skip fourcc + version/flags
    if tag != 0x03:
        return
    flags = data[pos + 2]
    pos += 3
    if flags & 0x80:
        pos += 2
    if flags & 0x40:
        pos += 1 + data[pos]
    if flags & 0x20:
        pos += 2
    tag, pos, _ = _descriptor(data, pos)
    if tag != 0x04:
        return
    tag, pos, size = _descriptor(data, pos + 13)
    if tag != 0x05 or size < 2:
        return
    bits = int.from_bytes(data[pos : pos + min(size, 5)], "big")
    nbits = 8 * min(size, 5)
    obj_type = bits >> (nbits - 5)
    freq_index = (bits >> (nbits - 9)) & 0xF
    shift = nbits - 9 - (24 if freq_index == 15 else 0)
    if obj_type == 31 or shift < 4:
        return
    channel_config = (bits >> (shift - 4)) & 0xF
    if 1 <= channel_config <= 6:
        track.channels = channel_config
    elif channel_config == 7:
        track.channels = 8


def parse(data: bytes, max_boxes: int) -> Movie:
    """Parse the movie header and track summaries; raise NotRecognized if there is no moov."""
    budget = [max_boxes]
    movie = Movie()
    for typ, ps, pe in _boxes(data, 0, len(data), budget):
        if not all(0x20 <= c <= 0x7E for c in typ):
            raise NotRecognized(f"ISO-BMFF: top-level box type {typ!r} is not a fourcc")
        if typ != b"moov":
            continue
        movie.found_moov = True
        for sub, ss, se in _boxes(data, ps, pe, budget):
            if sub == b"mvhd":
                if _full_box_version(data, ss) == 1:
                    movie.timescale, movie.duration = struct.unpack_from(">IQ", data, ss + 20)
                else:
                    movie.timescale, movie.duration = struct.unpack_from(">II", data, ss + 12)
            elif sub == b"trak":
                movie.tracks.append(_parse_trak(data, ss, se, budget))
        break
    if not movie.found_moov:
        raise NotRecognized("ISO-BMFF: no moov box (truncated, or fragmented without one)")
    return movie


def movie_duration_s(movie: Movie) -> float:
    if movie.timescale > 0 and movie.duration > 0:
        return movie.duration / movie.timescale
    best = 0.0
    for t in movie.tracks:
        if t.timescale > 0:
            best = max(best, t.duration / t.timescale)
    return best
