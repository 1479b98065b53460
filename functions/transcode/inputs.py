"""Seeded inputs for `transcode`: ffmpeg testsrc2 clips with noise (so they do not compress to
nothing), duration lognormal (median ~2 s, tail to 12 s), resolution mostly 360p/480p, sometimes
720p, at 24-30 fps. Generated with the real ffmpeg (`apt-get install ffmpeg`)."""

from __future__ import annotations

import math
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

RESOLUTIONS = [((426, 240), 0.2), ((640, 360), 0.35), ((854, 480), 0.3), ((1280, 720), 0.15)]


def generate(seed: int, n: int) -> list[tuple[bytes, str, str]]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed (apt-get install -y ffmpeg; `make test` "
                           "installs it)")
    rng = random.Random(f"transcode:{seed}")
    out = []
    with tempfile.TemporaryDirectory(prefix="shabari-gen-") as tmp:
        for i in range(n):
            duration = round(min(12.0, max(0.5, rng.lognormvariate(math.log(2.0), 0.8))), 2)
            (w, h), = rng.choices([r for r, _ in RESOLUTIONS], [p for _, p in RESOLUTIONS])
            fps = rng.choice([24, 25, 30])
            path = Path(tmp) / f"{i}.mp4"
            cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
                   "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={duration}",
                   "-vf", f"noise=alls=12:allf=t+u:all_seed={rng.getrandbits(16)}",
                   "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p",
                   "-threads", "1", "-y", str(path)]
            subprocess.run(cmd, check=True, capture_output=True)
            out.append((path.read_bytes(), "video/mp4", f"s{seed}-{i}-{w}x{h}-{duration}s"))
    return out
