"""Benchmarks: ``python -m benchmarks`` (see benchmarks/RESULTS.md)."""
