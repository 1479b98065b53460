"""shabari.bench (being built)."""
