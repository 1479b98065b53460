"""The one adapter around Vowpal Wabbit (the only module that imports `vowpalwabbit`).

`SharedPrior` is one VW regression model for ALL functions of an agent: it predicts
`ln(run time / SLO)` of an input at a CPU size from function-agnostic quantities only (the
SLO's scale, the arm's vCPU, the function's observed CPU utilisation and the input's size
relative to the function's other inputs), so what 8,000 functions have shown sizes the first
invocation of the 8,001st (and the first of a new input class of a known one). It is trained on
every class's first observations with their full-information hindsight labels (the measured arm
and the arms the evidence pins down, `evidence.py`). One workspace instead of one per function:
a VW workspace is about 1 MiB, which at 10,000 functions was 9 GB.

Thread-safety rule: a VW Workspace is NOT thread-safe and cannot be pickled: one owner (the
agent's), or a lock around every call. Persist with `save()` (VW's binary model) and restore
with `SharedPrior.load(bytes)` (VW `-i`).

Speed: the pybind11 layer under `pyvw` (`pylibvw.vw._parse`, `predict`/`learn`,
`_finish_example`) on one text line costs about 10-20 us per call here; `pyvw`'s wrappers cost
several times that.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass

import vowpalwabbit
from vowpalwabbit import pyvw

#: the pybind11 layer under `pyvw` (see "Speed" above)
_LIB = pyvw.pylibvw.vw


@dataclass(frozen=True, slots=True)
class VWConfig:
    """VW options of the shared prior (see docs/agent.md)."""

    bits: int = 16
    learning_rate: float = 0.5
    #: extra VW options appended verbatim (e.g. "--l2 1e-6")
    extra: str = ""

    def arguments(self) -> str:
        args = (f"--loss_function squared -b {self.bits} -l {self.learning_rate} "
                "-q sa --ring_size 4 --example_queue_limit 4 --quiet")
        return f"{args} {self.extra}".strip()


class SharedPrior:
    """One VW squared-loss regressor: features (text, VW format without label) -> number."""

    __slots__ = ("_ws", "config", "updates")

    def __init__(self, config: VWConfig | None = None, *, _model_path: str | None = None
                 ) -> None:
        self.config = config or VWConfig()
        args = self.config.arguments()
        if _model_path is not None:
            args = f"{args} -i {_model_path}"
        self._ws = vowpalwabbit.Workspace(args)
        #: examples learned (kept by the agent's checkpoint, not by VW)
        self.updates = 0

    def predict(self, features: str) -> float:
        """The prediction for one example given as VW text features (`|s ... |a ...`)."""
        ws = self._ws
        ex = _LIB._parse(ws, features)[0]
        try:
            _LIB.predict(ws, ex)
            return float(ex.get_simplelabel_prediction())
        finally:
            _LIB._finish_example(ws, ex)

    def learn(self, features: str, label: float, weight: float = 1.0) -> None:
        """One squared-loss update towards `label`."""
        ws = self._ws
        ex = _LIB._parse(ws, f"{label:.6g} {weight:.6g} {features}")[0]
        try:
            _LIB.learn(ws, ex)
        finally:
            _LIB._finish_example(ws, ex)
        self.updates += 1

    def save(self) -> bytes:
        """The model as VW's binary format (what `-i` reads)."""
        fd, path = tempfile.mkstemp(prefix="shabari-vw-", suffix=".model")
        os.close(fd)
        try:
            self._ws.save(path)
            with open(path, "rb") as fh:
                return fh.read()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    @classmethod
    def load(cls, data: bytes, config: VWConfig | None = None) -> SharedPrior:
        """A model restored from `save()` bytes (VW `-i`)."""
        fd, path = tempfile.mkstemp(prefix="shabari-vw-", suffix=".model")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return cls(config, _model_path=path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        self._ws.finish()
