"""shabari.demo (being built)."""
