"""`shabari operator [kopf options]`: run the control plane with kopf's own CLI.

Equivalent to `kopf run -m shabari.k8s.handlers [options]` (what operator/Dockerfile runs);
without a namespace option it watches all namespaces, as the Helm chart's ClusterRole
allows.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from shabari.core.errors import ConfigError

HANDLERS_MODULE = "shabari.k8s.handlers"
_SCOPE_OPTIONS = ("-n", "--namespace", "-A", "--all-namespaces")


def kopf_argv(extra: Sequence[str]) -> list[str]:
    """The `kopf` command line for `shabari operator EXTRA...`."""
    options = [a for a in extra if a != "--"]
    scoped = any(a == o or a.startswith(o + "=") for a in options for o in _SCOPE_OPTIONS)
    return ["run", "-m", HANDLERS_MODULE, *([] if scoped else ["--all-namespaces"]), *options]


def run(args: argparse.Namespace) -> int:
    import click
    from kopf.cli import main as kopf_main

    argv = kopf_argv(list(getattr(args, "kopf_args", None) or []))
    try:
        kopf_main.main(args=argv, prog_name="shabari operator", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        raise ConfigError(exc.format_message()) from exc
    except click.exceptions.Abort:
        return 130
    return 0
