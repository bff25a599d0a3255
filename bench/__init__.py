"""Benchmarks: each prints its figures and how they were measured. `python -m bench.run_all` runs them all."""
