"""The one adapter around Vowpal Wabbit (the only module that imports `vowpalwabbit`).

One `CBModel` wraps one VW `Workspace` running `--cb_explore_adf --squarecb` for one function:
the action set is fixed per function, so callers pass the shared (context) line and one line
per action, already in VW text format, and get back the exploration pmf in action order.
Sampling from that pmf is the caller's job, with its own seeded RNG, so decisions are
reproducible (VW's own sampler is never used).

Thread-safety rule: a VW Workspace is NOT thread-safe and cannot be pickled. Give every
function's model exactly one owner (one asyncio task, one thread, or hold a lock around every
call); never share a `CBModel` between threads without a lock. To move or persist a model, use
`save()` (VW's binary model bytes, which include the SquareCB counter) and `CBModel.load(bytes)`
(VW `-i`); never pickle it.

Speed notes (measured, see docs/agent.md): the cost is text parsing plus `pyvw`'s Python
wrappers. `Workspace.predict(list_of_lines)` wraps every parsed line in a Python `Example`
object (about 100 us per call here); calling the pybind11 layer underneath (`pylibvw.vw._parse`,
`predict_multi`/`learn_multi`, `_finish_example_multi_ex`) on one newline-joined string does
the same work in about 25 us for predict and 15 us for learn. Keeping parsed examples alive
until the outcome arrives would save the second parse but pins VW's small example ring (and the
outcome may never come), so learn re-parses its line. Workspace memory is dominated by VW's
example ring, so it is shrunk with `--ring_size`/`--example_queue_limit`; with `-b 14` a model
costs about 1.3 MiB, so 400 functions fit in about half a GiB.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import vowpalwabbit
from vowpalwabbit import pyvw

#: the pybind11 layer under `pyvw` (see "Speed notes" above)
_LIB = pyvw.pylibvw.vw

#: namespaces: S = shared context (input features), A = action (size) features
SHARED_NS = "S"
ACTION_NS = "A"


@dataclass(frozen=True, slots=True)
class VWConfig:
    """VW options for one function's model (see docs/agent.md for how they were chosen)."""

    gamma_scale: float = 10.0
    gamma_exponent: float = 0.5
    bits: int = 14
    learning_rate: float = 0.5
    #: extra VW options appended verbatim (e.g. "--l2 1e-6")
    extra: str = ""

    def arguments(self) -> str:
        args = (
            "--cb_explore_adf --squarecb "
            f"--gamma_scale {self.gamma_scale} --gamma_exponent {self.gamma_exponent} "
            f"-b {self.bits} -l {self.learning_rate} "
            f"-q {SHARED_NS}{ACTION_NS} "
            "--ring_size 4 --example_queue_limit 4 --quiet"
        )
        return f"{args} {self.extra}".strip()

    def gamma(self, learned: int) -> float:
        """SquareCB's exploration parameter after `learned` updates (as VW computes it)."""
        return float(self.gamma_scale * float(max(learned, 1)) ** self.gamma_exponent)


class CBModel:
    """One function's contextual-bandit model; not thread-safe (see the module docstring)."""

    __slots__ = ("_ws", "config")

    def __init__(self, config: VWConfig | None = None, *, _model_path: str | None = None) -> None:
        self.config = config or VWConfig()
        args = self.config.arguments()
        if _model_path is not None:
            args = f"{args} -i {_model_path}"
        self._ws = vowpalwabbit.Workspace(args)

    def predict(self, shared: str, actions: Sequence[str]) -> list[float]:
        """Exploration pmf over `actions` (in their order) for the context line `shared`."""
        ws = self._ws
        examples = _LIB._parse(ws, "\n".join((shared, *actions)))
        try:
            _LIB.predict_multi(ws, examples)
            pmf = examples[0].get_action_scores()
        finally:
            _LIB._finish_example_multi_ex(ws, examples)
        return [float(p) for p in pmf]

    def learn(
        self, shared: str, actions: Sequence[str], chosen: int, cost: float, probability: float
    ) -> None:
        """One contextual-bandit update: action `chosen` (played with `probability`) cost `cost`."""
        if not 0 <= chosen < len(actions):
            raise IndexError(f"chosen action {chosen} out of range 0..{len(actions) - 1}")
        lines = [shared, *actions]
        lines[chosen + 1] = f"0:{cost:.6g}:{max(probability, 1e-6):.6g} {actions[chosen]}"
        ws = self._ws
        examples = _LIB._parse(ws, "\n".join(lines))
        try:
            _LIB.learn_multi(ws, examples)
        finally:
            _LIB._finish_example_multi_ex(ws, examples)

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
    def load(cls, data: bytes, config: VWConfig | None = None) -> CBModel:
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
