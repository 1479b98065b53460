"""Real CPU and memory limits for local pods: cgroup v2, cgroup v1, or a weaker fallback.

Why its own module: the local backend's promise ("a pod at 250m gets a quarter of a core and is
OOM-killed past its memory") rests entirely on these files, and the two cgroup versions spell
everything differently. Detection happens at run time:

- **v2** (unified hierarchy with the `cpu` and `memory` controllers): `cpu.max`, `memory.max`,
  `memory.peak`, `memory.events` (`oom_kill`);
- **v1** (per-controller hierarchies, as on our CI machines): `cpu.cfs_quota_us` /
  `cpu.cfs_period_us`, `memory.limit_in_bytes`, `memory.max_usage_in_bytes`,
  `memory.oom_control` (`oom_kill`), `memory.failcnt`;
- **none writable**: `FallbackLimits` (CPU affinity + RLIMIT_AS), with one clear warning.

Layout: `<root>[/<controller>]/shabari/<instance>/<pod>`, where `<instance>` is
`<backend pid>-<random>`. A backend removes its own tree on close; at start it removes the trees
of instances whose process is gone (a crashed backend), killing any worker left in them, so
cgroup directories never leak.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import math
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/fs/cgroup"
PARENT = "shabari"
CFS_PERIOD_US = 100_000
#: the kernel refuses quotas below 1 ms
MIN_QUOTA_US = 1_000


def shares_to_weight(shares: int) -> int:
    """cgroup v1 `cpu.shares` (2..262144, 1024 = one normal task) -> v2 `cpu.weight` (1..10000),
    with the kubelet's conversion so both versions order pods alike."""
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def shares_for(cpu_millicores: int) -> int:
    """CPU weight of a pod as Kubernetes sets it: 1024 shares per requested vCPU."""
    return max(2, cpu_millicores * 1024 // 1000)


def _write_shares(directory: Path, shares: int, v2: bool) -> None:
    if v2:
        _write(directory / "cpu.weight", str(shares_to_weight(shares)))
    else:
        _write(directory / "cpu.shares", str(shares))


class CgroupMode(enum.Enum):
    V2 = "v2"
    V1 = "v1"
    NONE = "none"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _read(path: Path) -> str:
    with open(path) as fh:
        return fh.read()


def _parse_keyed(text: str) -> dict[str, int]:
    """Parse `key value` lines (memory.oom_control, memory.events, memory.stat)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs. A zombie (killed, not yet reaped by its parent: a
    gateway SIGKILLed a moment ago) is dead: its cgroups and temp dirs are stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def owner_gone(owner: str, current: str = "") -> bool:
    """Is an instance named `<pid>-<token>` (a cgroup tree, a temp dir) stale: is its
    process dead? (Another backend of this very process is alive, so never ours.)"""
    pid = owner.split("-", 1)[0]
    if not pid.isdigit() or owner == current:
        return False
    return not pid_alive(int(pid))


def _procs(directory: Path) -> list[int]:
    try:
        return [int(p) for p in _read(directory / "cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def _remove_tree(directory: Path, timeout_s: float = 5.0) -> bool:
    """Kill what runs in `directory` (and below), then rmdir bottom-up. True when gone."""
    if not directory.exists():
        return True
    try:
        children = sorted((p for p in directory.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True)
    except FileNotFoundError:  # another backend is reaping the same stale tree right now
        return not directory.exists()
    ok = True
    for d in [*children, directory]:
        deadline = time.monotonic() + timeout_s
        while True:
            for pid in _procs(d):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    log.warning("could not remove cgroup %s: %s", d, exc)
                    ok = False
                    break
                time.sleep(0.02)
    return ok


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    mode: CgroupMode
    #: directories under which `shabari/` is created: one (v2) or cpu + memory (v1)
    cpu_root: Path | None = None
    memory_root: Path | None = None
    reason: str = ""

    @property
    def roots(self) -> tuple[Path, ...]:
        roots = [r for r in (self.cpu_root, self.memory_root) if r is not None]
        return tuple(dict.fromkeys(roots))


def _probe_writable(base: Path) -> str:
    """Empty string when we can create `base/shabari`, else why not."""
    parent = base / PARENT
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / f".probe-{os.getpid()}-{secrets.token_hex(2)}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"{parent}: {exc.strerror or exc}"
    return ""


def detect(root: str | Path = DEFAULT_ROOT) -> CgroupLayout:
    """Which cgroup interface can we write here? (v2 preferred, then v1, else none.)"""
    base = Path(root)
    controllers = base / "cgroup.controllers"
    reasons: list[str] = []
    if controllers.is_file():
        try:
            available = set(_read(controllers).split())
        except OSError:
            available = set()
        if {"cpu", "memory"} <= available:
            try:
                _write(base / "cgroup.subtree_control", "+cpu +memory")
            except OSError as exc:
                reasons.append(f"v2: cannot enable cpu/memory at {base} ({exc.strerror})")
            else:
                why = _probe_writable(base)
                if not why:
                    try:
                        _write(base / PARENT / "cgroup.subtree_control", "+cpu +memory")
                        return CgroupLayout(CgroupMode.V2, base, base)
                    except OSError as exc:
                        why = f"{base / PARENT}: {exc.strerror}"
                reasons.append(f"v2: {why}")
        else:
            reasons.append(f"v2: {controllers} lacks cpu/memory ({' '.join(sorted(available))})")
    cpu, mem = base / "cpu", base / "memory"
    if (cpu / "cpu.cfs_quota_us").is_file() and (mem / "memory.limit_in_bytes").is_file():
        why = _probe_writable(cpu) or _probe_writable(mem)
        if not why:
            return CgroupLayout(CgroupMode.V1, cpu, mem)
        reasons.append(f"v1: {why}")
    else:
        reasons.append(f"v1: no cpu/memory controllers under {base}")
    return CgroupLayout(CgroupMode.NONE, reason="; ".join(reasons))


class PodCgroup:
    """The cgroup(s) of one pod: set CPU/memory, read peak memory and OOM kills."""

    def __init__(self, layout: CgroupLayout, cpu_dir: Path, memory_dir: Path) -> None:
        self.layout = layout
        self.cpu_dir = cpu_dir
        self.memory_dir = memory_dir
        self.memory_limit_mib: int | None = None
        #: memory files read around every invocation, opened once: a pread at offset 0
        #: re-reads (re-generates) a cgroupfs file, where open + read + close (and building
        #: the path) cost several times more on the hot path
        self._fds: dict[str, int] = {}

    def _hot_read(self, name: str) -> str:
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.memory_dir / name, os.O_RDONLY)
        return os.pread(fd, 1 << 16, 0).decode()

    def _hot_keyed(self, name: str) -> dict[str, int]:
        with contextlib.suppress(OSError):
            return _parse_keyed(self._hot_read(name))
        return {}

    def close_files(self) -> None:
        """Close the files kept open (the pod is going away)."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def dirs(self) -> tuple[Path, ...]:
        """Directories a worker must join (write its pid into `cgroup.procs`)."""
        return tuple(dict.fromkeys((self.cpu_dir, self.memory_dir)))

    @property
    def v2(self) -> bool:
        return self.layout.mode is CgroupMode.V2

    def set_cpu(self, cpu_millicores: int) -> None:
        """Cap at `cpu_millicores` (CFS quota) and weigh it like Kubernetes does under contention."""
        quota = max(MIN_QUOTA_US, cpu_millicores * CFS_PERIOD_US // 1000)
        if self.v2:
            _write(self.cpu_dir / "cpu.max", f"{quota} {CFS_PERIOD_US}")
        else:
            _write(self.cpu_dir / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(self.cpu_dir / "cpu.cfs_quota_us", str(quota))
        with contextlib.suppress(OSError):
            _write_shares(self.cpu_dir, shares_for(cpu_millicores), self.v2)

    def cpu_limit_millicores(self) -> int | None:
        try:
            if self.v2:
                quota, period = _read(self.cpu_dir / "cpu.max").split()
                return None if quota == "max" else int(quota) * 1000 // int(period)
            q = int(_read(self.cpu_dir / "cpu.cfs_quota_us"))
            p = int(_read(self.cpu_dir / "cpu.cfs_period_us"))
            return None if q < 0 else q * 1000 // p
        except (OSError, ValueError):
            return None

    def throttled_ms(self) -> float | None:
        """Time the pod's tasks have spent throttled by its CFS quota so far (ms; `cpu.stat`:
        v2 `throttled_usec`, v1 `throttled_time` in ns); None where the kernel does not say.

        A run's latency under a quota is its running time plus this: a run that needs a little
        more CPU than one period's quota may or may not wait out the rest of a period,
        depending on where in the period it starts (docs/demo.md measures it)."""
        try:
            stat = _parse_keyed(_read(self.cpu_dir / "cpu.stat"))
        except OSError:
            return None
        if self.v2:
            usec = stat.get("throttled_usec")
            return None if usec is None else usec / 1000.0
        nsec = stat.get("throttled_time")
        return None if nsec is None else nsec / 1e6

    def set_memory(self, memory_mib: int) -> None:
        limit = str(memory_mib * 1024 * 1024)
        if self.v2:
            _write(self.memory_dir / "memory.max", limit)
            with contextlib.suppress(OSError):  # no swap: over the limit means OOM
                _write(self.memory_dir / "memory.swap.max", "0")
        else:
            _write(self.memory_dir / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):
                _write(self.memory_dir / "memory.swappiness", "0")
        self.memory_limit_mib = memory_mib

    def reset_peak(self) -> None:
        """Start a new peak-memory window (v1 always; v2 on kernels that allow it)."""
        with contextlib.suppress(OSError):
            if self.v2:
                _write(self.memory_dir / "memory.peak", "0")
            else:
                _write(self.memory_dir / "memory.max_usage_in_bytes", "0")

    def peak_mib(self) -> float | None:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int(self._hot_read(name)) / (1024 * 1024)
        except (OSError, ValueError):
            return None

    def inactive_file_mib(self) -> float:
        """Reclaimable page cache now (what Kubernetes subtracts to get the working set)."""
        stat = self._hot_keyed("memory.stat")
        key = "inactive_file" if self.v2 else "total_inactive_file"
        return stat.get(key, stat.get("inactive_file", 0)) / (1024 * 1024)

    def oom_kills(self) -> int:
        if self.v2:
            return self._hot_keyed("memory.events").get("oom_kill", 0)
        return self._hot_keyed("memory.oom_control").get("oom_kill", 0)

    def memory_counters(self) -> tuple[int, int]:
        """`(oom_kills(), limit_hits())`; on v2 one read of memory.events gives both."""
        if self.v2:
            events = self._hot_keyed("memory.events")
            return events.get("oom_kill", 0), events.get("max", 0)
        return self.oom_kills(), self.limit_hits()

    def limit_hits(self) -> int:
        """How often usage reached the limit (v1 failcnt, v2 `max` events)."""
        if self.v2:
            return self._hot_keyed("memory.events").get("max", 0)
        try:
            return int(self._hot_read("memory.failcnt"))
        except (OSError, ValueError):
            return 0

    def pids(self) -> list[int]:
        return _procs(self.memory_dir)

    def remove(self) -> bool:
        self.close_files()
        ok = True
        for d in self.dirs:
            ok = _remove_tree(d) and ok
        return ok


class CgroupManager:
    """One backend instance's cgroup tree: create pod cgroups, clean up (also after crashes)."""

    def __init__(self, root: str | Path | None = None, *, instance: str | None = None,
                 layout: CgroupLayout | None = None, cpu_shares: int | None = None) -> None:
        """`cpu_shares`: weight of this instance's whole tree against everything else on the
        machine (v1 shares, 1024 = one ordinary process; converted for v2). None leaves the
        kernel default. `shabari profile` raises it so measurements suffer less from other load;
        each pod's own quota still caps it."""
        self.root = Path(root or DEFAULT_ROOT)
        self.layout = layout or detect(self.root)
        self.instance = instance or f"{os.getpid()}-{secrets.token_hex(3)}"
        self.cpu_shares = cpu_shares
        self._pods: dict[str, PodCgroup] = {}
        self._parent_weight: tuple[Path, int] | None = None

    @property
    def mode(self) -> CgroupMode:
        return self.layout.mode

    def instance_dirs(self) -> tuple[Path, ...]:
        return tuple(r / PARENT / self.instance for r in self.layout.roots)

    def reap_stale(self) -> list[Path]:
        """Remove the trees of instances whose backend process is dead; return what was removed."""
        removed: list[Path] = []
        for r in self.layout.roots:
            parent = r / PARENT
            if not parent.is_dir():
                continue
            for d in parent.iterdir():
                if not d.is_dir() or d.name.startswith(".probe-"):
                    # a probe left by a killed detect(): remove if its owner is gone
                    if d.is_dir():
                        pid = d.name.split("-")[1]
                        if pid.isdigit() and not pid_alive(int(pid)):
                            _remove_tree(d)
                    continue
                if owner_gone(d.name, self.instance) and _remove_tree(d):
                    removed.append(d)
        return removed

    def create(self, pod: str, cpu_millicores: int, memory_mib: int) -> PodCgroup:
        if self.layout.mode is CgroupMode.NONE:
            raise RuntimeError("no writable cgroup hierarchy: " + self.layout.reason)
        assert self.layout.cpu_root is not None and self.layout.memory_root is not None
        cpu_dir = self.layout.cpu_root / PARENT / self.instance / pod
        mem_dir = self.layout.memory_root / PARENT / self.instance / pod
        v2 = self.layout.mode is CgroupMode.V2
        for d in dict.fromkeys((cpu_dir, mem_dir)):
            fresh = not d.parent.exists()
            d.parent.mkdir(parents=True, exist_ok=True)
            if v2:
                with contextlib.suppress(OSError):
                    _write(d.parent / "cgroup.subtree_control", "+cpu +memory")
            if fresh and d.parent == cpu_dir.parent and self.cpu_shares is not None:
                self._raise_parent_weight(d.parent.parent, v2)
                _write_shares(d.parent, self.cpu_shares, v2)
            d.mkdir(exist_ok=True)
        cg = PodCgroup(self.layout, cpu_dir, mem_dir)
        cg.set_cpu(cpu_millicores)
        cg.set_memory(memory_mib)
        self._pods[pod] = cg
        return cg

    def release(self, pod: str) -> None:
        cg = self._pods.pop(pod, None)
        if cg is not None:
            cg.remove()

    def _raise_parent_weight(self, parent: Path, v2: bool) -> None:
        """The shared `shabari/` group competes with the rest of the machine as one entity, so
        an instance weight only counts once the parent weighs at least as much (restored on
        close)."""
        name = "cpu.weight" if v2 else "cpu.shares"
        wanted = shares_to_weight(self.cpu_shares or 1024) if v2 else (self.cpu_shares or 1024)
        try:
            current = int(_read(parent / name))
        except (OSError, ValueError):
            return
        if current < wanted:
            with contextlib.suppress(OSError):
                _write(parent / name, str(wanted))
                self._parent_weight = (parent / name, current)

    def close(self) -> None:
        for pod in list(self._pods):
            self.release(pod)
        for d in self.instance_dirs():
            _remove_tree(d)
        if self._parent_weight is not None:
            path, value = self._parent_weight
            with contextlib.suppress(OSError):
                _write(path, str(value))
            self._parent_weight = None


@dataclass(frozen=True, slots=True)
class FallbackLimits:
    """Without writable cgroups: pin to ceil(vCPU) CPUs, cap the address space.

    Weaker on purpose and said so: affinity grants whole cores (250m gets a full core), and
    RLIMIT_AS limits *virtual* memory, so `virtual_overhead_mib` is added for what runtimes map
    without touching (thread stacks, arenas); exceeding it raises MemoryError in the worker,
    reported as OOM. In-place resize changes the thread pools but not the affinity.
    """

    cpus: tuple[int, ...]
    address_space_bytes: int

    @staticmethod
    def for_size(cpu_millicores: int, memory_mib: int, slot: int,
                 virtual_overhead_mib: int = 1024) -> FallbackLimits:
        available = sorted(os.sched_getaffinity(0))
        k = max(1, min(len(available), math.ceil(cpu_millicores / 1000)))
        start = (slot * k) % len(available)
        cpus = tuple(available[(start + i) % len(available)] for i in range(k))
        return FallbackLimits(cpus, (memory_mib + virtual_overhead_mib) * 1024 * 1024)

    def worker_args(self) -> list[str]:
        return ["--affinity", ",".join(map(str, self.cpus)),
                "--rlimit-as", str(self.address_space_bytes)]
