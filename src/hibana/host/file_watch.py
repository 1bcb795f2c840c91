"""``hibana dev``'s watch on the app's files: a byte on a socket at each change, which
the supervisor's loop takes as a request to reload.

A thread of its own (watchfiles blocks), so it shares nothing with the supervisor but
the socket it writes to.
"""

from __future__ import annotations

import socket
import threading


def watch_app_files(app_dir: str, wake: socket.socket) -> None:
    """Start a thread that sends a byte on ``wake`` at each change to the app's Python
    files in ``app_dir``; it ends when ``wake`` is closed."""
    import watchfiles

    class AppSources(watchfiles.PythonFilter):
        """The app's own Python files: not its store's folder, nor the packages of a
        virtualenv in it (a ``pip install`` there is no edit of the app)."""

        ignore_dirs = (
            *watchfiles.DefaultFilter.ignore_dirs,
            ".hibana",
            "site-packages",
            "dist-packages",
        )

    def watch() -> None:
        for _changes in watchfiles.watch(app_dir, watch_filter=AppSources(), debounce=200):
            try:
                wake.send(b"r")
            except OSError:
                return

    threading.Thread(target=watch, name="hibana-reload", daemon=True).start()
