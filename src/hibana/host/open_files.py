"""The limit on open files, which bounds the connections a host can hold.

Each connection is a file in the worker that accepted it, and a second one in the
supervisor (its duplicate, to answer 502 if the worker dies). Past a worker's limit its
event loop cannot accept: libuv takes the connection and closes it at once, unanswered
and unlogged. So the supervisor raises its soft limit to the hard one at start (the
processes it starts inherit it), as Go's runtime does, and a worker that nears its limit
says so in a log line.
"""

from __future__ import annotations

import contextlib
import os
import resource

#: Below this limit, the banner says how few connections a worker can hold.
LOW = 4096


def raise_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        if soft < target:
            # a failure leaves the limit as it was: the kernel's ceiling (fs.nr_open) is lower
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return limit()


def limit() -> int:
    """This process's soft limit on open files (no limit: a number past any count)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return _NONE if soft == resource.RLIM_INFINITY else soft


_NONE = 1 << 62


def connections_before_limit() -> int:
    """How many more connections this process can hold before nearing its limit: the
    files it has not opened yet, less a reserve for what functions open."""
    soft = limit()
    if soft == _NONE:
        return _NONE
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: a worker's own files, about
        used = 32
    free = soft - used
    return max(1, free - max(16, free // 10))
