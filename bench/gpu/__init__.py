"""Benchmarks that need a GPU machine (`python -m bench.gpu`); `--dry-run` checks them on CPU."""
