"""Durability of what the gateway learned: model checkpoints on disk, restore at start.

Only a `LearningPolicy` has models to save; any other policy (a static baseline) makes every
method here a no-op. With a state dir, every function's model lives in
`state_dir/models/<function>.ckpt`; the gateway writes the models that changed every
`checkpoint_interval_s` (default 30 s, DESIGN 4.3) and once more at shutdown, so a SIGKILL or
a lost node costs at most one interval of learning; a model that learned more than 5% of
its outcomes since its last write (at least 20) is written at the next sweep (`due`), so a
busy function loses at most that fraction whatever the interval.

Writes are atomic and durable (temp file in the same directory, fsync, rename, fsync of the
directory) and run in a worker thread: a crash mid-write leaves the previous checkpoint, never
a torn one, and the event loop never blocks on the disk. A write that fails (disk full,
read-only volume) is logged, counted and retried at the next interval; it never raises into
the caller, so a full disk stops neither the gateway nor its shutdown (`healthy` is False
until a write succeeds again: `/readyz` says so).

Restoring is validated by the policy (bad magic, checksum, truncated model bytes, impossible
counters all raise). A refused checkpoint is reported loudly (an ERROR line naming the file and
why), moved aside to `<function>.ckpt.rejected` for inspection, and the function starts from
scratch: a bad file must not keep the gateway down, nor be overwritten silently.

Function names reach file names here; they are DNS-1123 labels (checked at load), and `path`
checks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shabari.agent.policy import LearningPolicy, Policy
from shabari.core import FunctionName, ShabariError, check_function_name

log = logging.getLogger(__name__)

#: a model is written early once a crash would lose this fraction of its outcomes ...
LOSS_FRACTION = 0.05
#: ... but not for fewer new outcomes than this
MIN_NEW_OUTCOMES = 20

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
        #: function -> model version at its last successful write (or restore)
        self.written: dict[str, int] = {}
        #: checkpoint rounds with a failed write; False from one until a write succeeds again
        self.errors = 0
        self.healthy = True
        self.last_error: str | None = None

    def path(self, function: str) -> Path | None:
        d = self.directory
        if d is None:
            return None
        check_function_name(function)  # never a path outside `directory`
        return d / f"{function}.ckpt"

    def learning_state(self, function: str) -> dict[str, Any]:
        if self.learner is None:
            return dict(STATIC_STATE)
        return dataclasses.asdict(self.learner.state(FunctionName(function)))

    def model_version(self, function: str) -> int:
        v = self.learning_state(function).get("model_version", 0)
        return int(v) if isinstance(v, int | float) else 0

    async def restore(self, functions: Iterable[str]) -> None:
        """Load each function's checkpoint when there is one; an invalid one is refused
        loudly and moved aside (see the module doc)."""
        if self.learner is None:
            return
        for name in functions:
            path = self.path(name)
            if path is None or not path.exists():
                continue
            try:
                data = await asyncio.to_thread(path.read_bytes)
                self.learner.restore(FunctionName(name), data)
            except (ShabariError, OSError, ValueError) as exc:
                aside = path.with_name(path.name + ".rejected")
                with contextlib.suppress(OSError):
                    os.replace(path, aside)
                log.error("checkpoint %s REFUSED (%s): %s starts from scratch; the file is "
                          "kept as %s", path, exc, name, aside.name)
                continue
            self.touched.add(name)
            self.restored[name] = self.written[name] = self.model_version(name)

    def due(self) -> list[str]:
        """Functions that learned so much since their last write that a crash now would cost
        more than `LOSS_FRACTION` of what they know (at least `MIN_NEW_OUTCOMES` outcomes):
        written at the next sweep, not at the next interval. The interval bounds the loss in
        time, this bounds it relative to what was learned (a young, busy model)."""
        if self.learner is None or self.directory is None:
            return []
        out = []
        for name in sorted(self.touched):
            version = self.model_version(name)
            new = version - self.written.get(name, 0)
            if new >= max(MIN_NEW_OUTCOMES, LOSS_FRACTION * version):
                out.append(name)
        return out

    async def write_all(self, *, force: bool = True,
                        only: Iterable[str] | None = None) -> list[Path]:
        """Write touched functions' models to `<directory>/<function>.ckpt`: all of them, or
        with `force=False` only those whose model version changed since their last write
        (of `only`, when given). Never raises for I/O: a failure is logged and counted, and
        retried next time."""
        written: list[Path] = []
        if self.learner is None or self.directory is None:
            return written
        failed: str | None = None
        names = self.touched if only is None else self.touched & set(only)
        for name in sorted(names):
            version = self.model_version(name)
            if not force and self.written.get(name) == version:
                continue
            path = self.path(name)
            assert path is not None
            try:
                data = self.learner.checkpoint(FunctionName(name))
                await asyncio.to_thread(atomic_write, path, data)
            except (ShabariError, OSError) as exc:
                failed = f"{name}: {type(exc).__name__}: {exc}"
                continue
            self.written[name] = version
            written.append(path)
        if failed is None:
            if not self.healthy:
                log.info("checkpoints are written to %s again", self.directory)
            self.healthy, self.last_error = True, None
        else:
            self.errors += 1
            if self.healthy:
                log.error("checkpoint write failed in %s (%s); retried every interval",
                          self.directory, failed)
            self.healthy, self.last_error = False, failed
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
    """Replace `path` by `data` so that a reader (or a crash) sees the old or the new bytes,
    never a mix; durable once this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not every filesystem can fsync a directory
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
