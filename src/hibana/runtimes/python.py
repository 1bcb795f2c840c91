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
    more per call here). No lock either: which threads are free is a list of tokens, one
    per thread back from a job and waiting for the next, that threads append to and
    ``submit`` pops (each an atomic step of a list), so a job and its end cost no lock
    taken on either side."""

    def __init__(self, max_threads: int, name: str = "hibana-fn") -> None:
        self.max_threads = max_threads
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._put = self._jobs.put
        self._threads: list[threading.Thread] = []
        #: A token per thread that is waiting for a job (or about to) and that no job
        #: submitted since has claimed. A thread started for a job adds none before it:
        #: the job is its. Once every thread is busy, one back from a job may find a job
        #: waiting and leave its token behind: by then ``max_threads`` run, so the token
        #: only stops ``submit`` from starting a thread it could not start anyway.
        self._idle: list[None] = []

    def submit(
        self, loop: asyncio.AbstractEventLoop, then: Then, fn: Callable[..., Any], *args: Any
    ) -> None:
        """Run ``fn(*args)`` on a thread; then ``then(value, None)`` or ``then(None, exc)``
        on ``loop``. Called from one thread (the loop's): only it takes tokens."""
        idle = self._idle
        if idle:
            idle.pop()  # a free thread takes the job
            self._put((loop, then, fn, args))
            return
        self._put((loop, then, fn, args))
        if len(self._threads) < self.max_threads:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def shutdown(self, wait: bool = False) -> None:
        """End the threads once their current function returns; ``wait`` joins them."""
        for _ in self._threads:
            self._put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        get, free = self._jobs.get, self._idle.append
        while True:
            job = get()
            if job is None:
                return
            loop, then, fn, args = job
            try:
                value, exc = fn(*args), None
            except BaseException as error:  # handed to the awaiting side, which decides
                value, exc = None, error
            # not contextlib.suppress, whose object and calls each sync invocation would pay
            try:  # noqa: SIM105
                loop.call_soon_threadsafe(then, value, exc)
            except RuntimeError:
                pass  # the loop has closed: the worker exits
            del job, then, value, exc
            free(None)
