"""What the gateway answers: one invocation's HTTP reply, and the `/functions` and `/stats` views.

Kept apart from the invocation path so the headers of DESIGN 4.3 and the JSON views are
written in one place; nothing here changes state.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shabari.core import (
    Decision,
    FunctionSpec,
    Outcome,
    OutcomeStatus,
    Placement,
    ShabariError,
    Size,
    spec_to_mapping,
)
from shabari.gateway.accounting import FunctionStats


@dataclass(frozen=True, slots=True)
class Reply:
    """What the HTTP layer sends back for one invocation (success or post-decision failure)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One placed-and-run decision of an invocation, as the reply and the accounting see it."""

    decision: Decision
    placement: Placement | None
    outcome: Outcome
    body: bytes
    content_type: str
    error: ShabariError | None
    pod_size: Size
    slo_ms: float
    violated: bool


def error_body(error: str, detail: str = "") -> bytes:
    return json.dumps({"error": error, "detail": detail}).encode()


def reply_for(attempt: AttemptResult, *, retried: bool) -> Reply:
    """The HTTP reply of an invocation whose last attempt is `attempt` (DESIGN 4.3 headers)."""
    outcome = attempt.outcome
    size = attempt.decision.size
    headers = {
        "X-Shabari-Cpu-Millicores": str(size.cpu_millicores),
        "X-Shabari-Memory-Mib": str(size.memory_mib),
        "X-Shabari-Gpu": str(size.gpu),
        "X-Shabari-Cold-Start": "true" if outcome.cold_start else "false",
        "X-Shabari-Latency-Ms": f"{outcome.latency_ms:.3f}",
        "X-Shabari-Decision-Id": str(attempt.decision.decision_id),
        "X-Shabari-Slo-Ms": f"{attempt.slo_ms:.3f}",
        "X-Shabari-Policy": attempt.decision.policy,
    }
    if attempt.placement is not None:
        headers["X-Shabari-Placement"] = attempt.placement.kind.value
        ps = attempt.pod_size
        headers["X-Shabari-Pod-Size"] = f"{ps.cpu_millicores}m,{ps.memory_mib}Mi,{ps.gpu}"
    if retried:
        headers["X-Shabari-Retried"] = "oom"
    if attempt.error is not None:
        err = attempt.error
        return Reply(err.http_status, error_body(err.message, err.detail or str(err)),
                     "application/json", headers)
    if outcome.status is OutcomeStatus.ERROR:
        detail = attempt.body.decode("utf-8", "replace")[:2000]
        return Reply(502, error_body("function raised an error", detail),
                     "application/json", headers)
    return Reply(200, attempt.body, attempt.content_type or "application/octet-stream", headers)


def functions_view(functions: Mapping[str, FunctionSpec], stats: Mapping[str, FunctionStats],
                   learning: Mapping[str, dict[str, Any]],
                   recommendations: Mapping[str, Mapping[str, Any]] | None = None,
                   ) -> list[dict[str, Any]]:
    """The `GET /functions` document (the operator reads `stats` and `recommendation`)."""
    out = []
    for name, spec in sorted(functions.items()):
        st = stats[name]
        m = spec_to_mapping(spec)
        state = learning[name]
        out.append({
            "name": name,
            "slo": m["slo"],
            "featurizer": m["featurizer"],
            "sizes": m["sizes"],
            "gpuCapable": spec.gpu_capable,
            "defaultSize": m.get("defaultSize"),
            "learning": state,
            "mode": spec.mode,
            "exploration": m.get("exploration", {"enabled": True}),
            "stats": {
                "invocations": st.invocations,
                "slo_violations": st.slo_violations,
                "slo_attainment": st.slo_attainment,
                "failures": st.failures,
                "cold_starts": st.cold_starts,
                "oom_retries": st.oom_retries,
                "model_version": state.get("model_version", 0),
            },
        })
        if spec.recommend_only:
            out[-1]["recommendation"] = dict((recommendations or {}).get(
                name, {"invocations": 0}))
    return out


def stats_totals(stats: Mapping[str, FunctionStats],
                 functions: Mapping[str, FunctionSpec]) -> dict[str, Any]:
    """The per-function part of `GET /stats` (served functions only)."""
    return {n: dataclasses.asdict(s) for n, s in stats.items() if n in functions}
