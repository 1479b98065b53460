"""Video transcode with ffmpeg: scale to 360p and re-encode H.264 (libx264, veryfast).

Cost ~ duration x resolution x fps. x264 is multi-threaded: `-threads` comes from the CPU
allocation (`ctx.threads`), so an in-place resize changes how many cores the next transcode
uses. ffmpeg runs as a child of the worker, so its CPU time (RUSAGE_CHILDREN) and memory (the
pod's cgroup) are counted."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def handle(body: bytes, content_type: str, ctx: Any) -> tuple[bytes, str]:
    if not body:
        raise ValueError("empty input: expected a video file")
    with tempfile.TemporaryDirectory(prefix="shabari-transcode-") as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out.mp4"
        src.write_bytes(body)
        threads = str(ctx.threads)
        cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", threads,
               "-i", str(src), "-vf", "scale=-2:'min(360,ih)'", "-c:v", "libx264",
               "-preset", "veryfast", "-crf", "28", "-threads", threads, "-an", "-y", str(dst)]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise ValueError(f"ffmpeg failed ({proc.returncode}): {err[-1] if err else ''}")
        return dst.read_bytes(), "video/mp4"
