"""Durability of what the gateway learned: model checkpoints on disk, restore at start.

Only a `LearningPolicy` has models to save; any other policy (a static baseline) makes every
method here a no-op. Checkpoints are written atomically in a worker thread, so a crash leaves
either the old or the new file, and the event loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shabari.agent.policy import LearningPolicy, Policy
from shabari.core import FunctionName, ShabariError

log = logging.getLogger(__name__)

#: `learning_state` of a policy without models
STATIC_STATE: dict[str, Any] = {"phase": "static", "outcomes_seen": 0, "model_version": 0}


class Checkpoints:
    """Which functions have a model worth saving, and where their checkpoints live."""

    def __init__(self, policy: Policy, directory: Path | None) -> None:
        self.learner: LearningPolicy | None = (
            policy if isinstance(policy, LearningPolicy) else None)
        self.directory = directory
        #: functions that decided (or were restored) since start: the ones to checkpoint
        self.touched: set[str] = set()
        #: function -> model version restored at start
        self.restored: dict[str, int] = {}

    def path(self, function: str) -> Path | None:
        d = self.directory
        return None if d is None else d / f"{function}.ckpt"

    def learning_state(self, function: str) -> dict[str, Any]:
        if self.learner is None:
            return dict(STATIC_STATE)
        return dataclasses.asdict(self.learner.state(FunctionName(function)))

    def model_version(self, function: str) -> int:
        v = self.learning_state(function).get("model_version", 0)
        return int(v) if isinstance(v, int | float) else 0

    async def restore(self, functions: Iterable[str]) -> None:
        """Load each function's checkpoint when there is one (a corrupt one is skipped)."""
        if self.learner is None:
            return
        for name in functions:
            path = self.path(name)
            if path is None or not path.exists():
                continue
            data = await asyncio.to_thread(path.read_bytes)
            try:
                self.learner.restore(FunctionName(name), data)
            except Exception as exc:  # a corrupt checkpoint must not keep the gateway down
                log.warning("checkpoint %s not restored (%s); starting %s from scratch",
                            path, exc, name)
                continue
            self.touched.add(name)
            self.restored[name] = self.model_version(name)

    async def write_all(self) -> list[Path]:
        """Write every touched function's model to `<directory>/<function>.ckpt`."""
        written: list[Path] = []
        if self.learner is None:
            return written
        for name in sorted(self.touched):
            path = self.path(name)
            if path is None:
                continue
            data = self.learner.checkpoint(FunctionName(name))
            await asyncio.to_thread(atomic_write, path, data)
            written.append(path)
        return written

    def refit(self, function: str) -> None:
        """Make the policy meet `function`'s new spec (right before its first decision).

        A learning policy's checkpoint round trip detaches the model from its old grid: the
        decision that follows keeps it when the new spec has the same grid, and starts a fresh
        model otherwise (`LearningPolicy.restore`). Static policies read the spec per decision.
        """
        if self.learner is None or function not in self.touched:
            return
        name = FunctionName(function)
        try:
            self.learner.restore(name, self.learner.checkpoint(name))
        except ShabariError as exc:
            log.warning("model of %s not carried over the spec change: %s", function, exc)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
