"""The simulated upstream and the demo fleet (used by tests, benchmarks and `router-health demo`)."""
