"""Follow the functions file while the gateway runs: the operator's registry changes live.

In a cluster the operator rewrites the registry ConfigMap whenever a FunctionSizingPolicy
appears, changes or goes; the kubelet swaps the mounted file (a symlink flip) some seconds
later. The gateway must pick that up without a restart, because a restart would throw away
every warm pod and the learning of the models in memory since the last checkpoint.

`RegistryWatcher` polls the file (its stat signature, then its text) every few seconds: no
inotify and no new dependency, and a symlink flip is seen like any other write. A changed,
valid file is handed to an `apply` callback (`shabari.gateway.cli` wires it to
`Gateway.update_functions`). A file that cannot be read or parsed keeps the last good
registry in service, logs one error per distinct bad content, and is exposed as
`Gateway.registry_error` (`/readyz` detail) and the `shabari_registry_error` gauge.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from shabari.core import ShabariError
from shabari.gateway.config import GatewayFile, load_gateway_file, read_config_text
from shabari.gateway.service import FunctionsChange, Gateway

log = logging.getLogger(__name__)

Apply = Callable[[GatewayFile], Awaitable[FunctionsChange]]

_Signature = tuple[int, int, int]


def _signature(path: Path) -> _Signature | None:
    try:
        st = os.stat(path)  # follows the ConfigMap's ..data symlink
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class RegistryWatcher:
    """Polls one functions file and applies its changes to a running gateway."""

    def __init__(self, gateway: Gateway, path: str | Path, apply: Apply, *,
                 interval_s: float = 5.0, loaded_text: str | None = None) -> None:
        """`loaded_text`: the text the gateway was started with (not applied again)."""
        self.gateway = gateway
        self.path = Path(path)
        self.apply = apply
        self.interval_s = interval_s
        self._signature = _signature(self.path) if loaded_text is not None else None
        self._good = _digest(loaded_text) if loaded_text is not None else None
        self._bad: str | None = None
        self._task: asyncio.Task[None] | None = None
        #: changes applied so far (for tests and /stats)
        self.applied = 0

    async def check(self) -> FunctionsChange | None:
        """Look at the file once; apply it if it changed. Returns what changed, or None."""
        sig = _signature(self.path)
        if sig is not None and sig == self._signature:
            return None
        self._signature = sig
        try:
            text = await asyncio.to_thread(read_config_text, self.path)
        except ShabariError as exc:
            self._failed(exc, f"unreadable: {exc}")
            return None
        digest = _digest(text)
        if digest == self._good:
            self._clear_error()
            return None
        if digest == self._bad:
            return None
        try:
            change = await self.apply(load_gateway_file(self.path, text))
        except ShabariError as exc:
            self._failed(exc, digest)
            return None
        self._good = digest
        self._bad = None
        self._clear_error()
        self.applied += 1
        self.gateway.metrics.registry_reloads.labels("applied").inc()
        return change

    def _failed(self, exc: ShabariError, key: str) -> None:
        """One error line per distinct bad content (or read error), not one per poll."""
        message = f"registry {self.path} not applied, still serving the last good one: {exc}"
        if key != self._bad:
            log.error("%s", message)
            self.gateway.metrics.registry_reloads.labels("invalid").inc()
        self._bad = key
        self.gateway.registry_error = message
        self.gateway.metrics.registry_error.set(1)

    def _clear_error(self) -> None:
        if self.gateway.registry_error is not None:
            log.info("registry %s is valid again", self.path)
        self.gateway.registry_error = None
        self.gateway.metrics.registry_error.set(0)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # never let a reload bug stop the gateway from serving
                log.exception("registry reload of %s failed", self.path)

    def start(self) -> None:
        if self._task is None and self.interval_s > 0:
            self._task = asyncio.create_task(self._loop(), name="shabari-registry")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
