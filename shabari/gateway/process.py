"""Run `shabari gateway` as a child process and talk to it: used by the demo, the gateway
benchmark and the end-to-end tests, so all of them exercise the real CLI, real sockets and the
real graceful shutdown (SIGTERM: drain, checkpoint, stop pods) instead of an in-process shortcut.
"""

from __future__ import annotations

import asyncio
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
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from shabari.core import BackendUnavailableError


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayProcess:
    """`shabari gateway ...` on a free local port; `with` starts it and stops it gracefully."""

    def __init__(self, args: Sequence[str], *, log_path: Path | None = None,
                 ready_timeout_s: float = 60.0, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "shabari.cli", "gateway", "--host", "127.0.0.1",
                     "--port", str(self.port), *args]
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(self.args, stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BackendUnavailableError(
                    f"gateway exited with code {self.proc.returncode} while starting",
                    detail=self._tail())
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise BackendUnavailableError("gateway did not become ready in time", detail=self._tail())

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-2000:]

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base}{path}", timeout=10) as r:
            return json.loads(r.read())

    async def aget_json(self, path: str) -> Any:
        return await asyncio.to_thread(self.get_json, path)

    def stop(self, timeout_s: float = 90.0) -> int:
        """SIGTERM (graceful: drain + checkpoint), then SIGKILL if it does not exit in time."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
