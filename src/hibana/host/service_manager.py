"""Telling a service manager how the host is doing: systemd's notification protocol.

Under a unit with ``Type=notify`` (or ``Type=notify-reload``) systemd passes a socket in
``NOTIFY_SOCKET``; the host sends ``READY=1`` once it listens, ``RELOADING=1`` and
``READY=1`` around a reload, ``STOPPING=1`` when it begins to shut down, and a ``STATUS=``
line that ``systemctl status`` shows. So ``systemctl start`` returns when requests can be
served, and ``systemctl reload`` when the new version serves. Without ``NOTIFY_SOCKET``
nothing is sent.
"""

from __future__ import annotations

import os
import socket
import time


class ServiceManager:
    def __init__(self) -> None:
        # Taken out of the environment: the host's children (its zygote, workers and the
        # functions they run) are not the service and must not speak for it.
        path = os.environ.pop("NOTIFY_SOCKET", "")
        if path.startswith("@"):
            path = "\0" + path[1:]  # an abstract socket
        self._address = path or None

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the app")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=shutting down: draining the workers")

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError:
            pass  # the manager went away or refused: serving goes on regardless
