"""shabari.agent (being built)."""
