"""A worker: serves HTTP from the shared listening socket and runs functions in-process.

It is forked from the zygote with the app already imported. SIGTERM drains it: new
requests get 503, in-flight invocations see cancellation and get ``shutdown_timeout``
seconds to finish. A function that outlives its timeout by ``cancel_grace`` seconds
(a thread that cannot be stopped) retires the worker: it stops accepting, finishes the
rest and exits, and the supervisor forks a replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import uvicorn

from hibana.app import App
from hibana.context import Invocation
from hibana.dispatcher import Dispatcher
from hibana.host.config import HostConfig
from hibana.host.http_protocol import guarded_protocol
from hibana.telemetry.logs import Logger, LogSink, timestamp
from hibana.triggers.http import HttpFront


class _Server(uvicorn.Server):
    """uvicorn's server, minus its signal handling: the worker decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _JsonLogHandler(logging.Handler):
    """Routes stdlib logging (uvicorn's own warnings, user code using ``logging``) into the
    worker's JSON log lines."""

    def __init__(self, sink: LogSink, worker: int) -> None:
        super().__init__()
        self.sink = sink
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        line: dict[str, Any] = {
            "ts": timestamp(),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
            "worker": self.worker,
        }
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = repr(record.exc_info[1])
        self.sink.emit(line)


class Worker:
    def __init__(self, app: App, listener: socket.socket, config: HostConfig, index: int):
        self.app = app
        self.listener = listener
        self.config = config
        self.index = index
        self.sink = LogSink(1, config.log_level)
        self.log = Logger(self.sink, {"worker": index, "pid": os.getpid()})
        self.server: _Server | None = None
        self.front: HttpFront | None = None
        self.dispatcher: Dispatcher | None = None
        self._stopping = False

    def run(self) -> NoReturn:
        """Serve until told to stop, then exit the process (stuck threads cannot hold it)."""
        code = 0
        try:
            try:
                import uvloop
            except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
                asyncio.run(self._serve())
            else:
                uvloop.run(self._serve())
        except BaseException as exc:
            self.log.exception("worker crashed", exc)
            code = 1
        self.sink.flush()
        os._exit(code)

    async def _serve(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        self.sink.attach(loop)
        handler = _JsonLogHandler(self.sink, self.index)
        for name in ("uvicorn", "uvicorn.error", "hibana"):
            logger = logging.getLogger(name)
            logger.handlers = [handler]
            logger.propagate = False
            logger.setLevel(logging.WARNING if name.startswith("uvicorn") else logging.INFO)
        root = logging.getLogger()
        root.handlers = [handler]
        root.setLevel(config.log_level.upper())
        pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="hibana-fn")
        self.dispatcher = Dispatcher(
            pool,
            concurrency_wait=config.concurrency_wait,
            cancel_grace=config.cancel_grace,
            on_stuck=self._on_stuck,
        )
        self.front = HttpFront(
            self.app,
            self.dispatcher,
            self.sink,
            max_body_bytes=config.max_body_bytes,
            body_timeout=config.body_timeout,
        )
        uv_config = uvicorn.Config(
            self.front,
            http=guarded_protocol(config.max_header_bytes, config.header_timeout),
            loop="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=math.ceil(config.keep_alive_timeout),
            timeout_graceful_shutdown=2,
        )
        self.server = _Server(uv_config)
        self._start_watchdog(loop)
        loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        self.log.debug("worker started")
        await self.server.serve(sockets=[self.listener])
        self.log.debug("worker stopped")

    def _start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Exit if the event loop stops turning while an invocation is past its deadline
        and ``cancel_grace``.

        An async function that calls blocking code (``time.sleep``, a sync driver) freezes
        the whole worker: no deadline can fire and no response can be sent. The only cure is
        a new worker; the supervisor forks one when this one exits."""
        beat = [time.monotonic()]
        grace = self.config.cancel_grace

        def tick() -> None:
            beat[0] = time.monotonic()
            loop.call_later(0.1, tick)

        def overdue() -> list[str]:
            # Read from another thread while the loop is frozen; if it is not frozen after
            # all and the dict changes under us, the next round looks again.
            now = time.monotonic()
            try:
                running = list(self.dispatcher.inflight.values()) if self.dispatcher else []
            except RuntimeError:
                return []
            return [inv.id for inv in running if now > inv.deadline + grace]

        def watch() -> None:
            while True:
                time.sleep(0.1)
                stalled = time.monotonic() - beat[0]
                if stalled > 0.5 and (late := overdue()):
                    self.log.error(
                        "event loop blocked; an async function is calling blocking code; "
                        "replacing this worker",
                        blocked_s=round(stalled, 3),
                        invocations=late,
                    )
                    self.sink.flush()
                    os._exit(70)

        tick()
        threading.Thread(target=watch, name="hibana-watchdog", daemon=True).start()

    def _on_sigterm(self) -> None:
        assert self.server is not None
        if self._stopping:
            self.server.force_exit = True
            self.server.should_exit = True
            return
        self._stopping = True
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.server is not None and self.front is not None and self.dispatcher is not None
        self.front.draining = True
        self.dispatcher.cancel_all()
        deadline = time.monotonic() + self.config.shutdown_timeout
        while self.dispatcher.inflight and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.dispatcher.inflight:
            self.log.warning(
                "shutdown_timeout passed with invocations still running; abandoning them",
                invocations=list(self.dispatcher.inflight),
            )
            # Their clients get 503 + Retry-After now; the functions die with the process.
            self.dispatcher.abandon_all()
            await asyncio.sleep(0.05)
        self.server.should_exit = True

    def _on_stuck(self, inv: Invocation) -> None:
        assert self.server is not None
        self.log.error(
            "function did not return after its timeout and cancellation; replacing this worker",
            invocation_id=inv.id,
            function=inv.function.name,
            cancel_grace_s=self.config.cancel_grace,
        )
        self._stopping = True
        self.server.should_exit = True


def run_worker(app: App, listener: socket.socket, config: HostConfig, index: int) -> NoReturn:
    """Entry point in a freshly forked child of the zygote."""
    Worker(app, listener, config, index).run()
