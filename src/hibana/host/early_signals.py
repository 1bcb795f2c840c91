"""What SIGTERM, SIGINT and SIGHUP do from the first step of ``hibana serve`` and
``hibana dev`` until the supervisor installs its own handlers: they are noted, and the
supervisor acts on them as on those that come after (a stop: it stops before serving; a
SIGHUP: a reload once it serves). Before, their default action killed the process: SIGHUP
without a word, SIGTERM without the graceful stop, SIGINT with a traceback.

Signals are the process's, so what is noted is too: one list, for the one supervisor."""

from __future__ import annotations

import signal
from types import FrameType

#: What the supervisor takes over.
HELD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_noted: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    _noted.append(signum)


def hold() -> None:
    """From now on, note ``HELD`` signals instead of acting on them."""
    for sig in HELD:
        signal.signal(sig, _note)


def take() -> list[int]:
    """The signals noted since ``hold`` (in order), each given once; call it once the
    supervisor's own handlers are in place, or one may come between."""
    taken = _noted[:]
    del _noted[: len(taken)]
    return taken
