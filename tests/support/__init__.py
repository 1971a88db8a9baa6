"""Test tooling shared by the suite and the benchmarks: constructed datasets, bad files, a real dashboard server."""
