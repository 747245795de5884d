"""Probing: no web framework, no Redis."""
