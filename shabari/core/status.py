"""How an invocation ended: its own module, so the exception tree can name it too.

`core.errors` imports nothing else of the project (the spec imports it), so the status enum
lives here, below both; `core.types` re-exports it.
"""

from __future__ import annotations

import enum


class OutcomeStatus(enum.Enum):
    OK = "ok"
    ERROR = "error"  # the function raised: the input's fault, not the size's
    OOM = "oom"  # killed for exceeding the memory limit
    TIMEOUT = "timeout"
    CRASH = "crash"  # the worker died for another reason
