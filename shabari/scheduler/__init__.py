"""shabari.scheduler (being built)."""
