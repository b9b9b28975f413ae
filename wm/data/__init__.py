"""Streaming readers that feed training from artifacts on disk (never the whole file in memory)."""
