"""One invocation lifecycle, driven by both the gateway and the simulator.

decide -> place -> run -> judge -> retry once or finish -> learn. `Lifecycle` holds the rules
(which failures are retried, what a capacity failure teaches, where latency counts from, when
an invocation queues behind a busy pod, how long it may wait for room) and applies them to the
policy and the scheduler; the drivers only supply time and what the platform answered (a real
backend under the wall clock in the gateway, the performance table under a simulated clock in
the simulator). Pure: no I/O, no clock. See docs/architecture.md for the drawing.
"""

from shabari.lifecycle.invocation import (
    AttemptRecord,
    Estimates,
    Finished,
    Invocation,
    Lifecycle,
    LifecycleConfig,
    SloSource,
    Step,
    StepKind,
)
from shabari.lifecycle.pool import PoolIntegrals
from shabari.lifecycle.verdict import Verdict, cost_model_of, judge

__all__ = [
    "AttemptRecord",
    "Estimates",
    "Finished",
    "Invocation",
    "Lifecycle",
    "LifecycleConfig",
    "PoolIntegrals",
    "SloSource",
    "Step",
    "StepKind",
    "Verdict",
    "cost_model_of",
    "judge",
]
