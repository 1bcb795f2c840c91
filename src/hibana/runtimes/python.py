"""The in-process Python runtime: sync functions run on the worker's bounded pool of
threads (async ones run on its event loop, awaited by the dispatcher)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from hibana.context import Context, Invocation

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class FunctionThreads:
    """Up to ``max_threads`` threads for sync functions, started as they are needed.

    Leaner than ``loop.run_in_executor``: one asyncio future per call, no
    ``concurrent.futures.Future`` to wrap (about 25 us less per call here)."""

    def __init__(self, max_threads: int, name: str = "hibana-fn") -> None:
        self.max_threads = max_threads
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0

    def submit(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((loop, fut, fn, args))
        thread = None
        with self._lock:
            if self._idle == 0 and len(self._threads) < self.max_threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
        if thread is not None:
            thread.start()
        return fut

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
            with lock:
                self._idle += 1
            job = jobs.get()
            with lock:
                self._idle -= 1
            if job is None:
                return
            loop, fut, fn, args = job
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting side, which decides
                outcome: tuple[Callable[..., None], Any] = (_fail, exc)
            else:
                outcome = (_succeed, result)
            with contextlib.suppress(RuntimeError):  # the loop has closed: the worker exits
                loop.call_soon_threadsafe(outcome[0], fut, outcome[1])


def _succeed(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def start(invocation: Invocation, ctx: Context, threads: FunctionThreads) -> asyncio.Future[Any]:
    """Start a sync function on ``threads``; the future resolves to what it returns.

    (An async function needs no starting: the dispatcher awaits it in the request's task.)"""
    spec = invocation.function
    return threads.submit(asyncio.get_running_loop(), spec.handler, invocation.payload, ctx)
