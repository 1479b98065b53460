"""One exception tree for the whole project (in the manner of httpx).

Every error a user can act on derives from `ShabariError` and says what was wrong and, where
it helps, where (file, line, column, field). Adapters map these onto their own protocol: the
gateway onto HTTP status codes (see `http_status`), the operator onto Kubernetes Events and
status conditions, the CLI onto an exit code and one line on stderr.

    ShabariError
    ├── ConfigError                 bad configuration or specification (user input)
    │   ├── SpecError               invalid FunctionSpec / SLO / size grid / annotation
    │   └── DataFormatError         malformed trace or performance table (file, line, column)
    ├── UnknownFunctionError        no function of that name is registered        (HTTP 404)
    ├── AdmissionError              load shed: queue full                          (HTTP 429/503)
    ├── CapacityError               the cluster cannot hold the decided size
    └── BackendError                the platform could not run the invocation
        ├── BackendUnavailableError backend or API server unreachable             (HTTP 503)
        ├── FunctionFailedError     the function raised or its worker crashed     (HTTP 502)
        ├── OutOfMemoryError        killed for exceeding its memory limit          (HTTP 502)
        ├── InvocationTimeoutError  no answer in time                              (HTTP 504)
        ├── PodLostError            the pod died while idle, before the invocation reached
        │                           it: nothing ran, retry on a fresh pod           (HTTP 502)
        └── ResizeRejectedError     the platform would not resize a pod in place: the pod
                                    keeps its old size; place on another pod / cold start
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shabari.core.status import OutcomeStatus

if TYPE_CHECKING:
    from shabari.core.types import Outcome


class ShabariError(Exception):
    """Base of every error Shabari raises on purpose."""

    http_status: int = 500

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message}: {self.detail}" if self.detail else self.message


class ConfigError(ShabariError, ValueError):
    """A configuration or specification is invalid; the message names the offending field."""

    http_status = 400


class SpecError(ConfigError):
    """A FunctionSpec, SLO, size grid or annotation value is invalid."""

    def __init__(self, message: str, *, field: str = "", detail: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message, detail=detail)
        self.field = field
        #: the message without the field prefix, for re-raising under another field path
        self.reason = message


class DataFormatError(ConfigError):
    """A trace or performance-table file is malformed; carries file, line and column."""

    def __init__(
        self, message: str, *, path: str = "", line: int | None = None, column: str | None = None
    ) -> None:
        where = path
        if line is not None:
            where += f":{line}"
        if column:
            where += f" (column {column!r})"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line
        self.column = column


class UnknownFunctionError(ShabariError, LookupError):
    http_status = 404


class AdmissionError(ShabariError):
    """The gateway sheds load; `retry_after_s` goes into the Retry-After header."""

    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float = 1.0, status: int = 429) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.http_status = status


class CapacityError(ShabariError):
    """No node can hold the requested size (not even after evicting idle pods)."""

    http_status = 503


class BackendError(ShabariError):
    http_status = 502
    #: how the invocation ended, when no measured `outcome` says it (typed: the gateway reads
    #: this, never the exception's class name)
    outcome_status: OutcomeStatus = OutcomeStatus.CRASH
    #: what was measured before the failure (OOM, crash, timeout) when the backend knows it,
    #: so the agent can still learn from a failed invocation (see backends.base.InvocationResult)
    outcome: Outcome | None = None


class BackendUnavailableError(BackendError):
    http_status = 503


class FunctionFailedError(BackendError):
    http_status = 502


class OutOfMemoryError(BackendError):
    http_status = 502
    outcome_status = OutcomeStatus.OOM


class PodLostError(BackendError):
    """The pod was already dead (its worker died while idle) when the invocation came: the
    input never reached the function, so there is nothing to learn; run it on a fresh pod."""

    http_status = 502


class InvocationTimeoutError(BackendError):
    http_status = 504
    outcome_status = OutcomeStatus.TIMEOUT


class PayloadTooLargeError(BackendError):
    """The input exceeds what the platform accepts for one invocation (e.g. OpenWhisk's
    1 MB activation payload); nothing ran. HTTP 413 at the gateway."""

    http_status = 413


class ResizeRejectedError(BackendError):
    """An in-place CPU resize was deferred, infeasible or unsupported; nothing ran.

    The pod keeps serving at its previous size (`pod_id`, `reason` = the platform's word:
    `Deferred`, `Infeasible`, `Unsupported`, ...). The caller should place the invocation on
    another warm pod or cold-start a new one instead of failing it.
    """

    http_status = 503

    def __init__(self, message: str, *, pod_id: str = "", reason: str = "",
                 detail: str = "") -> None:
        super().__init__(message, detail=detail)
        self.pod_id = pod_id
        self.reason = reason
