"""The benchmarks: scripts run as files (python bench/http.py), a package for mypy."""
