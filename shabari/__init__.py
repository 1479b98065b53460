"""Shabari: per-invocation right-sizing for serverless functions."""
__version__ = "0.1.0"
