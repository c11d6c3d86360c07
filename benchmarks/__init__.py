"""Benchmarks of the exporter; run them all with `python -m benchmarks` (see run.py).

Not tests: pytest never collects them (testpaths is tests/ and no file here
starts with test_), and nothing here asserts a duration.
"""
