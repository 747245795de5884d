"""Seed-faithful baselines: the design the seed describes, written plainly, to compare against."""
