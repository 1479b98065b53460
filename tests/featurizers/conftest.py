"""Session fixtures: real media generated once with Pillow, numpy and ffmpeg.

ffmpeg-made files are skipped (with the reason) when ffmpeg is absent; `make test` installs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from feat_media import (
    AUDIO_RECIPES,
    FFMPEG,
    QCIF_RECIPES,
    VIDEO_RECIPES,
    ffmpeg,
    image_bytes,
    npy_bytes,
    wav_bytes,
)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("featurizer-media")


@pytest.fixture(scope="session")
def videos(media_dir: Path) -> dict[str, bytes]:
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    recipes = {**VIDEO_RECIPES, **QCIF_RECIPES}
    return {name: ffmpeg(media_dir / name, args) for name, args in recipes.items()}


@pytest.fixture(scope="session")
def audios(media_dir: Path) -> dict[str, bytes]:
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed (apt-get install ffmpeg)")
    return {name: ffmpeg(media_dir / name, args) for name, args in AUDIO_RECIPES.items()}


@pytest.fixture(scope="session")
def corpus(videos: dict[str, bytes], audios: dict[str, bytes]) -> dict[str, bytes]:
    """One real file of every format, the seeds of the property tests."""
    files = dict(videos)
    files.update(audios)
    files["tone.wav"] = wav_bytes(0.5, 8000, 1, 2)
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"),
                     ("TIFF", "tif")):
        files[f"img.{ext}"] = image_bytes(fmt, (64, 48))
    files["progressive.jpg"] = image_bytes("JPEG", (64, 48), progressive=True)
    files["lossless.webp"] = image_bytes("WEBP", (33, 17), lossless=True)
    files["arr.npy"] = npy_bytes(np.zeros((7, 3), dtype=np.float32))
    files["doc.json"] = b'{"a": [1, 2, {"b": "x]}"}], "c": null}'
    files["rows.csv"] = b"name,age,city\nann,31,paris\nbob,42,rome\n"
    files["notes.txt"] = "Hello wörld\nsecond line\n".encode()
    return files
