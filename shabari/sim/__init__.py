"""shabari.sim (being built)."""
