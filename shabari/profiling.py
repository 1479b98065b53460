"""shabari.profiling (being built)."""
