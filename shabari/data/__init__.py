"""shabari.data (being built)."""
