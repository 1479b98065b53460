"""`shabari explain`: why a size was (or would be) chosen for an input.

For an input file or a logged decision id, prints the features, the input class, the
predicted run time and expected cost of every size, each size's probability and the sentence
that says why the chosen size won (`ExplainingPolicy.explain`, which changes nothing). The
model is the gateway's checkpoint (`--state-dir`), so the answer is what the gateway would do
now; `--gateway URL` asks a running gateway instead (`POST /functions/{name}/explain`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shabari.core.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("function", help="the function's name at the gateway")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", help="an input file (what POST /invoke/FUNCTION would get)")
    what.add_argument("--decision", help="a decision id (X-Shabari-Decision-Id) in --log")
    p.add_argument("--content-type", default=None, help="the input's Content-Type")
    p.add_argument("--log", action="append", default=None,
                   help="decision log(s) to find --decision in (default STATE_DIR/decisions.jsonl)")
    p.add_argument("--config", default=None,
                   help="the gateway's functions file (default: the bundled functions)")
    p.add_argument("--state-dir", default=None,
                   help="the gateway's --state-dir: its model checkpoints are used")
    p.add_argument("--pool", choices=["warm", "cold"], default="warm",
                   help="assume an idle warm pod of every size (default) or none")
    p.add_argument("--gateway", default=None, help="ask a running gateway (base URL) instead")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")


def _spec(function: str, config: str | None) -> Any:
    from shabari.gateway.cli import bundled_entries
    from shabari.gateway.config import load_functions_yaml

    entries = load_functions_yaml(config) if config else bundled_entries()
    if function not in entries:
        raise ConfigError(f"no function {function!r} in {config or 'the bundled functions'}",
                          detail=f"known: {', '.join(sorted(entries)) or 'none'}")
    return entries[function].spec


def _find_decision(paths: Sequence[str | Path], decision_id: str) -> dict[str, Any]:
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read decision log {path}: {exc.strerror or exc}") from None
        for line in lines:
            if decision_id in line:
                rec = json.loads(line)
                if rec.get("decision_id") == decision_id:
                    return dict(rec)
    raise ConfigError(f"decision {decision_id!r} is not in {', '.join(map(str, paths))}")


def _logs(args: argparse.Namespace) -> list[str]:
    logs = args.log or ([str(Path(args.state_dir) / "decisions.jsonl")]
                        if args.state_dir else None)
    if not logs:
        raise ConfigError("--decision needs --log or --state-dir")
    return list(logs)


def explanation_dict(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The explanation (as `Explanation.to_dict`) and the logged record, if a decision."""
    from shabari.agent.policy import ExplainingPolicy
    from shabari.agent.shabari_agent import ShabariAgent
    from shabari.core import DecisionContext, FunctionName

    spec = _spec(args.function, args.config)
    record = None
    slo_ms = spec.slo.latency_ms
    if args.decision:
        record = _find_decision(_logs(args), args.decision)
        features = {k: float(v) for k, v in (record.get("features") or {}).items()
                    if isinstance(v, int | float)}
        slo_ms = record.get("slo_ms") or slo_ms
    else:
        import featurizers

        body = Path(args.input).read_bytes()
        features = featurizers.extract(body, args.content_type, spec.featurizer,
                                       dict(spec.featurizer_options))
    policy = ShabariAgent(0)
    notes = []
    if args.state_dir:
        ckpt = Path(args.state_dir) / "models" / f"{args.function}.ckpt"
        if ckpt.exists():
            policy.restore(FunctionName(args.function), ckpt.read_bytes())
        else:
            notes.append(f"no checkpoint at {ckpt}: a model that has learned nothing")
    else:
        notes.append("no --state-dir: a model that has learned nothing")
    assert isinstance(policy, ExplainingPolicy)
    ctx = DecisionContext(spec=spec, features=features, now=0.0,
                          warm_idle=tuple(spec.sizes) if args.pool == "warm" else (),
                          slo_ms=slo_ms)
    doc = policy.explain(ctx).to_dict()
    own = doc.get("notes")
    doc["notes"] = [*notes, *(own if isinstance(own, list) else [])]
    return doc, record


def _ask_gateway(args: argparse.Namespace) -> dict[str, Any]:
    import urllib.error
    import urllib.parse
    import urllib.request

    url = f"{args.gateway.rstrip('/')}/functions/{args.function}/explain"
    record = None
    if args.decision:  # the logged input's features, explained by the running gateway
        record = _find_decision(_logs(args), args.decision)
        features = {k: v for k, v in (record.get("features") or {}).items()
                    if isinstance(v, int | float)}
        req = urllib.request.Request(f"{url}?{urllib.parse.urlencode(features)}")
    else:
        headers = {"Content-Type": args.content_type} if args.content_type else {}
        req = urllib.request.Request(url, data=Path(args.input).read_bytes(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as rsp:
            doc = dict(json.loads(rsp.read()))
            if record is not None:
                doc["decision"] = record
            return doc
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"gateway answered {exc.code}", detail=exc.read().decode()[:500]
                          ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"gateway unreachable at {args.gateway}", detail=str(exc)) from None


def _ms(x: float | None) -> str:
    return "?" if x is None else f"{x:.0f}"


def format_explanation(doc: Mapping[str, Any], record: Mapping[str, Any] | None = None) -> str:
    from shabari.core.units import format_cpu, format_memory

    def size(d: Mapping[str, Any]) -> str:
        gpu = f",gpu={d['gpu']}" if d.get("gpu") else ""
        return f"cpu={format_cpu(d['cpu_millicores'])},mem={format_memory(d['memory_mib'])}{gpu}"

    lines = [f"function {doc['function']}: policy {doc['policy']}, phase {doc['phase']}, "
             f"model version {doc.get('modelVersion', 0)}"]
    features = doc.get("features") or {}
    lines.append("features: " + (", ".join(f"{k}={v:g}" for k, v in sorted(features.items())
                                           if isinstance(v, int | float)) or "(none)"))
    if doc.get("inputClass"):
        lines.append(f"input class: {doc['inputClass']}")
    slo = doc.get("sloMs")
    lines.append(f"SLO: {slo:g} ms" if isinstance(slo, int | float) else
                 "SLO: a slowdown bound, resolved per input by the gateway")
    if record is not None:
        a = record.get("action") or {}
        out = record.get("outcome") or {}
        lines.append(f"logged decision {record.get('decision_id')}: ran "
                     f"{size(a) if a else '?'} with p={record.get('probability')} "
                     f"({record.get('reason')}); outcome {out.get('status', '?')} in "
                     f"{_ms(out.get('latency_ms'))} ms, cost {record.get('cost')}")
    lines.append(f"chosen now: {size(doc['chosen'])} ({doc['reason']})")
    lines.append(f"why: {doc['why']}")
    header = ("size", "p", "run time est. ms", "overhead ms", "exp. cost", "SLO", "runs")
    rows = [header]
    for e in doc.get("sizes", []):
        lo, hi = e.get("latencyLowMs"), e.get("latencyHighMs")
        est = "?" if lo is None and hi is None else f"{_ms(lo)} .. {_ms(hi)}"
        ov = e.get("overheadMs")
        c = e.get("cost")
        rows.append((size(e), f"{e['probability']:.2f}", est,
                     "?" if ov is None or ov < 0 else f"{ov:.0f}",
                     "?" if c is None or not math.isfinite(c) else f"{c:.3f}",
                     e.get("verdict", "?"), str(e.get("runs", 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for note in doc.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.gateway:
        doc, record = _ask_gateway(args), None
        record = doc.pop("decision", None) if isinstance(doc, dict) else None
    else:
        doc, record = explanation_dict(args)
    if args.json:
        print(json.dumps({**doc, **({"decision": record} if record else {})}, indent=2))
    else:
        print(format_explanation(doc, record))
    return 0
