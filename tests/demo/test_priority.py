"""The demo's own priority: a lower nice value and a high-share cpu cgroup, undone on exit."""

from __future__ import annotations

import os
from pathlib import Path

from shabari.demo.priority import Priority, raised


def _fake_cpu_root(tmp_path: Path) -> Path:
    root = tmp_path / "cpu"
    root.mkdir()
    (root / "cpu.shares").write_text("1024")
    (root / "cgroup.procs").write_text("")
    return root


def test_moves_into_a_high_share_group_and_back(tmp_path: Path) -> None:
    root = _fake_cpu_root(tmp_path)
    nice = os.getpriority(os.PRIO_PROCESS, 0)  # the same value: allowed without root
    with raised(nice, 32768, root=root) as prio:
        group = root / f"shabari-demo-{os.getpid()}"
        assert (group / "cpu.shares").read_text() == "32768"
        assert (group / "cgroup.procs").read_text() == str(os.getpid())
        assert prio == Priority(nice, 32768)
        assert "cpu.shares 32768" in prio.describe()
    # back in the group it came from (here the fake root), nice restored
    assert (root / "cgroup.procs").read_text() == str(os.getpid())
    assert os.getpriority(os.PRIO_PROCESS, 0) == nice


def test_without_a_cpu_controller_nothing_is_claimed(tmp_path: Path) -> None:
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    with raised(nice, 32768, root=tmp_path / "missing") as prio:
        assert prio.cpu_shares is None
    assert Priority(None, None).describe().startswith("normal priority")
