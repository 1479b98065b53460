"""Run the demo's own processes ahead of other work on a shared machine.

Why: the demo measures latency over HTTP. Its pods already get a high CPU weight (the local
backend's `cpu_shares`), but the client that times each request and the gateways that route it
run outside any pod; on a two-core machine with a load average of 10 they would wait for a core
at every step, and that wait would land in every policy's latency. This module gives the demo
process (and so the gateways it starts, which inherit both) a lower nice value and, where the
cgroup v1 cpu controller is writable (root), a cgroup of its own with a high `cpu.shares`
(nice only ranks a process against others of the same cgroup). Both are undone on exit.
Without permission it changes nothing and says so.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")


@dataclass(frozen=True, slots=True)
class Priority:
    """What `raised` managed to set (None: left as it was)."""

    nice: int | None
    cpu_shares: int | None

    def describe(self) -> str:
        parts = []
        if self.nice is not None:
            parts.append(f"nice {self.nice}")
        if self.cpu_shares is not None:
            parts.append(f"cgroup cpu.shares {self.cpu_shares}")
        return ", ".join(parts) if parts else "normal priority (not root?)"


def _own_cpu_cgroup() -> Path | None:
    """This process's v1 cpu cgroup directory, or None (v2, or not mounted)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            d = CPU_ROOT / path.lstrip("/")
            return d if d.is_dir() else None
    return None


@contextlib.contextmanager
def raised(nice: int, cpu_shares: int, root: Path = CPU_ROOT) -> Iterator[Priority]:
    """Lower this process's nice value and move it into a high-share cpu cgroup, for a while."""
    old_nice: int | None = None
    try:
        old_nice = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except (OSError, AttributeError):
        old_nice = None
    home = _own_cpu_cgroup() if root == CPU_ROOT else root
    group: Path | None = None
    if home is not None and (root / "cpu.shares").is_file():
        group = root / f"shabari-demo-{os.getpid()}"
        try:
            group.mkdir(exist_ok=True)
            (group / "cpu.shares").write_text(str(cpu_shares))
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            group = None
    try:
        yield Priority(nice if old_nice is not None else None,
                       cpu_shares if group is not None else None)
    finally:
        if group is not None and home is not None:
            with contextlib.suppress(OSError):
                (home / "cgroup.procs").write_text(str(os.getpid()))
            with contextlib.suppress(OSError):
                group.rmdir()
        if old_nice is not None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, old_nice)
