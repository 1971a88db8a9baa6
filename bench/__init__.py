"""Benchmarks of vfs (not timed tests): see bench/RESULTS.md for the figures and how to rerun them."""
