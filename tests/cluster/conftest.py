"""Registers the cluster fixtures (defined in cluster_fixtures.py) for this folder."""

from cluster_fixtures import function_dirs, k8s_api, kubelet, tls

__all__ = ["function_dirs", "k8s_api", "kubelet", "tls"]
