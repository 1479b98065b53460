"""Stub replaced by the featurizers implementation."""
