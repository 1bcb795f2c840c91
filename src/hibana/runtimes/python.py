"""The in-process Python runtime: sync functions run on the worker's bounded pool of
threads (async ones run on its event loop, awaited by the dispatcher)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

#: When a sync function ends: called on the loop with what it returned or raised.
Then = Callable[[Any, "BaseException | None"], None]
_Job = tuple[asyncio.AbstractEventLoop, Then, Callable[..., Any], tuple[Any, ...]]


class FunctionThreads:
    """Up to ``max_threads`` threads for sync functions, started as they are needed.

    Leaner than ``loop.run_in_executor``: no future at all, only the callback ``then``
    scheduled on the loop when the function ends (``run_in_executor`` costs about 50 us
    more per call here)."""

    def __init__(self, max_threads: int, name: str = "hibana-fn") -> None:
        self.max_threads = max_threads
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        #: Threads free for a job (waiting for one, or started for one) less jobs queued:
        #: below 0, a job has no thread to run it yet.
        self._free = 0

    def submit(
        self, loop: asyncio.AbstractEventLoop, then: Then, fn: Callable[..., Any], *args: Any
    ) -> None:
        """Run ``fn(*args)`` on a thread; then ``then(value, None)`` or ``then(None, exc)``
        on ``loop``."""
        thread = None
        with self._lock:
            self._free -= 1
            if self._free < 0 and len(self._threads) < self.max_threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                self._free += 1
        self._jobs.put((loop, then, fn, args))
        if thread is not None:
            thread.start()

    def shutdown(self, wait: bool = False) -> None:
        """End the threads once their current function returns; ``wait`` joins them."""
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        while True:
            job = jobs.get()  # a free thread takes a queued job: _free stays as it is
            if job is None:
                return
            loop, then, fn, args = job
            try:
                ended: tuple[Any, BaseException | None] = (fn(*args), None)
            except BaseException as exc:  # handed to the awaiting side, which decides
                ended = (None, exc)
            # not contextlib.suppress, whose object and calls each sync invocation would pay
            try:  # noqa: SIM105
                loop.call_soon_threadsafe(then, *ended)
            except RuntimeError:
                pass  # the loop has closed: the worker exits
            del job, then, ended
            with lock:
                self._free += 1
