"""The bundled functions: what is in functions/, with validated specs and seeded input generators.

Every consumer of the bundled functions (the local backend, the gateway's default config, the
demo, `shabari profile`, tests) finds them here, so a function is added by adding a folder:

    functions/<name>/function.yaml   spec in the shared schema (shabari.core.specdict) plus an
                                     optional `description`
    functions/<name>/handler.py      `handle(body, content_type, ctx)` (+ optional `init(ctx)`)
    functions/<name>/inputs.py       `generate(seed: int, n: int) -> list[(body, content_type,
                                     label)]`: seeded, heavy-tailed input sizes
    functions/<name>/perf.csv        its committed performance table (`shabari profile`)

The root is `$SHABARI_FUNCTIONS_DIR` or the repository's functions/ folder.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shabari.core import ConfigError, FunctionSpec, SpecError, spec_from_mapping

__all__ = ["BundledFunction", "GeneratedInput", "bundled_functions", "functions_root"]


@dataclass(frozen=True, slots=True)
class GeneratedInput:
    """One generated invocation input; `label` is unique per (function, seed, index)."""

    body: bytes
    content_type: str
    label: str


@dataclass(frozen=True)
class BundledFunction:
    name: str
    directory: Path
    spec: FunctionSpec
    description: str

    @property
    def perf_table_path(self) -> Path | None:
        path = self.directory / "perf.csv"
        return path if path.is_file() else None

    @property
    def handler_path(self) -> Path:
        return self.directory / "handler.py"

    def generate_inputs(self, seed: int, n: int) -> list[GeneratedInput]:
        """`n` inputs drawn with `seed` (same seed, same bytes) from the function's generator."""
        module = _load_inputs_module(self.directory)
        raw = module.generate(seed, n)
        out: list[GeneratedInput] = []
        for i, item in enumerate(raw):
            body, content_type, label = item
            out.append(GeneratedInput(bytes(body), str(content_type), str(label) or f"in{i}"))
        return out


def _load_inputs_module(directory: Path) -> Any:
    path = directory / "inputs.py"
    if not path.is_file():
        raise ConfigError(f"{directory}: bundled function has no inputs.py generator")
    name = f"shabari_inputs_{directory.name.replace('-', '_')}"
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__file__", None) == str(path):
        return cached
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def functions_root() -> Path:
    """`$SHABARI_FUNCTIONS_DIR`, else `<repo>/functions` (next to the `shabari` package)."""
    env = os.environ.get("SHABARI_FUNCTIONS_DIR")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2] / "functions"


def load_function(directory: Path) -> BundledFunction:
    """Parse one function folder (errors name the file and the offending field)."""
    spec_path = directory / "function.yaml"
    try:
        data = yaml.safe_load(spec_path.read_text())
    except OSError as exc:
        raise ConfigError(f"{spec_path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{spec_path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{spec_path}: expected a mapping at the top level")
    data = dict(data)
    description = str(data.pop("description", "") or "")
    try:
        spec = spec_from_mapping(directory.name, data)
    except SpecError as exc:
        raise SpecError(exc.reason, field=f"{spec_path}: {exc.field}" if exc.field
                        else str(spec_path)) from None
    if not (directory / "handler.py").is_file():
        raise ConfigError(f"{directory}: bundled function has no handler.py")
    return BundledFunction(directory.name, directory, spec, description)


def bundled_functions(root: str | Path | None = None) -> dict[str, BundledFunction]:
    """Every folder under `root` with a function.yaml, by name (sorted)."""
    base = Path(root) if root is not None else functions_root()
    if not base.is_dir():
        raise ConfigError(f"functions directory {base} does not exist "
                          "(set SHABARI_FUNCTIONS_DIR)")
    return {d.name: load_function(d) for d in sorted(base.iterdir())
            if d.is_dir() and (d / "function.yaml").is_file()}
