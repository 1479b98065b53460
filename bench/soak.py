"""Soak: mixed traffic through a real gateway while it is hurt on purpose (issue #13).

    sudo .venv/bin/python bench/soak.py --minutes 10 --out soak.json

One `shabari gateway` process (local backend, real worker processes under cgroups) serves the
bundled functions; a closed-loop client keeps `--concurrency` requests in flight, drawing a
function and one of its generated inputs at random. Meanwhile:

- every 15-35 s a random worker process is SIGKILLed (mid-call or idle);
- from 35% to 45% of the run the state dir (a small tmpfs) is full;
- at 60% the client pauses until nothing is in flight, the gateway's counters and learned
  outcomes are read, the gateway is SIGKILLed (no graceful anything) and a new one is
  started at once on the same state dir; traffic resumes against it.

At the end (SIGTERM) it checks: every request got an HTTP answer; the server's per-status
counters equal the client's per incarnation; learned outcomes restored after the SIGKILL are
>= 90% of those before it; no worker process, cgroup tree or `shabari-local-*` temp dir of
either gateway is left. Needs root (tmpfs mount, cgroups). Not a CI test: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shabari.runtime.catalog import bundled_functions  # noqa: E402

DEFAULT_FUNCTIONS = "noop,markdown,compress,matmul,thumbnail,pagerank,audio-fft"
ROUTE = "/invoke/{function}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def worker_pids(parent: int | None = None) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"shabari.runtime.worker" in cmd and fields[0] != "Z" and \
                (parent is None or int(fields[1]) == parent):
            out.add(int(d.name))
    return out


def owned_by(worker: int, gateway: int) -> bool:
    """Was `worker` started by gateway `gateway`? Its stdout is a pod log in that gateway's
    `shabari-local-<pid>-*` dir (still true once the gateway is dead and the worker
    reparented; other engineers' workers on the machine are not ours)."""
    try:
        target = os.readlink(f"/proc/{worker}/fd/1")
    except OSError:
        return False
    return f"/shabari-local-{gateway}-" in target


class Gateway:
    def __init__(self, state: Path, log: Path, args: argparse.Namespace) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "shabari.cli", "gateway", "--port", str(self.port),
               "--state-dir", str(state), "--checkpoint-interval",
               str(args.checkpoint_interval), "--keep-alive", "30",
               "--max-concurrent", str(args.concurrency), "--node-cpus", str(args.node_cpus)]
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
        self.pid = self.proc.pid
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_up(self, session: aiohttp.ClientSession, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gateway exited with {self.proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(self.url + "/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise SystemExit("gateway did not come up")

    async def counters(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(self.url + "/metrics") as r:
            text = await r.text()
        out: dict[str, float] = collections.defaultdict(float)
        for line in text.splitlines():
            if line.startswith("shabari_http_requests_total{") and f'route="{ROUTE}"' in line:
                code = line.split('code="', 1)[1].split('"', 1)[0]
                out[code] += float(line.rsplit(" ", 1)[1])
        return dict(out)

    async def outcomes(self, session: aiohttp.ClientSession) -> dict[str, int]:
        async with session.get(self.url + "/functions") as r:
            fns = await r.json()
        return {f["name"]: int(f["learning"].get("outcomes", 0)) for f in fns}


class Client:
    def __init__(self, inputs: dict[str, list[tuple[bytes, str]]], seed: int) -> None:
        self.inputs = inputs
        self.rng = random.Random(seed)
        self.gateway: Gateway | None = None
        self.counts: dict[int, collections.Counter[str]] = collections.defaultdict(
            collections.Counter)
        self.unanswered = 0
        self.inflight = 0
        self.paused = asyncio.Event()
        self.paused.set()  # set = running
        self.stop = False

    async def run_one(self, session: aiohttp.ClientSession) -> None:
        fn = self.rng.choice(sorted(self.inputs))
        body, ct = self.rng.choice(self.inputs[fn])
        gw = self.gateway
        assert gw is not None
        self.inflight += 1
        try:
            async with session.post(f"{gw.url}/invoke/{fn}", data=body,
                                    headers={"Content-Type": ct}) as r:
                await r.read()
                self.counts[gw.pid][str(r.status)] += 1
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.unanswered += 1
            print(f"  unanswered: {fn}: {exc!r}", flush=True)
        finally:
            self.inflight -= 1

    async def loop(self, session: aiohttp.ClientSession) -> None:
        while not self.stop:
            await self.paused.wait()
            if self.stop:
                return
            await self.run_one(session)

    async def quiesce(self) -> None:
        self.paused.clear()
        while self.inflight:
            await asyncio.sleep(0.05)


def mount_tmpfs(size: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="shabari-soak-state-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], check=True)
    return d


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * 65536)
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as fh:
        while True:
            fh.write(b"\0")
    return filler


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    catalog = bundled_functions()
    names = [n for n in args.functions.split(",") if n]
    inputs = {n: [(g.body, g.content_type) for g in catalog[n].generate_inputs(args.seed, 12)]
              for n in names}
    state = mount_tmpfs(args.state_size)
    log = Path(args.log)
    log.write_text("")
    before_workers = worker_pids()
    report: dict[str, Any] = {"minutes": args.minutes, "functions": names,
                              "concurrency": args.concurrency,
                              "checkpoint_interval_s": args.checkpoint_interval,
                              "events": []}
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    duration = args.minutes * 60.0

    def event(what: str, **kw: Any) -> None:
        rec = {"t_s": round(time.monotonic() - t0, 1), "event": what, **kw}
        report["events"].append(rec)
        print(json.dumps(rec), flush=True)

    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        gw = Gateway(state, log, args)
        gateways = [gw]
        await gw.wait_up(session)
        client = Client(inputs, args.seed)
        client.gateway = gw
        tasks = [asyncio.create_task(client.loop(session)) for _ in range(args.concurrency)]
        next_kill = 15 + rng.uniform(0, 20)
        disk_full_at, disk_free_at, crash_at = 0.35 * duration, 0.45 * duration, 0.6 * duration
        filler: Path | None = None
        crashed = False
        kills = 0
        readyz_during_full: list[int] = []
        while (now := time.monotonic() - t0) < duration:
            await asyncio.sleep(0.5)
            if now >= next_kill:
                pids = sorted(worker_pids(gw.pid))
                if pids:
                    victim = rng.choice(pids)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                        kills += 1
                next_kill = now + 15 + rng.uniform(0, 20)
            if filler is None and disk_full_at <= now < disk_free_at:
                filler = fill(state)
                event("disk full", free_bytes=shutil.disk_usage(state).free)
            if filler is not None and now < disk_free_at:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(gw.url + "/readyz") as r:
                        readyz_during_full.append(r.status)
            if filler is not None and now >= disk_free_at:
                filler.unlink()
                filler = None
                event("disk freed", readyz_while_full=sorted(set(readyz_during_full)))
            if not crashed and now >= crash_at:
                crashed = True
                await client.quiesce()
                server = await gw.counters(session)
                before = await gw.outcomes(session)
                event("gateway SIGKILL", pid=gw.pid, server_counts=server,
                      client_counts=dict(client.counts[gw.pid]), outcomes=sum(before.values()))
                report["incarnation_1"] = {"server": server,
                                           "client": dict(client.counts[gw.pid])}
                os.kill(gw.pid, signal.SIGKILL)
                old = gw
                gw = Gateway(state, log, args)  # at once: the old one may still be a zombie
                gateways.append(gw)
                await gw.wait_up(session)
                old.proc.wait(10)
                after = await gw.outcomes(session)
                report["learned_before_kill"] = sum(before.values())
                report["learned_after_restart"] = sum(after.values())
                report["learned_by_function"] = {n: [before.get(n, 0), after.get(n, 0)]
                                                 for n in sorted(before)}
                event("gateway restarted", pid=gw.pid, outcomes=sum(after.values()))
                client.gateway = gw
                client.paused.set()
        await client.quiesce()
        server = await gw.counters(session)
        report["incarnation_2"] = {"server": server, "client": dict(client.counts[gw.pid])}
        client.stop = True
        client.paused.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        gw.proc.send_signal(signal.SIGTERM)
        rc = gw.proc.wait(120)
        event("gateway SIGTERM", exit_code=rc)
    await asyncio.sleep(2)  # orphans of the SIGKILLed gateway exit when their socket closes
    leftover_workers = sorted(p for p in worker_pids() - before_workers
                              if any(owned_by(p, g.pid) for g in gateways))
    trees = [str(d) for g in gateways
             for d in [*Path("/sys/fs/cgroup").glob(f"*/shabari/{g.pid}-*"),
                       *Path("/sys/fs/cgroup/shabari").glob(f"{g.pid}-*")]]
    temps = [str(d) for g in gateways
             for d in Path(tempfile.gettempdir()).glob(f"shabari-local-{g.pid}-*")]
    subprocess.run(["umount", "-l", str(state)], check=False)
    shutil.rmtree(state, ignore_errors=True)
    total = sum(sum(c.values()) for c in client.counts.values())
    match = all(report[k]["server"] == {c: float(n) for c, n in report[k]["client"].items()}
                for k in ("incarnation_1", "incarnation_2"))
    ratio = (report["learned_after_restart"] / report["learned_before_kill"]
             if report.get("learned_before_kill") else None)
    report.update({
        "requests": total, "unanswered": client.unanswered,
        "by_status": dict(sum((c for c in client.counts.values()), collections.Counter())),
        "worker_kills": kills, "server_counts_match_client": match,
        "learned_ratio": ratio, "orphan_workers": leftover_workers,
        "orphan_cgroup_trees": trees, "orphan_temp_dirs": temps,
        "exit_code": rc, "wall_s": round(time.monotonic() - t0, 1),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    })
    report["ok"] = bool(client.unanswered == 0 and match and ratio is not None
                        and ratio >= 0.9 and not leftover_workers and not trees
                        and not temps and rc == 0)
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--functions", default=DEFAULT_FUNCTIONS)
    p.add_argument("--checkpoint-interval", type=float, default=30.0)
    p.add_argument("--node-cpus", type=float, default=2.0)
    p.add_argument("--state-size", default="16m", help="size of the state dir's tmpfs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log", default="soak-gateway.log")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    report = asyncio.run(soak(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
