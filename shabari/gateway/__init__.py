"""shabari.gateway (being built)."""
