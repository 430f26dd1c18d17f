"""Benchmarks for einsgrad: ``python -m benchmarks.core`` measures the compiler core."""
