"""What a worker does last as it exits: what Python's own exit would have done for the
app, which ``os._exit`` skips (a stuck function's thread cannot hold the worker, so it
ends so): this process's ``atexit`` hooks run, the app's ``logging`` QueueListeners stop
once their queues are handled, and its handlers are flushed and closed.

An ``atexit`` hook runs once, in the process that registered it: one the app registered
as the zygote imported it (and hibana's own) is the zygote's, run when the zygote exits
(the host stops, or a reload retires that version), not in each worker forked from it,
where a hook that removes what the import made (a temporary folder, a pid file) would
remove it under the workers still serving. One registered in a worker (by a function, a
lifespan startup, an ``os.register_at_fork`` hook, or the import itself in prewarm
"runtime" and "none") runs as that worker exits."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from hibana.telemetry.python_logging import stop_listeners

#: Seconds the app's exit hooks and logging handlers get at least, even once the drain
#: took all of ``shutdown_timeout`` (a function that would not stop): its last lines.
FLOOR = 1.0


def forget_zygote_hooks() -> None:
    """In the zygote, before anything registers one: each of its children (its workers)
    starts without the zygote's ``atexit`` hooks, before the app's own fork hooks run."""
    zygote = os.getpid()

    def forget() -> None:
        if os.getppid() == zygote:  # not in a process a worker forks (its function's)
            atexit._clear()

    os.register_at_fork(after_in_child=forget)


def close_app(drain_deadline: float | None, shutdown_timeout: float) -> float | None:
    """Run the worker's ``atexit`` hooks, stop the app's QueueListeners (their queues
    drained) and flush and close its logging handlers, until a SIGTERM's drain ends by
    ``drain_deadline`` (``shutdown_timeout`` from now if it was not one; ``FLOOR`` at the
    least). None once all of it is done; else the seconds given, and what is left is left
    (a stuck handler cannot hold the exit)."""
    left = shutdown_timeout if drain_deadline is None else drain_deadline - time.monotonic()
    timeout = max(FLOOR, left)
    closing = threading.Thread(target=_close, name="hibana-exit", daemon=True)
    closing.start()
    closing.join(timeout)
    return timeout if closing.is_alive() else None


def _close() -> None:
    # the order of Python's own exit: the hooks (which may log), then logging's
    atexit._run_exitfuncs()
    stop_listeners()
    logging.shutdown()
