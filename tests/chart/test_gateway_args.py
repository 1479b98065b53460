"""The chart's gateway container runs a command line `shabari gateway` accepts.

The Deployment's args and the backend options the chart writes are fed to the real argument
parser and the real backend factory, so a flag renamed in the CLI, a backend option renamed in
`shabari.backends`, or a chart edit that breaks either fails here rather than in a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_chart import named, render

from shabari.cli import build_parser
from shabari.devtools.k8sbin import K8sTools
from shabari.gateway.cli import make_backend
from shabari.gateway.config import load_backend_options

CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "knative-managing-variants": {"gateway": {
        "backend": "knative", "knativeManageVariants": True,
        "backendOptions": {"ingress_url": "http://kourier.kourier-system.svc"},
        "extraArgs": ["--max-concurrent=16", "--policy=static-max"], "port": 9090}},
    "kubernetes-options": {"gateway": {"backendOptions": {
        "image_prefix": "registry.example/fn-", "ready_timeout_s": 60}}},
    "local": {"gateway": {"backend": "local", "extraArgs": ["--node-cpus=2"]}},
}


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = named(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
    container: dict[str, Any] = spec["containers"][0]
    return container


@pytest.mark.parametrize("case", sorted(CASES))
class TestGatewayCommandLine:
    def test_args_parse_and_backend_options_build(
        self, case: str, k8s_tools: K8sTools, tmp_path: Path,
    ) -> None:
        values = CASES[case]
        docs = render(k8s_tools, tmp_path, values)
        container = gateway_container(docs)
        assert container["command"] == ["shabari"]
        args = build_parser().parse_args(container["args"])  # SystemExit on any drift
        assert args.command == "gateway"
        gw = values.get("gateway", {})
        assert args.backend == gw.get("backend", "kubernetes")
        assert args.port == gw.get("port", 8080)

        # the files the args name are the ones the chart mounts
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert Path(args.config).parent == Path(mounts["registry"])
        assert Path(args.backend_config).parent == Path(mounts["backend"])

        # the backend options the chart writes are accepted by that backend as they are
        cm = named(docs, "ConfigMap", "-gateway")
        backend_yaml = tmp_path / Path(args.backend_config).name
        backend_yaml.write_text(cm["data"][backend_yaml.name])
        options = load_backend_options(backend_yaml)
        if args.backend != "local":
            # pods go where the gateway's Role lets it manage them
            assert options["namespace"] == "shabari-system"
            assert named(docs, "Role", "-gateway")["metadata"]["namespace"] == "shabari-system"
        if gw.get("knativeManageVariants"):
            assert options["manage_variants"] is True
        for key, value in gw.get("backendOptions", {}).items():
            assert options[key] == value
        make_backend(args.backend, {}, options=options,
                     node_cpus=args.node_cpus, node_memory_gib=args.node_memory_gib)
