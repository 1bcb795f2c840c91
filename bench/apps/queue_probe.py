"""What the queue benchmark's no-op jobs record, shared by every peer's worker app.

A job calls ``record(sent, phase)`` first thing: it keeps ``(phase, sent, now)`` in a list of
its process, which a daemon thread appends every ``FLUSH_INTERVAL`` to
``$BENCH_QUEUE_OUT/<pid>.txt``, one ``phase sent started`` line per job. The benchmark reads
those files to count finished jobs and compute latencies, so a job costs one ``time.time()``
and one list append, and no round trip to anything.

Lines still in memory when a process dies are lost; the benchmark waits until it has read
every line it expects before it stops the workers, so that never matters. A reader may find
the last line of a file half written and must keep it for later.
"""

from __future__ import annotations

import os
import threading
import time

OUT_ENV = "BENCH_QUEUE_OUT"
FLUSH_INTERVAL = 0.05

_lock = threading.Lock()
_pending: list[tuple[int, float, float]] = []
# The pid whose flusher runs: a forked child (Celery's prefork) has no thread yet.
_flusher_pid = 0


def record(sent: float, phase: int) -> None:
    now = time.time()
    if _flusher_pid != os.getpid():
        _start_flusher()
    with _lock:
        _pending.append((phase, sent, now))


def _start_flusher() -> None:
    global _flusher_pid
    with _lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()
        # Records copied over from a forking parent are the parent's to write.
        _pending.clear()
    out = os.environ[OUT_ENV]
    path = os.path.join(out, f"{os.getpid()}.txt")
    threading.Thread(target=_flush_forever, args=(path,), name="queue-probe", daemon=True).start()


def _flush_forever(path: str) -> None:
    with open(path, "a", encoding="ascii") as f:
        while True:
            time.sleep(FLUSH_INTERVAL)
            with _lock:
                batch = _pending[:]
                _pending.clear()
            if batch:
                f.write("".join(f"{p} {s!r} {t!r}\n" for p, s, t in batch))
                f.flush()
