"""The host's listening socket: bound once by the supervisor and shared by every worker
of every version of the app, so a reload never drops it.

Apart from the supervisor because binding is all it needs (a host and a port) and its
errors are where a user learns which flag to change.
"""

from __future__ import annotations

import errno
import socket

from hibana.host.config import HostStartError


def bind(host: str, port: int) -> socket.socket:
    """A listening, non-blocking, inheritable socket on ``host``:``port``; raises
    HostStartError naming the address and the fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fix = (
                "is another host running there? Pass --port to choose another port "
                "(0 picks a free one)"
            )
        elif exc.errno == errno.EACCES:
            fix = "ports below 1024 need privileges; pass --port 1024 or above"
        else:
            fix = "pass --host an address of this machine (127.0.0.1, 0.0.0.0, ::)"
        raise HostStartError(f"cannot listen on {host}:{port}: {exc.strerror}; {fix}") from None
    sock.listen(2048)
    sock.setblocking(False)  # as the workers have it; the supervisor accepts only to refuse
    sock.set_inheritable(True)
    return sock
