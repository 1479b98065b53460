"""shabari.k8s (being built)."""
