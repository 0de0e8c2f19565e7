"""Benchmarks, tables, sweeps and launchers; run each as `python -m scripts.NAME`."""
