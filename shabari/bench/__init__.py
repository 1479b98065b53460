"""Overhead benchmarks (`shabari bench decide|gateway`, DESIGN 4.6).

They print numbers and write JSON; they assert nothing about timing. Each benchmark lives in
its own module, imported only when asked for, so one missing piece does not break the other.
"""

from __future__ import annotations

import argparse
import importlib


def run(args: argparse.Namespace) -> int:
    """Dispatch on `args.which` ("decide" or "gateway") to that module's `run(args)`."""
    module = importlib.import_module(f"shabari.bench.{args.which}")
    result: int = module.run(args)
    return result
