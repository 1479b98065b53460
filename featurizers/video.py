"""Video featurizer: duration, resolution, frame rate, bitrate and codec from container headers.

Transcoding and frame-analysis functions scale with frames x pixels, and both live in the
container metadata: the ISO-BMFF `moov` box (MP4/MOV, at the start or, by default, at the end)
or the Matroska/WebM Segment Info and Tracks. No frame is decoded. Only when the container
parse fails, and only if the caller opts in with `{"ffprobe": true}`, ffprobe is asked (with a
timeout), because spawning a process costs milliseconds and has no place in a hot path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping

from featurizers import _ebml, _isobmff
from featurizers._util import (
    DEFAULT_FFPROBE_TIMEOUT_S,
    Features,
    NotRecognized,
    header_bytes,
    max_elements,
    one_hot,
    opt_bool,
    opt_float,
    sample_bytes,
)

#: Normalised codec names used in the `codec.<name>` one-hot features.
CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2", "prores", "mjpeg", "other")
_FOURCC = {
    b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc", b"vp08": "vp8",
    b"vp09": "vp9", b"av01": "av1", b"mp4v": "mpeg4", b"apcn": "prores", b"apch": "prores",
    b"apcs": "prores", b"apco": "prores", b"ap4h": "prores", b"jpeg": "mjpeg", b"mjpa": "mjpeg",
}
_MKV_CODEC = {
    "V_MPEG4/ISO/AVC": "h264", "V_MPEGH/ISO/HEVC": "hevc", "V_VP8": "vp8", "V_VP9": "vp9",
    "V_AV1": "av1", "V_MPEG4/ISO/ASP": "mpeg4", "V_MPEG4/ISO/SP": "mpeg4", "V_MJPEG": "mjpeg",
    "V_PRORES": "prores",
}
_FFPROBE_CODEC = {"h264": "h264", "hevc": "hevc", "vp8": "vp8", "vp9": "vp9", "av1": "av1",
                  "mpeg4": "mpeg4", "mpeg2video": "mpeg2", "prores": "prores", "mjpeg": "mjpeg"}


def _mpegts(head: bytes) -> bool:
    return len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47


def sniff(head: bytes) -> bool:
    if _isobmff.sniff(head):
        return _isobmff.major_brand(head) not in _isobmff.AUDIO_BRANDS
    if _ebml.sniff(head):
        return not _ebml.audio_only(head)
    return _mpegts(head)


def _finish(feats: Features, nbytes: int, codec: str) -> Features:
    d = feats.get("duration_s", 0.0)
    if d > 0:
        feats["bitrate"] = nbytes * 8.0 / d
        if feats.get("fps", 0.0) > 0:
            feats["frames"] = round(d * feats["fps"])
    if feats.get("width", 0.0) > 0 and feats.get("height", 0.0) > 0:
        feats["megapixels"] = feats["width"] * feats["height"] / 1e6
    feats.update(one_hot("codec", codec))
    return feats


def _mp4(body: bytes, options: Mapping[str, object]) -> Features:
    movie = _isobmff.parse(body, max_elements(options))
    video = next((t for t in movie.tracks if t.handler == b"vide"), None)
    feats: Features = {"tracks": float(len(movie.tracks)),
                       "has_audio": float(any(t.handler == b"soun" for t in movie.tracks)),
                       "container.mp4": 1.0}
    if (duration := _isobmff.movie_duration_s(movie)) > 0:
        feats["duration_s"] = duration
    audio = next((t for t in movie.tracks if t.handler == b"soun"), None)
    if audio is not None and audio.sample_rate > 0:
        feats["sample_rate"], feats["channels"] = audio.sample_rate, float(audio.channels)
    codec = "other"
    if video is not None:
        feats["width"], feats["height"] = video.width, video.height
        if video.samples > 0 and video.sample_ticks > 0 and video.timescale > 0:
            feats["fps"] = video.samples * video.timescale / video.sample_ticks
        codec = _FOURCC.get(video.codec, "other")
    return _finish(feats, len(body), codec)


def mkv(body: bytes, options: Mapping[str, object]) -> Features:
    """Matroska/WebM features (also used by the audio featurizer for audio-only WebM)."""
    return _mkv(body, options)


def _mkv(body: bytes, options: Mapping[str, object]) -> Features:
    seg = _ebml.parse(body, max_elements(options), header_bytes(options))
    video = next((t for t in seg.tracks if t.kind == 1), None)
    feats: Features = {"tracks": float(len(seg.tracks)),
                       "has_audio": float(any(t.kind == 2 for t in seg.tracks)),
                       "container.webm" if seg.doctype == "webm" else "container.matroska": 1.0}
    codec = "other"
    if video is not None:
        feats["width"], feats["height"] = float(video.width), float(video.height)
        if video.default_duration_ns > 0:
            feats["fps"] = 1e9 / video.default_duration_ns
        elif (fps := _ebml.block_fps(body, seg, video.number, max_elements(options))) > 0:
            feats["fps"] = fps
        codec = _MKV_CODEC.get(video.codec_id, "other")
    audio = next((t for t in seg.tracks if t.kind == 2), None)
    if audio is not None and audio.sample_rate > 0:
        feats["sample_rate"], feats["channels"] = audio.sample_rate, float(audio.channels)
    duration = _ebml.duration_s(seg)
    if duration <= 0:  # written without seeking back: the last Cluster's last block + 1 frame
        last = _ebml.tail_duration_s(body, seg, sample_bytes(options), max_elements(options))
        if last > 0:
            duration = last + (1 / feats["fps"] if feats.get("fps", 0.0) > 0 else 0.0)
            feats["duration_estimated"] = 1.0
    if duration > 0:
        feats["duration_s"] = duration
    return _finish(feats, len(body), codec)


def _ratio(text: object) -> float:
    if not isinstance(text, str) or "/" not in text:
        return 0.0
    num, _, den = text.partition("/")
    try:
        n, d = float(num), float(den)
    except ValueError:
        return 0.0
    return n / d if d else 0.0


def ffprobe(body: bytes, timeout_s: float) -> Features:
    """Ask ffprobe about `body` (written to a temporary file so it can seek); opt-in only."""
    exe = shutil.which("ffprobe")
    if exe is None:
        raise NotRecognized("ffprobe fallback requested but ffprobe is not installed")
    fd, path = tempfile.mkstemp(prefix="shabari-feat-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        proc = subprocess.run(
            [exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", path],
            capture_output=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NotRecognized("ffprobe timed out") from exc
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise NotRecognized("ffprobe could not read the input")
    info = json.loads(proc.stdout or b"{}")
    streams = info.get("streams") or []
    fmt = info.get("format") or {}
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    feats: Features = {"ffprobe": 1.0, "tracks": float(len(streams)),
                       "has_audio": float(any(s.get("codec_type") == "audio" for s in streams))}
    try:
        feats["duration_s"] = float(fmt.get("duration", 0.0))
    except (TypeError, ValueError):
        pass
    codec = "other"
    if video is not None:
        feats["width"] = float(video.get("width") or 0)
        feats["height"] = float(video.get("height") or 0)
        fps = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
        if fps > 0 and math.isfinite(fps):
            feats["fps"] = fps
        codec = _FFPROBE_CODEC.get(str(video.get("codec_name")), "other")
    if not feats.get("duration_s") and video is None:
        raise NotRecognized("ffprobe found no video and no duration")
    return _finish(feats, len(body), codec)


def featurize(body: bytes, options: Mapping[str, object]) -> Features:
    """Video features: duration_s, width, height, fps, bitrate, frames, codec.<name>, ..."""
    head = body[:512]
    try:
        if _isobmff.sniff(head):
            return _mp4(body, options)
        if _ebml.sniff(head):
            return _mkv(body, options)
        raise NotRecognized("not an MP4/MOV or Matroska/WebM container")
    except Exception:
        if not opt_bool(options, "ffprobe", False):
            raise
        timeout = opt_float(options, "ffprobe_timeout_s", DEFAULT_FFPROBE_TIMEOUT_S, 0.1, 60.0)
        return ffprobe(body, timeout)
