"""Real media generators for the featurizer tests: Pillow images, numpy NPY and `wave` WAV
files, and ffmpeg recipes for video and compressed audio (uniquely named so that pytest's
rootdir imports cannot confuse it with another directory's helpers)."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed (apt-get install ffmpeg)")

#: The reference video every ffmpeg test file encodes: 2.5 s of testsrc, 320x240, 25 fps.
VIDEO_SRC = ["-f", "lavfi", "-i", "testsrc=duration=2.5:size=320x240:rate=25"]
AUDIO_SRC = ["-f", "lavfi", "-i", "sine=frequency=440:duration=3.2:sample_rate=44100"]

VIDEO_RECIPES: dict[str, list[str]] = {
    "mp4_moov_end.mp4": [*VIDEO_SRC, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "mp4_faststart.mp4": [*VIDEO_SRC, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
                          "yuv420p", "-movflags", "+faststart"],
    "mp4_with_audio.mp4": [*VIDEO_SRC, *AUDIO_SRC, "-c:v", "libx264", "-preset", "ultrafast",
                           "-c:a", "aac", "-shortest"],
    "mov_mpeg4.mov": [*VIDEO_SRC, "-c:v", "mpeg4"],
    "webm_vp8.webm": [*VIDEO_SRC, "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k"],
    "webm_vp9.webm": [*VIDEO_SRC, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                      "-b:v", "300k"],
    "mkv_h264.mkv": [*VIDEO_SRC, "-c:v", "libx264", "-preset", "ultrafast"],
    "mpegts.ts": [*VIDEO_SRC, "-c:v", "mpeg2video", "-f", "mpegts"],
    "piped_vp8.webm": [*VIDEO_SRC, "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k",
                       "-f", "webm"],
}
#: A second geometry and frame rate (1 s, 176x144, 30 fps) so golden values are not one point.
QCIF_SRC = ["-f", "lavfi", "-i", "testsrc=duration=1:size=176x144:rate=30"]
QCIF_RECIPES: dict[str, list[str]] = {
    "qcif30.mp4": [*QCIF_SRC, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    "qcif30.webm": [*QCIF_SRC, "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "100k"],
}
AUDIO_RECIPES: dict[str, list[str]] = {
    "stereo.flac": [*AUDIO_SRC, "-ac", "2"],
    "cbr.mp3": [*AUDIO_SRC, "-c:a", "libmp3lame", "-b:a", "128k"],
    "vbr.mp3": [*AUDIO_SRC, "-c:a", "libmp3lame", "-q:a", "4"],
    "noxing.mp3": [*AUDIO_SRC, "-c:a", "libmp3lame", "-b:a", "64k", "-write_xing", "0",
                   "-id3v2_version", "0"],
    "vorbis.ogg": [*AUDIO_SRC, "-c:a", "libvorbis"],
    "opus.opus": [*AUDIO_SRC, "-c:a", "libopus"],
    "aac.m4a": [*AUDIO_SRC, "-c:a", "aac"],
    "ext6ch.wav": [*AUDIO_SRC, "-ac", "6", "-c:a", "pcm_s24le"],
    "opus_stereo.webm": [*AUDIO_SRC, "-ac", "2", "-c:a", "libopus"],
    "piped_opus.webm": [*AUDIO_SRC, "-c:a", "libopus", "-f", "webm"],
}


def ffmpeg(out: Path, args: list[str]) -> bytes:
    """Run ffmpeg; a name starting with `piped_` is written to stdout (a non-seekable output,
    like a live stream or a browser MediaRecorder upload) instead of to the file."""
    assert FFMPEG is not None
    piped = out.name.startswith("piped_")
    proc = subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", *args,
                           "pipe:1" if piped else str(out)],
                          check=True, timeout=120, capture_output=True)
    return proc.stdout if piped else out.read_bytes()


def wav_bytes(seconds: float, rate: int, channels: int, sampwidth: int) -> bytes:
    """A real PCM WAV file of a 440 Hz tone, written with the stdlib `wave` module."""
    n = round(seconds * rate)
    t = np.arange(n) / rate
    tone = np.sin(2 * np.pi * 440 * t)
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[sampwidth]
    if sampwidth == 1:
        samples = ((tone + 1) * 127).astype(dtype)
    else:
        samples = (tone * (2 ** (8 * sampwidth - 1) - 1)).astype(dtype)
    frames = np.repeat(samples[:, None], channels, axis=1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return buf.getvalue()


def image_bytes(fmt: str, size: tuple[int, int], mode: str = "RGB", **save: object) -> bytes:
    """A real image file of a gradient (so encoders do real work) saved by Pillow."""
    w, h = size
    grad = (np.add.outer(np.arange(h), np.arange(w)) % 256).astype(np.uint8)
    img = Image.fromarray(grad, "L").convert(mode)
    if mode in ("RGBA", "LA"):  # a real, non-opaque alpha channel
        img.putalpha(Image.fromarray(grad // 2 + 64, "L"))
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr)
    else:
        np.lib.format.write_array(buf, arr, version=version)
    return buf.getvalue()
