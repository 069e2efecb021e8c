"""Benchmarks of dali_voc: ``python -m benchmarks.throughput``."""
