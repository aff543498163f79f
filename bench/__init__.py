"""Benchmarks for feedhook. Run ``make bench`` (or ``python -m bench.poll --help``)."""
