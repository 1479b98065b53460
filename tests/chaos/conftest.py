"""Fixtures of the chaos tests (the harness is `harness.py`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import GatewayProc


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Any]:
    """A factory of started gateways; every one is killed at the end of the test."""
    made: list[GatewayProc] = []

    def make(**kwargs: Any) -> GatewayProc:
        gw = GatewayProc(tmp_path, **kwargs)
        made.append(gw)
        return gw.start()

    yield make
    for gw in made:
        gw.stop()


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 256 KiB tmpfs: a state dir that fills up for real (root only; skipped otherwise)."""
    d = Path(tempfile.mkdtemp(prefix="shabari-chaos-disk-"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip("cannot mount a tmpfs here (needs root): " + r.stderr.decode().strip())
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)
        shutil.rmtree(d, ignore_errors=True)
