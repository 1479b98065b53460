"""The repository layout promises of the product card and DESIGN section 3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_required_top_level_exists() -> None:
    for name in ("pyproject.toml", "shabari", "operator", "featurizers", "functions", "charts",
                 "tests", "traces"):
        assert (ROOT / name).exists(), name


def test_operator_dir_does_not_shadow_stdlib() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-S", "-c",
         "import operator, collections; print(operator.__file__); print(operator.itemgetter)"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    first = out.stdout.splitlines()[0]
    assert "site-packages" not in first and not first.startswith(str(ROOT / "operator"))
    assert "itemgetter" in out.stdout
