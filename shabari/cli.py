"""The `shabari` command line (DESIGN 4.2).

This module owns the argument contract only; each subcommand is implemented by a `run(args)`
function in the module that owns the feature, imported lazily so `shabari --help` stays fast
and a missing optional piece fails with a clear message instead of at import time.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shabari.core.errors import ShabariError

#: subcommand -> module whose `run(args: argparse.Namespace) -> int` implements it
_IMPLEMENTATIONS = {
    "demo": "shabari.demo",
    "simulate": "shabari.sim.cli",
    "trace": "shabari.sim.cli",
    "gateway": "shabari.gateway.cli",
    "operator": "shabari.k8s.cli",
    "profile": "shabari.profiling",
    "bench": "shabari.bench",
    "evaluate": "shabari.evaluation.cli",
    "explain": "shabari.evaluation.explain",
}


def _csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shabari",
        description="Per-invocation right-sizing of serverless functions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="run the main job: gateway + local backend + bundled trace")
    p.add_argument("--minutes", type=float, default=None, help="minutes of the bundled trace")
    p.add_argument("--report", default="demo-report", help="report directory")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--policies", type=_csv_list, default=None,
                   help="comma-separated policies (default: shabari,static-max,static-default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("simulate", help="trace-driven simulation of the policies (DESIGN 4.5)")
    p.add_argument("--trace", required=True, help="trace file (azure2019: the *_inv.csv)")
    p.add_argument("--trace-format", default="azure2019",
                   choices=["azure2019", "azure2021", "invocations"])
    p.add_argument("--perf", action="append", required=True, help="performance table CSV or "
                   "vSwarm profile.json (repeatable)")
    p.add_argument("--policies", type=_csv_list, default=None, help="comma-separated; default all")
    p.add_argument("--slo-slowdown", type=float, default=1.5)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nodes", type=int, default=64)
    p.add_argument("--node-vcpus", type=float, default=32)
    p.add_argument("--node-memory-gib", type=float, default=128)
    p.add_argument("--json", dest="json_out", default=None, help="write the JSON result here")
    p.add_argument("--plots", default=None, help="directory for PNG plots")
    p.add_argument("--keep-alive-s", type=float, default=600.0, help="idle pod keep-alive")
    p.add_argument("--cold-start-ms", type=float, default=1000.0,
                   help="cold start of functions whose table has none")
    p.add_argument("--resize-latency-ms", type=float, default=50.0)
    p.add_argument("--no-resize", action="store_true", help="no in-place CPU resize")
    p.add_argument("--strip-usage", action="store_true",
                   help="drop the tables' peak_memory_mib and cpu_used_millicores columns "
                   "(as on OpenWhisk: the agent then learns from latency and ok/OOM alone)")

    p = sub.add_parser("trace", help="trace utilities")
    tsub = p.add_subparsers(dest="trace_command", required=True)
    ts = tsub.add_parser("synth", help="generate a bundled trace from published statistics")
    ts.add_argument("--out", required=True)
    ts.add_argument("--functions", type=int, default=20)
    ts.add_argument("--minutes", type=int, default=10)
    ts.add_argument("--rate", type=float, default=None, help="mean invocations per minute")
    ts.add_argument("--seed", type=int, default=1)

    p = sub.add_parser("gateway", help="serve the HTTP gateway (DESIGN 4.3)")
    p.add_argument("--backend", default="local",
                   choices=["local", "kubernetes", "knative", "openwhisk"])
    p.add_argument("--config", default=None, help="functions YAML (default: bundled functions)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--policy", default="shabari",
                   help="shabari | static-max | static-default | random")
    p.add_argument("--state-dir", default=None,
                   help="model checkpoints + decision log (restored at start)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-concurrent", type=int, default=None, help="invocations at once")
    p.add_argument("--max-queue", type=int, default=None, help="waiting invocations (then 429)")
    p.add_argument("--keep-alive", type=float, default=None, help="idle pod keep-alive seconds")
    p.add_argument("--node-cpus", type=float, default=None,
                   help="local backend: schedulable vCPUs (default: this machine's cores)")
    p.add_argument("--node-memory-gib", type=float, default=None,
                   help="local backend: schedulable memory (default: this machine's memory)")
    p.add_argument("--backend-config", default=None,
                   help="YAML file whose 'backend:' options override --config's (the chart's)")
    p.add_argument("--registry-poll", type=float, default=None,
                   help="seconds between checks of --config for changes (default 5; 0: never)")
    p.add_argument("--invoke-timeout", type=float, default=None,
                   help="seconds an invocation may run, its input upload included (default 60)")
    p.add_argument("--body-timeout", type=float, default=None,
                   help="seconds a request body may take to arrive (default 30; then 408)")
    p.add_argument("--body-memory-mib", type=float, default=None,
                   help="request bodies held in memory at once, all together (default 128)")
    p.add_argument("--drain-timeout", type=float, default=None,
                   help="seconds a SIGTERM waits for admitted requests (default 60)")
    p.add_argument("--decision-log", default=None,
                   help="decision log file (default: STATE_DIR/decisions.jsonl)")
    p.add_argument("--checkpoint-interval", type=float, default=None,
                   help="seconds between model checkpoints into --state-dir (default 30)")
    p.add_argument("--max-connections", type=int, default=None,
                   help="open client connections at most (default 1000; below the fd limit)")
    p.add_argument("--auth-token-file", default=None,
                   help="file holding a bearer token every endpoint but the probes requires "
                        "(default: $SHABARI_AUTH_TOKEN, else none)")
    r = p.add_argument_group("replicas (several gateways that learn as one; docs/gateway.md)")
    r.add_argument("--lease", default=None, metavar="NAMESPACE/NAME",
                   help="elect the learner with this coordination.k8s.io Lease (off: this "
                        "process plays every role)")
    r.add_argument("--replica-id", default=None,
                   help="this replica's identity in the Lease (default $POD_NAME, hostname)")
    r.add_argument("--advertise-url", default=None,
                   help="URL the other replicas reach this one at (default "
                        "http://$POD_IP:PORT, else http://HOST:PORT)")
    r.add_argument("--lease-duration", type=float, default=None,
                   help="seconds a learner's Lease lasts unrenewed (default 15)")
    r.add_argument("--kube-api", default=None,
                   help="Kubernetes API URL for the Lease (default: in-cluster, kubeconfig)")
    r.add_argument("--model-sync-interval", type=float, default=None,
                   help="seconds between a replica's fetches of the learner's models (0.5)")
    r.add_argument("--outcome-ship-interval", type=float, default=None,
                   help="seconds between a replica's shipments of outcomes (0.1)")

    p = sub.add_parser("operator", help="run the Kubernetes control plane (kopf)")
    p.add_argument("kopf_args", nargs=argparse.REMAINDER, help="options passed to `kopf run`")

    p = sub.add_parser("profile", help="measure a bundled function at each size (DESIGN 4.4)")
    p.add_argument("function")
    p.add_argument("--sizes", nargs="*", default=None,
                   help="sizes as CPU:MEMORY, e.g. 250m:256Mi 1:1Gi (default: the function's grid)")
    p.add_argument("--inputs", type=int, default=5, help="number of generated inputs")
    p.add_argument("--repeats", type=int, default=1, help="samples per (input, size)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="perf.csv")

    p = sub.add_parser("bench", help="overhead benchmarks (DESIGN 4.6)")
    p.add_argument("which", choices=["decide", "gateway"])
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--n", type=int, default=None, help="number of operations (decide)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of wrk load per point (gateway; default 8)")
    p.add_argument("--connections", default=None,
                   help="comma-separated wrk connection counts (gateway; default 1,8,64)")
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("evaluate", help="off-policy estimate of another policy's cost on the "
                                        "decision log (IPS and doubly robust)")
    from shabari.evaluation.cli import add_arguments as evaluate_arguments

    evaluate_arguments(p)

    p = sub.add_parser("explain", help="why a size was (or would be) chosen: features, "
                                       "predictions and probabilities per size")
    from shabari.evaluation.explain import add_arguments as explain_arguments

    explain_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name = _IMPLEMENTATIONS[args.command]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # pragma: no cover - only when a piece is not installed
        print(f"shabari {args.command}: not available ({exc})", file=sys.stderr)
        return 2
    try:
        result: int = module.run(args)
    except ShabariError as exc:
        print(f"shabari {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
