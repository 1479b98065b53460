"""Session fixtures: real media generated once with Pillow, numpy and ffmpeg.

Tests that need an ffmpeg-made file skip (with the reason) when ffmpeg, or the encoder that
file needs, is absent; `make test` installs ffmpeg.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
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


class FfmpegMedia(Mapping[str, bytes]):
    """Files made by ffmpeg on first access and cached; a file ffmpeg cannot make (no ffmpeg,
    or a build without that encoder) skips the test that asked for it, with the reason."""

    def __init__(self, directory: Path, recipes: dict[str, list[str]]) -> None:
        self._dir, self._recipes = directory, recipes
        self._made: dict[str, bytes] = {}
        self._failed: dict[str, str] = {}

    def _make(self, name: str) -> bytes | None:
        if name not in self._made and name not in self._failed:
            if FFMPEG is None:
                self._failed[name] = "ffmpeg not installed (apt-get install ffmpeg)"
            else:
                try:
                    self._made[name] = ffmpeg(self._dir / name, self._recipes[name])
                except subprocess.CalledProcessError as exc:
                    err = (exc.stderr or b"").decode(errors="replace").strip()
                    self._failed[name] = f"ffmpeg cannot make {name}: {err}"
        return self._made.get(name)

    def __getitem__(self, name: str) -> bytes:
        body = self._make(name)
        if body is None:
            pytest.skip(self._failed[name])
        return body

    def __iter__(self) -> Iterator[str]:
        return iter(self._recipes)

    def __len__(self) -> int:
        return len(self._recipes)

    def available(self) -> dict[str, bytes]:
        """Every file that could be made (for the property-test corpus)."""
        return {name: body for name in self._recipes if (body := self._make(name)) is not None}


@pytest.fixture(scope="session")
def videos(media_dir: Path) -> FfmpegMedia:
    return FfmpegMedia(media_dir, {**VIDEO_RECIPES, **QCIF_RECIPES})


@pytest.fixture(scope="session")
def audios(media_dir: Path) -> FfmpegMedia:
    return FfmpegMedia(media_dir, AUDIO_RECIPES)


@pytest.fixture(scope="session")
def corpus(videos: FfmpegMedia, audios: FfmpegMedia) -> dict[str, bytes]:
    """One real file of every format, the seeds of the property tests (ffmpeg-made ones only
    where ffmpeg could make them)."""
    files = videos.available()
    files.update(audios.available())
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
