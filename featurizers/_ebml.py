"""A bounded EBML (Matroska/WebM) reader for the video and audio featurizers.

Walks the Segment's top-level elements by their sizes and reads only Info (TimecodeScale,
Duration) and Tracks (CodecID, DefaultDuration, PixelWidth/Height, SamplingFrequency,
Channels); it stops at the first Cluster once both were seen, so no frame data is touched.
Streams written without seeking back (browser MediaRecorder uploads, `ffmpeg -f webm pipe:`)
lack Duration and sometimes DefaultDuration: then the block timestamps of the first Cluster
give the frame rate, and those of the last Cluster (found in a bounded tail) the duration.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from featurizers._util import NotRecognized

MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT = 0x18538067
_INFO = 0x1549A966
_TRACKS = 0x1654AE6B
_CLUSTER = 0x1F43B675
_TIMECODE_SCALE = 0x2AD7B1
_DURATION = 0x4489
_TRACK_ENTRY = 0xAE
_TRACK_TYPE = 0x83
_TRACK_NUMBER = 0xD7
_CLUSTER_TIMECODE = 0xE7
_SIMPLE_BLOCK = 0xA3
_BLOCK_GROUP = 0xA0
_BLOCK = 0xA1
_CLUSTER_ID = b"\x1f\x43\xb6\x75"
_CODEC_ID = 0x86
_DEFAULT_DURATION = 0x23E383
_VIDEO = 0xE0
_AUDIO = 0xE1
_PIXEL_WIDTH = 0xB0
_PIXEL_HEIGHT = 0xBA
_SAMPLING_FREQUENCY = 0xB5
_CHANNELS = 0x9F
_DOCTYPE = 0x4282
_UNKNOWN = -1


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


@dataclass
class MkvTrack:
    kind: int = 0  # 1 video, 2 audio
    number: int = 0
    codec_id: str = ""
    default_duration_ns: int = 0
    width: int = 0
    height: int = 0
    sample_rate: float = 0.0
    channels: int = 0


@dataclass
class Segment:
    doctype: str = ""
    timecode_scale: int = 1_000_000
    duration: float = 0.0
    tracks: list[MkvTrack] = field(default_factory=list)
    found_info: bool = False
    first_cluster: tuple[int, int] | None = None  # payload (start, end) of the first Cluster


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    """Read an EBML variable-length integer; return (value, length). Unknown size -> -1."""
    first = data[pos]
    if first == 0:
        raise NotRecognized("EBML: invalid vint")
    length = 1
    mask = 0x80
    while not first & mask:
        mask >>= 1
        length += 1
    if pos + length > len(data):
        raise NotRecognized("EBML: truncated vint")
    value = first if keep_marker else first & (mask - 1)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    if not keep_marker and value == (1 << (7 * length)) - 1:
        return _UNKNOWN, length
    return value, length


def _elements(data: bytes, start: int, end: int, budget: list[int]) -> Iterator[tuple[int, int, int]]:
    """Yield (id, payload_start, payload_end); an unknown size runs to `end`."""
    pos = start
    while pos < end:
        budget[0] -= 1
        if budget[0] < 0:
            return
        eid, n = _vint(data, pos, keep_marker=True)
        size, m = _vint(data, pos + n, keep_marker=False)
        ps = pos + n + m
        pe = end if size == _UNKNOWN else min(ps + size, end)
        yield eid, ps, pe
        if size == _UNKNOWN:
            return
        pos = ps + size


def _uint(data: bytes, ps: int, pe: int) -> int:
    return int.from_bytes(data[ps:pe], "big") if pe - ps <= 8 else 0


def _float(data: bytes, ps: int, pe: int) -> float:
    if pe - ps == 4:
        return float(struct.unpack_from(">f", data, ps)[0])
    if pe - ps == 8:
        return float(struct.unpack_from(">d", data, ps)[0])
    return 0.0


def _track(data: bytes, ps: int, pe: int, budget: list[int]) -> MkvTrack:
    t = MkvTrack()
    for eid, s, e in _elements(data, ps, pe, budget):
        if eid == _TRACK_TYPE:
            t.kind = _uint(data, s, e)
        elif eid == _TRACK_NUMBER:
            t.number = _uint(data, s, e)
        elif eid == _CODEC_ID:
            t.codec_id = data[s:e].decode("ascii", "replace").rstrip("\x00")
        elif eid == _DEFAULT_DURATION:
            t.default_duration_ns = _uint(data, s, e)
        elif eid == _VIDEO:
            for vid, vs, ve in _elements(data, s, e, budget):
                if vid == _PIXEL_WIDTH:
                    t.width = _uint(data, vs, ve)
                elif vid == _PIXEL_HEIGHT:
                    t.height = _uint(data, vs, ve)
        elif eid == _AUDIO:
            for aid, as_, ae in _elements(data, s, e, budget):
                if aid == _SAMPLING_FREQUENCY:
                    t.sample_rate = _float(data, as_, ae)
                elif aid == _CHANNELS:
                    t.channels = _uint(data, as_, ae)
    return t


def parse(data: bytes, max_elements: int, limit: int) -> Segment:
    """Parse the EBML header, Segment Info and Tracks within data[:limit]."""
    if not data.startswith(MAGIC):
        raise NotRecognized("EBML: bad magic")
    budget = [max_elements]
    end = min(len(data), limit)
    seg = Segment()
    found_tracks = False
    for eid, ps, pe in _elements(data, 0, end, budget):
        if eid == 0x1A45DFA3:
            for hid, hs, he in _elements(data, ps, pe, budget):
                if hid == _DOCTYPE:
                    seg.doctype = data[hs:he].decode("ascii", "replace").rstrip("\x00")
        elif eid == _SEGMENT:
            for sid, ss, se in _elements(data, ps, pe, budget):
                if sid == _INFO:
                    seg.found_info = True
                    for iid, is_, ie in _elements(data, ss, se, budget):
                        if iid == _TIMECODE_SCALE:
                            seg.timecode_scale = _uint(data, is_, ie) or 1_000_000
                        elif iid == _DURATION:
                            seg.duration = _float(data, is_, ie)
                elif sid == _TRACKS:
                    found_tracks = True
                    for tid, ts, te in _elements(data, ss, se, budget):
                        if tid == _TRACK_ENTRY:
                            seg.tracks.append(_track(data, ts, te, budget))
                elif sid == _CLUSTER:
                    if seg.first_cluster is None:
                        seg.first_cluster = (ss, se)
                    if seg.found_info and found_tracks:
                        break
            break
    if not seg.found_info and not found_tracks:
        raise NotRecognized("EBML: no Segment Info or Tracks within the header budget")
    return seg


def duration_s(seg: Segment) -> float:
    d = seg.duration * seg.timecode_scale / 1e9
    return d if d > 0 else 0.0


def _cluster_blocks(
    data: bytes, ps: int, pe: int, budget: list[int]
) -> Iterator[tuple[int, int]]:
    """(track number, absolute timecode) of the blocks of the Cluster whose payload starts at
    ps; the Cluster Timecode precedes its blocks."""
    base = 0
    for eid, s, e in _elements(data, ps, pe, budget):
        if eid == _CLUSTER_TIMECODE:
            base = _uint(data, s, e)
        elif eid in (_SIMPLE_BLOCK, _BLOCK_GROUP):
            if eid == _BLOCK_GROUP:
                inner = next((x for x in _elements(data, s, e, budget) if x[0] == _BLOCK), None)
                if inner is None:
                    continue
                s, e = inner[1], inner[2]
            if e - s < 4:
                continue
            track, n = _vint(data, s, keep_marker=False)
            (rel,) = struct.unpack_from(">h", data, s + n)
            yield track, base + rel


def block_fps(data: bytes, seg: Segment, track: int, max_elements: int) -> float:
    """Frame rate from the block timestamps of `track` in the first Cluster (0 if unknown)."""
    if seg.first_cluster is None:
        return 0.0
    budget = [max_elements]
    start, end = seg.first_cluster
    times = sorted(tc for tr, tc in _cluster_blocks(data, start, end, budget) if tr == track)
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) * 1e9 / ((times[-1] - times[0]) * seg.timecode_scale)


def tail_duration_s(data: bytes, seg: Segment, tail_bytes: int, max_elements: int) -> float:
    """Duration from the last block timestamp of the last Cluster starting in the final
    `tail_bytes` (0 if none is found); one frame/block duration is not added."""
    start = max(0, len(data) - tail_bytes)
    pos = data.rfind(_CLUSTER_ID, start)
    if pos < 0:
        return 0.0
    _, n = _vint(data, pos + 4, keep_marker=False)
    budget = [max_elements]
    last = max((tc for _, tc in _cluster_blocks(data, pos + 4 + n, len(data), budget)),
               default=0)
    return last * seg.timecode_scale / 1e9


def audio_only(head: bytes) -> bool:
    """True when the Tracks found in `head` are all audio (an audio-only WebM/Matroska)."""
    try:
        seg = parse(head, 256, len(head))
    except Exception:
        return False
    kinds = {t.kind for t in seg.tracks}
    return bool(kinds) and kinds == {2}
