"""A child process that must not outlive its parent: Linux's parent-death signal."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies; if the parent
    is already gone (it died before we got here), act on it now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog in the worker still applies
        pass
    if os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)
