"""Benchmarks that run the gateway against the simulators on loopback."""
