"""Micro-benchmark of `featurizers.extract` on large real inputs (prints numbers, asserts nothing).

Generates one real file per kind (Pillow JPEG/PNG of random noise, ffmpeg MP4 with moov at the
end and WebM, a `wave` WAV, ffmpeg MP3/FLAC, numpy NPY, CSV, JSON, text), each roughly
`--mb` megabytes, then reports the median wall time of `extract(body)` (kind auto-detected) in
microseconds. Run: `.venv/bin/python bench/featurizers_bench.py [--mb 20] [--repeat 200]`.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from featurizers import extract


def _jpeg(mb: int) -> bytes:
    side = int((mb * 1e6 / 1.15) ** 0.5)  # random noise at q=95: about 1.15 bytes/pixel
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
        buf, "JPEG", quality=95)
    return buf.getvalue()


def _png(mb: int) -> bytes:
    side = int((mb * 1e6 / 3) ** 0.5)
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
        buf, "PNG", compress_level=1)
    return buf.getvalue()


def _ffmpeg(args: list[str], suffix: str) -> bytes:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg not installed")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / f"out{suffix}"
        subprocess.run([exe, "-nostdin", "-loglevel", "error", "-y", *args, str(out)], check=True)
        return out.read_bytes()


def _mp4(mb: int) -> bytes:
    seconds = max(1, round(mb / 1.4))  # about 1.4 MB/s at this size and quality
    return _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
                    "-c:v", "mpeg4", "-q:v", "1"], ".mp4")


def _webm(mb: int) -> bytes:
    seconds = max(1, mb)  # about 1 MB/s at 8 Mbit/s
    return _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
                    "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "8M"],
                   ".webm")


def _mp3(mb: int) -> bytes:
    seconds = mb * 1e6 * 8 / 320e3
    return _ffmpeg(["-f", "lavfi", "-i", f"sine=duration={seconds:.0f}:sample_rate=44100",
                    "-c:a", "libmp3lame", "-b:a", "320k"], ".mp3")


def _wav(mb: int) -> bytes:
    n = mb * 1_000_000 // 4
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.zeros(n * 2, dtype=np.int16).tobytes())
    return buf.getvalue()


def _npy(mb: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((mb * 1_000_000 // 8 // 1000, 1000)))
    return buf.getvalue()


def _csv(mb: int) -> bytes:
    rng = np.random.default_rng(2)
    n = mb * 1_000_000 // 30
    vals = rng.random((n, 2))
    lines = "\n".join(f"{i},{a:.6f},{b:.6f}" for i, (a, b) in enumerate(vals))
    return ("id,a,b\n" + lines + "\n").encode()


def _json(mb: int) -> bytes:
    n = mb * 1_000_000 // 30
    return json.dumps([{"id": i, "name": f"n{i}"} for i in range(n)]).encode()


def _text(mb: int) -> bytes:
    line = b"the quick brown fox jumps over the lazy dog\n"
    return line * (mb * 1_000_000 // len(line))


MAKERS: dict[str, Callable[[int], bytes]] = {
    "image/jpeg": _jpeg, "image/png": _png, "video/mp4(moov at end)": _mp4, "video/webm": _webm,
    "audio/mp3": _mp3, "audio/wav": _wav, "array/npy": _npy, "table/csv": _csv,
    "json/array": _json, "text/plain": _text,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=20, help="approximate input size in MB")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per input")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    print(f"{'input':26} {'MB':>7} {'median us':>10} {'p95 us':>9}  features")
    for name, make in MAKERS.items():
        try:
            body = make(args.mb)
        except Exception as exc:  # a missing encoder should not hide the other numbers
            print(f"{name:26} skipped: {exc}")
            continue
        extract(body)  # warm up (imports, plugin scan)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            feats = extract(body)
            times.append((time.perf_counter() - t0) * 1e6)
        times.sort()
        med = statistics.median(times)
        p95 = times[int(0.95 * (len(times) - 1))]
        keys = [k for k in ("width", "height", "duration_s", "fps", "rows", "length", "dim0",
                            "lines") if k in feats]
        summary = " ".join(f"{k}={feats[k]:g}" for k in keys)
        if "malformed" in feats:
            summary += " MALFORMED"
        print(f"{name:26} {len(body) / 1e6:7.1f} {med:10.1f} {p95:9.1f}  {summary}")
        results[name] = {"bytes": float(len(body)), "median_us": med, "p95_us": p95}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
