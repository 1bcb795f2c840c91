"""Makes this folder a package for mypy only, so its function_app module does not clash with
the other bench apps' (hibana imports function_app.py by path and ignores this file)."""
