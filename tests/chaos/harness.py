"""Chaos harness: a real `shabari gateway` process, real worker processes, real faults.

`GatewayProc` starts the gateway as a subprocess on a free loopback port (the local backend,
real cgroups when the host allows them), with the test probe function (tests/gateway/functions/
probe: sleeps, allocates, fails or echoes on request) and optionally bundled ones. Faults are
the real thing: SIGKILL/SIGSTOP of a worker or of the gateway, a tiny tmpfs as the state dir,
raw sockets that upload one byte at a time or never finish. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROBE_DIR = ROOT / "tests" / "gateway" / "functions" / "probe"

PROBE = {
    "directory": str(PROBE_DIR),
    "slo": {"latencyMs": 5000},
    "featurizer": "json",
    "sizes": {"cpu": ["250m", "500m"], "memory": ["128Mi", "512Mi"]},
    "defaultSize": {"cpu": "500m", "memory": "512Mi"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def children(pid: int) -> list[int]:
    """Live worker processes whose parent is `pid`."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X") \
                and b"shabari.runtime.worker" in cmd:
            out.append(int(d.name))
    return out


def workers_of_any(marker: str) -> list[int]:
    """Live worker processes whose environment or command mentions `marker` (orphans)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"shabari.runtime.worker" in cmd and marker.encode() in cmd and state != "Z":
            out.append(int(d.name))
    return out


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class GatewayProc:
    """One gateway process; `request` talks to it over plain HTTP."""

    def __init__(self, tmp: Path, *, state_dir: Path | None = None,
                 functions: dict[str, Any] | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, rlimits: dict[int, int] | None = None,
                 token: str | None = None) -> None:
        self.tmp = tmp
        self.state_dir = state_dir or tmp / "state"
        self.config = tmp / "functions.yaml"
        self.config.write_text(json.dumps({"functions": functions or {"probe": PROBE}}))
        self.args = args
        self.env = env
        self.rlimits = rlimits or {}
        self.token = token
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "gateway.log"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> GatewayProc:
        self.port = free_port()
        rlimits = self.rlimits

        def limits() -> None:
            import resource
            for which, value in rlimits.items():
                resource.setrlimit(which, (value, value))

        env = dict(os.environ, PYTHONPATH=str(ROOT), **(self.env or {}))
        cmd = [sys.executable, "-m", "shabari.cli", "gateway", "--config", str(self.config),
               "--port", str(self.port), "--state-dir", str(self.state_dir),
               "--registry-poll", "0", *self.args]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=limits if rlimits else None)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n"
                                     + self.log.read_text()[-3000:])
            with contextlib.suppress(OSError):
                if self.request("GET", "/healthz", timeout=2).status == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError("gateway did not come up:\n" + self.log.read_text()[-3000:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers(self) -> list[int]:
        return children(self.pid)

    def terminate(self, timeout_s: float = 90.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # -- HTTP ------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method: str, path: str, body: bytes | None = None, *,
                timeout: float = 60.0, headers: dict[str, str] | None = None,
                auth: bool = True) -> Response:
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        if auth and self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url(path), data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers), e.read())

    def invoke(self, payload: Any, *, function: str = "probe", timeout: float = 60.0,
               raw: bytes | None = None, content_type: str = "application/json") -> Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        return self.request("POST", f"/invoke/{function}", body, timeout=timeout,
                            headers={"Content-Type": content_type})

    def stats(self) -> Any:
        return self.request("GET", "/stats").json()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        text = self.request("GET", "/metrics").body.decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            if all(f'{k}="{v}"' in rest for k, v in labels.items()):
                total += float(value)
        return total


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; returns the filler file (delete it to free space)."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * 4096)
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as fh:
        while True:  # the last partial block
            fh.write(b"\0")
    return filler


def wait_until(cond: Any, timeout_s: float = 30.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def cgroup_trees(pid: int) -> list[Path]:
    """The cgroup dirs a backend of process `pid` made (v1 and v2 layouts)."""
    out = []
    for root in [*Path("/sys/fs/cgroup").glob("*/shabari"), Path("/sys/fs/cgroup/shabari")]:
        out += [d for d in root.glob(f"{pid}-*") if d.is_dir()]
    return out
