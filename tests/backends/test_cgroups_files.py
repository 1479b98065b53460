"""cgroup detection and the files each version is driven through.

A fake cgroup tree (plain directories and files under tmp_path) checks what we write for v2 and
v1 and how we parse what the kernel reports, so the v2 path is tested on v1-only machines too.
One class runs against the real hierarchy when it is writable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shabari.backends.cgroups import (
    CFS_PERIOD_US,
    PARENT,
    CgroupManager,
    CgroupMode,
    FallbackLimits,
    detect,
    shares_to_weight,
)


def fake_v2(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def fake_v1(root: Path) -> Path:
    for ctrl, files in {"cpu": ["cpu.cfs_quota_us", "cpu.cfs_period_us"],
                        "memory": ["memory.limit_in_bytes"]}.items():
        (root / ctrl).mkdir(parents=True, exist_ok=True)
        for f in files:
            (root / ctrl / f).write_text("-1\n")
    return root


class TestDetection:
    def test_v2_when_unified_hierarchy_has_cpu_and_memory(self, tmp_path: Path) -> None:
        layout = detect(fake_v2(tmp_path / "cg"))
        assert layout.mode is CgroupMode.V2
        assert layout.cpu_root == layout.memory_root == tmp_path / "cg"
        assert "+cpu +memory" in (tmp_path / "cg" / "cgroup.subtree_control").read_text()

    def test_v1_when_controllers_are_separate_hierarchies(self, tmp_path: Path) -> None:
        layout = detect(fake_v1(tmp_path / "cg"))
        assert layout.mode is CgroupMode.V1
        assert layout.cpu_root == tmp_path / "cg" / "cpu"
        assert layout.memory_root == tmp_path / "cg" / "memory"

    def test_v2_without_controllers_falls_through_to_v1_or_none(self, tmp_path: Path) -> None:
        root = tmp_path / "cg"
        root.mkdir()
        (root / "cgroup.controllers").write_text("hugetlb\n")  # like a hybrid host's unified/
        layout = detect(root)
        assert layout.mode is CgroupMode.NONE
        assert "lacks cpu/memory" in layout.reason and "v1" in layout.reason

    def test_nothing_writable_is_none_with_a_reason(self, tmp_path: Path) -> None:
        layout = detect(tmp_path / "does-not-exist")
        assert layout.mode is CgroupMode.NONE and layout.reason


class TestV2Files:
    def test_limits_peak_and_oom_counters(self, tmp_path: Path) -> None:
        mgr = CgroupManager(fake_v2(tmp_path / "cg"), instance="1-abc")
        cg = mgr.create("pod-1", 250, 128)
        d = tmp_path / "cg" / PARENT / "1-abc" / "pod-1"
        assert cg.dirs == (d,)
        assert (d / "cpu.max").read_text() == f"25000 {CFS_PERIOD_US}"
        assert (d / "memory.max").read_text() == str(128 * 1024 * 1024)
        assert (d / "memory.swap.max").read_text() == "0"
        assert cg.cpu_limit_millicores() == 250
        cg.set_cpu(1500)
        assert (d / "cpu.max").read_text() == f"150000 {CFS_PERIOD_US}"
        (d / "memory.peak").write_text(str(100 * 1024 * 1024))
        (d / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 2\n")
        assert cg.peak_mib() == 100
        assert (cg.oom_kills(), cg.limit_hits()) == (2, 7)

    def test_throttled_time_from_cpu_stat(self, tmp_path: Path) -> None:
        cg = CgroupManager(fake_v2(tmp_path / "cg"), instance="1-t").create("p", 500, 128)
        d = tmp_path / "cg" / PARENT / "1-t" / "p"
        assert cg.throttled_ms() is None  # no cpu.stat: the kernel does not say
        (d / "cpu.stat").write_text("usage_usec 900\nnr_periods 9\nnr_throttled 2\n"
                                    "throttled_usec 47500\n")
        assert cg.throttled_ms() == 47.5

    def test_weights_follow_kubernetes_and_the_instance_weight(self, tmp_path: Path) -> None:
        root = fake_v2(tmp_path / "cg")
        (root / PARENT).mkdir()
        (root / PARENT / "cpu.weight").write_text("100\n")
        mgr = CgroupManager(root, instance="1-w", cpu_shares=16 * 1024)
        mgr.create("p", 2000, 128)
        inst = tmp_path / "cg" / PARENT / "1-w"
        assert (inst / "p" / "cpu.weight").read_text() == str(shares_to_weight(2048))
        assert (inst / "cpu.weight").read_text() == str(shares_to_weight(16384))
        # the shared parent must weigh as much, or the instance weight is capped by it
        assert (root / PARENT / "cpu.weight").read_text() == str(shares_to_weight(16384))
        mgr._pods.clear()  # fake tree: files in dirs cannot be rmdir'ed like cgroupfs
        mgr.close()
        assert (root / PARENT / "cpu.weight").read_text() == "100"  # restored
        assert shares_to_weight(2) == 1 and shares_to_weight(262144) == 10000

    def test_tiny_quota_is_clamped_to_the_kernel_minimum(self, tmp_path: Path) -> None:
        cg = CgroupManager(fake_v2(tmp_path / "cg"), instance="1-x").create("p", 1, 64)
        assert cg.cpu_limit_millicores() == 10  # 1 ms per 100 ms period


class TestV1Files:
    def test_quota_period_limit_and_oom_control(self, tmp_path: Path) -> None:
        mgr = CgroupManager(fake_v1(tmp_path / "cg"), instance="1-abc")
        cg = mgr.create("p", 500, 256)
        cpu = tmp_path / "cg" / "cpu" / PARENT / "1-abc" / "p"
        mem = tmp_path / "cg" / "memory" / PARENT / "1-abc" / "p"
        assert cg.dirs == (cpu, mem)
        assert (cpu / "cpu.cfs_period_us").read_text() == str(CFS_PERIOD_US)
        assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
        assert (mem / "memory.limit_in_bytes").read_text() == str(256 * 1024 * 1024)
        assert (cpu / "cpu.shares").read_text() == "512"  # 1024 per vCPU, as the kubelet sets
        assert not (cpu.parent / "cpu.shares").exists()  # no instance weight unless asked
        (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
        (mem / "memory.failcnt").write_text("12\n")
        (mem / "memory.max_usage_in_bytes").write_text(str(64 * 1024 * 1024))
        assert (cg.oom_kills(), cg.limit_hits(), cg.peak_mib()) == (3, 12, 64)
        cg.reset_peak()
        assert (mem / "memory.max_usage_in_bytes").read_text() == "0"

    def test_throttled_time_is_read_in_nanoseconds(self, tmp_path: Path) -> None:
        cg = CgroupManager(fake_v1(tmp_path / "cg"), instance="1-t").create("p", 500, 128)
        cpu = tmp_path / "cg" / "cpu" / PARENT / "1-t" / "p"
        (cpu / "cpu.stat").write_text("nr_periods 9\nnr_throttled 2\nthrottled_time 47500000\n")
        assert cg.throttled_ms() == 47.5

    def test_stale_instances_of_dead_backends_are_reaped(self, tmp_path: Path) -> None:
        root = fake_v1(tmp_path / "cg")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        for ctrl in ("cpu", "memory"):
            (root / ctrl / PARENT / f"{dead}-old" / "pod").mkdir(parents=True)
            (root / ctrl / PARENT / f"{os.getpid()}-live" / "pod").mkdir(parents=True)
        mgr = CgroupManager(root, instance=f"{os.getpid()}-me")
        removed = mgr.reap_stale()
        assert sorted(p.name for p in removed) == [f"{dead}-old"] * 2
        for ctrl in ("cpu", "memory"):
            assert not (root / ctrl / PARENT / f"{dead}-old").exists()
            assert (root / ctrl / PARENT / f"{os.getpid()}-live").exists()  # a live backend's

    def test_a_tree_another_backend_is_reaping_is_skipped_not_fatal(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        root = fake_v1(tmp_path / "cg")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        for ctrl in ("cpu", "memory"):
            (root / ctrl / PARENT / f"{dead}-old" / "pod").mkdir(parents=True)

        def vanishing(self: Path, pattern: str) -> Iterator[Path]:
            # what rglob raises when a sub-cgroup is removed under it (seen with two demos
            # starting gateways while a third backend reaped the same dead instance)
            raise FileNotFoundError(2, "No such file or directory", str(self / "pod"))
            yield self

        monkeypatch.setattr(Path, "rglob", vanishing)
        assert CgroupManager(root, instance=f"{os.getpid()}-me").reap_stale() == []


class TestFallback:
    def test_affinity_covers_ceil_vcpus_and_rlimit_adds_overhead(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        lim = FallbackLimits.for_size(250, 128, slot=0, virtual_overhead_mib=512)
        assert len(lim.cpus) == 1 and lim.cpus[0] in cpus
        assert lim.address_space_bytes == (128 + 512) * 1024 * 1024
        wide = FallbackLimits.for_size(64_000, 128, slot=3)
        assert sorted(wide.cpus) == cpus  # never more than this process may use
        assert wide.worker_args()[0:1] == ["--affinity"]


@pytest.mark.cgroups
@pytest.mark.skipif(detect().mode is CgroupMode.NONE, reason="needs writable cgroups (root)")
class TestRealHierarchy:
    def test_create_limit_and_remove_leave_nothing_behind(self) -> None:
        mgr = CgroupManager()
        cg = mgr.create("probe", 300, 96)
        try:
            assert cg.cpu_limit_millicores() == 300
            assert all(d.is_dir() for d in cg.dirs)
            assert cg.throttled_ms() == 0.0  # nothing has run in it yet
        finally:
            mgr.close()
        assert not any(d.exists() for d in cg.dirs)
        assert not any(d.exists() for d in mgr.instance_dirs())
