"""Marks the app folder as a package so mypy tells its function_app.py from other apps'."""
