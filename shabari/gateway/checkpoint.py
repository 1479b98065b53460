"""Durable model checkpoints: what the gateway has learned, on disk (DESIGN 4.3 durability).

With a state dir, every function's model lives in `state_dir/models/<function>.ckpt`. The
gateway writes the models that changed every `checkpoint_interval_s` (default 30 s) and once
more at shutdown, so a SIGKILL or a lost node costs at most one interval of learning.

Writes are atomic and durable: a temp file in the same directory, fsync'd, renamed over the
old one, the directory fsync'd; a crash mid-write leaves the previous checkpoint, never a torn
one. A write that fails (disk full, read-only volume) is logged, counted and retried at the
next interval; it never raises into the caller (a full disk must not stop the gateway, nor
its shutdown).

Restoring is validated by the policy (`restore` raises on bad magic, checksum, truncated
model bytes or impossible counters). A refused checkpoint is reported loudly (an ERROR line
naming the file and why), moved aside to `<function>.ckpt.rejected` for inspection, and the
function starts from scratch: a bad file must not keep the gateway down, nor be silently
overwritten by the next checkpoint.

Function names reach file names here, so they are DNS-1123 labels (checked at load,
`shabari.core.check_function_name`); `path` checks again and refuses anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shabari.core import FunctionName, ShabariError, check_function_name

log = logging.getLogger(__name__)

SUFFIX = ".ckpt"


class Checkpointable(Protocol):
    def checkpoint(self, function: FunctionName) -> bytes: ...

    def restore(self, function: FunctionName, data: bytes) -> None: ...


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


@dataclass
class CheckpointStore:
    """The models directory of one gateway: restore at start, write changed models."""

    directory: Path | None
    #: model version per function at its last successful write (or restore)
    written: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    #: False from a failed write until a write succeeds again
    healthy: bool = True
    last_error: str | None = None

    def path(self, function: str) -> Path | None:
        if self.directory is None:
            return None
        check_function_name(function)
        return self.directory / f"{function}{SUFFIX}"

    async def restore(self, policy: Checkpointable, functions: Iterable[str],
                      version: Callable[[str], int]) -> dict[str, int]:
        """Load every function's checkpoint that exists and is valid; returns the restored
        model versions. Invalid ones are refused loudly and moved aside (see module doc)."""
        restored: dict[str, int] = {}
        for name in functions:
            path = self.path(name)
            if path is None or not path.exists():
                continue
            try:
                data = await asyncio.to_thread(path.read_bytes)
                policy.restore(FunctionName(name), data)
            except (ShabariError, OSError, ValueError) as exc:
                aside = path.with_name(path.name + ".rejected")
                with contextlib.suppress(OSError):
                    os.replace(path, aside)
                log.error("checkpoint %s REFUSED (%s): %s starts from scratch; the file is "
                          "kept as %s", path, exc, name, aside.name)
                continue
            restored[name] = version(name)
            self.written[name] = restored[name]
        return restored

    async def write(self, policy: Checkpointable, functions: Iterable[str],
                    version: Callable[[str], int], *, force: bool = False) -> list[Path]:
        """Write the models of `functions` whose version changed since their last write (all
        of them with `force`). Never raises for I/O: a failure is logged and counted
        (`errors`, `healthy`), and the model is written again next time."""
        out: list[Path] = []
        if self.directory is None:
            return out
        failed: str | None = None
        for name in sorted(functions):
            v = version(name)
            if not force and self.written.get(name) == v:
                continue
            path = self.path(name)
            assert path is not None
            try:
                data = policy.checkpoint(FunctionName(name))
                await asyncio.to_thread(atomic_write, path, data)
            except (ShabariError, OSError) as exc:
                failed = f"{name}: {type(exc).__name__}: {exc}"
                continue
            self.written[name] = v
            out.append(path)
        if failed is None:
            if not self.healthy:
                log.info("checkpoints in %s are written again", self.directory)
            self.healthy, self.last_error = True, None
        else:
            self.errors += 1
            if self.healthy:
                log.error("checkpoint write failed in %s (%s); retrying every interval",
                          self.directory, failed)
            self.healthy, self.last_error = False, failed
        return out
