"""shabari.runtime (being built)."""
