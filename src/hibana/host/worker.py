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
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from typing import NoReturn

from hibana.adapters.asgi import AsgiMount, lifespans
from hibana.app import App, EventTrigger, QueueTrigger, TimerTrigger
from hibana.context import Invocation
from hibana.dispatcher import Dispatcher
from hibana.host.board import Board, Layout, PermitRow, PermitTable
from hibana.host.config import HostConfig
from hibana.host.control import Spawn
from hibana.host.handoff import Handoff
from hibana.host.http_server import HttpServer
from hibana.host.lifeline import die_with_parent
from hibana.host.loader import load_app
from hibana.host.open_files import connections_before_limit
from hibana.host.scaling import DEFAULT_THREADS
from hibana.host.worker_exit import close_app
from hibana.runtimes.python import FunctionThreads
from hibana.store.base import CLOSE_TIMEOUT, Store
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from hibana.telemetry.printed import PrintedLines, ScrubbedText
from hibana.telemetry.python_logging import import_logging, route_logging
from hibana.triggers.http import HttpFront, timed_out
from hibana.triggers.outbox import Outbox
from hibana.triggers.queue import QueueConsumer
from hibana.triggers.settle_writes import LAST_WRITES

#: Seconds a mounted app's lifespan startup runs before the worker says it waits on it.
STARTUP_NOTICE = 5.0
#: The event loop's heartbeat while invocations run, and while none does: the watchdog
#: calls the loop blocked once a beat is this late by 0.4 s more, and an invocation is
#: past its deadline and grace.
_BEAT = 0.1
_IDLE_BEAT = 1.0
#: Seconds past its beat the watchdog thread may oversleep before it takes the process
#: for stopped and resumed (not its loop for blocked).
_FROZEN = 1.0
#: Seconds a worker whose loop is blocked waits for the store to take its timed-out queue
#: messages' retries before it exits (their leases run out if it does not).
FROZEN_SETTLE = 2.0
#: Seconds connections get to finish writing their answers once the worker stops serving.
_WRITE_GRACE = 2.0


_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def resident_mb(statm: int) -> float | None:
    """This process's resident memory in MB, read from ``statm`` (an fd open on
    ``/proc/self/statm``); None if it cannot be read now."""
    try:
        return int(os.pread(statm, 256, 0).split()[1]) * _PAGE_MB
    except (OSError, ValueError, IndexError):
        return None


class Worker:
    def __init__(
        self,
        app: App,
        listener: socket.socket,
        config: HostConfig,
        spawn: Spawn,
        board: Board | None,
        handoff: int | None = None,
        permits: PermitRow | None = None,
    ) -> None:
        #: This worker's row of the host's max_concurrency permits.
        self.permits = permits
        #: The supervisor's connection-handoff socket (fd), for 502s if this worker dies.
        self.handoff_fd = handoff
        self.app = app
        self.listener = listener
        self.config = config
        #: Threads for sync functions, as the zygote resolved them (--threads, the App's
        #: threads=, or the default) before it started this worker.
        self.threads = config.threads or DEFAULT_THREADS
        self.spawn = spawn
        self.index = spawn.slot
        self.row = board.worker(spawn.slot) if board is not None else None
        self.sink = LogSink(config.log_fd, config.log_level)
        self.log = Logger(self.sink, {"worker": spawn.slot, "pid": os.getpid()})
        self.server: HttpServer | None = None
        #: Set when the worker should stop serving: ``grace`` is how long connections
        #: get to finish their answers.
        self._stop: asyncio.Future[float] | None = None
        #: When a SIGTERM's drain ends (its shutdown_timeout): mounted apps' work after
        #: their answers gets until then too.
        self._drain_deadline: float | None = None
        #: When a retiring worker's work is due (its grace from ``retire``): its queue
        #: deliveries' settlements are waited for until then (the store may be away).
        self._retire_deadline: float | None = None
        self.front: HttpFront | None = None
        self.dispatcher: Dispatcher | None = None
        self.store: Store | None = None
        self.consumer: QueueConsumer | None = None
        #: What ``ctx.enqueue`` and ``ctx.publish`` send through (None: no store).
        self.outbox: Outbox | None = None
        #: Retiring or draining (no more work taken); draining: SIGTERM's shutdown began.
        self._stopping = False
        self._draining = False
        #: The drain ended with settlements the store had not taken (it was away).
        self._unsettled = False
        #: The task starting the worker, until it serves (a SIGTERM meanwhile ends it).
        self._starting: asyncio.Task[None] | None = None

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
        except asyncio.CancelledError as exc:
            self.sink.detach()  # the loop is gone: write at once
            if self._draining:  # SIGTERM before it served: there was nothing to drain
                self.log.debug("worker stopped before it served")
            else:
                self.log.exception("worker crashed", exc)
                code = 1
        except BaseException as exc:
            self.sink.detach()  # the loop is gone: write at once
            self.log.exception("worker crashed", exc)
            code = 1
        # settlements the store did not take within the drain are logged: not waited for
        timeout = 0.0 if self._unsettled else CLOSE_TIMEOUT
        if self.store is not None and not self.store.close(timeout) and not self._unsettled:
            # every settlement asked for is written before we go; unless the database
            # stopped answering: what they were is left to run out (delivered again)
            self.log.error(
                "the store did not answer; exiting without the settlements left to write",
                seconds=CLOSE_TIMEOUT,
            )
        self.sink.detach()  # the loop is gone: write at once
        left = close_app(self._drain_deadline, self.config.shutdown_timeout)
        if left is not None:
            self.log.warning(
                "the app's atexit hooks or logging handlers had not finished; exiting "
                "without the rest of them",
                seconds=round(left, 3),
            )
        if isinstance(sys.stdout, PrintedLines):
            sys.stdout.flush_all()  # printed text that never got its newline
        os._exit(code)

    async def _serve(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        self._starting = asyncio.current_task()
        self.sink.attach(loop)
        route_logging(self.sink, self.index, config.log_level)
        printed = {"worker": self.index, "pid": os.getpid()}
        if type(sys.stdout) is PrintedLines:  # the zygote's, which the app may hold
            sys.stdout.rebind(self.sink, printed)
        else:
            sys.stdout = PrintedLines(self.sink, printed)
        sys.stderr = ScrubbedText(self.sink, sys.__stderr__ or sys.stderr)
        pool = FunctionThreads(self.threads)
        self.dispatcher = Dispatcher(
            pool,
            concurrency_wait=config.concurrency_wait,
            cancel_grace=config.cancel_grace,
            on_stuck=self._on_stuck,
            meter=self.row,
            permits=self.permits,
            functions=[spec.name for spec in self.app.functions],
            cold_since=self.spawn.requested_at if self.spawn.on_demand else None,
        )
        self.front = HttpFront(
            self.app,
            self.dispatcher,
            self.sink,
            max_body_bytes=config.max_body_bytes,
            body_timeout=config.body_timeout,
        )
        await self._start_store(loop)
        handoff = None
        if self.handoff_fd is not None and self.row is not None:
            handoff = Handoff(socket.socket(fileno=self.handoff_fd), self.row.connections)
            self.front.connections = self.row
        self.server = HttpServer(
            self.front,
            self.log,
            max_body_bytes=config.max_body_bytes,
            max_header_bytes=config.max_header_bytes,
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
            min_body_rate=config.min_body_rate,
            keep_alive_timeout=config.keep_alive_timeout,
            handoff=handoff,
            crowded=connections_before_limit(),
        )
        self._stop = loop.create_future()
        self._start_watchdog(loop)
        loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        loop.add_signal_handler(signal.SIGUSR1, self.retire)
        loop.add_signal_handler(signal.SIGINT, lambda: None)
        if self.row is not None:
            self.row.set("pid", os.getpid())
            self.row.set("started_at", self.spawn.requested_at)
        mounts = list({id(m): m for m in self._mounts()}.values())
        living = lifespans(mounts)
        for started, mount in enumerate(living):
            failed = await self._start_mount(mount)
            if failed is not None:
                # the mounts started before it have opened what their lifespans hold (a
                # pool, a client): they are shut down before the worker goes
                await self._shut_down_mounts(reversed(living[:started]))
                raise RuntimeError(
                    f"the app mounted at {mount.prefix or '/'} failed its lifespan startup: "
                    f"{failed}"
                )
            if mount.lifespan_error is not None:
                self.log.warning(
                    f"the app mounted at {mount.prefix or '/'} raised in its lifespan startup; "
                    "it is served without its lifespan (to stop the start instead, catch the "
                    "error and send lifespan.startup.failed)",
                    error=mount.lifespan_error,
                )
        self._starting = None  # from here a SIGTERM drains: queue deliveries are taken
        if self.consumer is not None:
            self.consumer.start()
        await self.server.start(self.listener)
        if self.row is not None:
            # ready: serving, its mounted apps started (a reload waits for this)
            now = time.monotonic()
            self.row.set("ready_at", now)
            self.row.set("last_active", now)
            if self.dispatcher.cold_since is None:
                # a warm (pre-started) worker: its cold start is its own start-up time
                self.dispatcher.cold_ms = (now - self.spawn.requested_at) * 1000
        self.log.debug("worker started")
        grace = await self._stop
        self.server.stop_accepting()
        if self.row is not None:
            self.row.set("stopped_at", time.monotonic())  # a reload waits for this
        if self.consumer is not None:
            # claim nothing new while the requests finish (on a reload, the new version's
            # workers take the queues now); what is held is finished below
            await self.consumer.stop()
        await self.server.shutdown(grace)
        await self._finish_mounts(mounts)
        await self._shut_down_mounts(living)
        if self.consumer is not None:
            await self.consumer.stop()
            # ended by the retiring's grace, or by a SIGTERM's shutdown_timeout (drain_by,
            # before or while it waits), even with the store away
            unsettled = await self.consumer.drained(self._retire_deadline)
            if unsettled:
                self._unsettled = True
                self.log.error(
                    "stopping with settlements the store has not taken (it did not answer "
                    "them by the drain's end: away, or too slow); these messages are "
                    "delivered again once their leases end",
                    message_ids=unsettled,
                )
        self._close_outbox()  # functions still running (stuck ones) send through the loop
        self.log.debug("worker stopped")

    async def _start_mount(self, mount: AsgiMount) -> str | None:
        """Run ``mount``'s lifespan startup (see ``AsgiMount.startup``); one still running
        after ``STARTUP_NOTICE`` seconds is told, as the worker serves nothing until it ends."""
        startup = asyncio.ensure_future(mount.startup())
        try:
            done, _ = await asyncio.wait({startup}, timeout=STARTUP_NOTICE)
            if not done:
                self.log.warning(
                    f"the app mounted at {mount.prefix or '/'} has not finished its lifespan "
                    f"startup after {STARTUP_NOTICE:.0f}s, and this worker serves once it "
                    "does; it waits on what the startup awaits (a database, a network call): "
                    "bound that with a timeout, and send lifespan.startup.failed if it passes"
                )
            return await startup
        except asyncio.CancelledError:
            startup.cancel()
            raise

    async def _finish_mounts(self, mounts: list[AsgiMount]) -> None:
        """Let what mounted apps do after their answers (Starlette's background tasks)
        finish, within the drain's shutdown_timeout; what is left then is cancelled."""
        running = {task for mount in mounts for task in mount.running}
        if not running:
            return
        deadline = self._drain_deadline or time.monotonic() + self.config.shutdown_timeout
        _, left = await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        if left:
            self.log.warning(
                "shutdown_timeout passed with mounted apps' work still running after their "
                "answers (background tasks); cancelling it",
                tasks=len(left),
            )
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=1.0)

    async def _shut_down_mounts(self, mounts: Iterable[AsgiMount]) -> None:
        """Run the lifespan shutdown of each of ``mounts``; what fails is logged."""
        for mount in mounts:
            failed = await mount.shutdown()
            if failed is not None:
                self.log.warning(
                    f"the app mounted at {mount.prefix or '/'} failed its lifespan shutdown",
                    error=failed,
                )

    def _mounts(self) -> list[AsgiMount]:
        return [s.handler for s in self.app.functions if isinstance(s.handler, AsgiMount)]

    async def _start_store(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open this worker's store connection if the app uses one: consume its queues,
        events and timers, let functions enqueue and publish, and read granted secrets."""
        from hibana.store import engine_for

        assert self.dispatcher is not None and self.front is not None
        app = self.app
        consumes = any(isinstance(s.trigger, QueueTrigger | TimerTrigger) for s in app.functions)
        granted = sorted({name for spec in app.functions for name in spec.secrets})
        if not (consumes or app.topics or granted):
            return
        store = Store(engine_for(self.config.store_url))
        store.open()
        self.store = store
        if granted:
            await self._load_secrets(store, granted)
        if consumes:
            self.consumer = QueueConsumer(
                app,
                store,
                self.dispatcher,
                self.sink,
                owner=f"{socket.gethostname()}:{os.getpid()}",
                log=self.log,
                sync_concurrency=self.threads,
            )
            self.consumer.secrets = self.front.secrets
        outbox = Outbox(
            store,
            app.queues,
            loop,
            self.consumer,
            subscriptions=[
                (spec.trigger.topic, spec.trigger.queue, spec.trigger.filter)
                for spec in app.functions
                if isinstance(spec.trigger, EventTrigger)
            ],
            topics=app.topics,
        )
        if self.consumer is not None:
            self.consumer.outbox = outbox
        self.front.outbox = self.outbox = outbox

    async def _load_secrets(self, store: Store, names: list[str]) -> None:
        """Decrypt the secrets the app's functions name; redact their values from logs."""
        from hibana.secrets import SecretError, Secrets, load_key, unseal

        key = load_key()
        sealed = await store.secrets(names)
        missing = [n for n in names if n not in sealed]
        if missing:
            raise SecretError(f"secret {missing[0]!r} is not set in {store.display}")
        values = {name: unseal(key, name, sealed[name]) for name in names}
        self.sink.redact(list(values.values()))
        assert self.front is not None
        for spec in self.app.functions:
            if spec.secrets:
                self.front.secrets[spec.name] = Secrets(
                    {n: values[n] for n in spec.secrets}, spec.name
                )

    def _settle_frozen(self, late: list[str]) -> None:
        """The queue messages of ``late`` (invocations past their deadline and grace, on a
        frozen loop) retried per their policy as timed out, before the worker exits: from
        the watchdog's thread, waiting for the store ``FROZEN_SETTLE`` seconds at most."""
        consumer, store = self.consumer, self.store
        if consumer is None or store is None:
            return
        settles = consumer.frozen(late)
        if settles:
            with contextlib.suppress(Exception):  # then their leases run out, as before
                asyncio.run(asyncio.wait_for(store.settle_many(settles), FROZEN_SETTLE))

    def _start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Exit if the event loop stops turning while an invocation is past its deadline
        and ``cancel_grace``.

        An async function that calls blocking code (``time.sleep``, a sync driver) freezes
        the whole worker: no deadline can fire and no response can be sent. The only cure is
        a new worker; the supervisor forks one when this one exits."""
        beat = [time.monotonic(), _BEAT]  # the loop's last beat, and the time to its next
        grace = self.config.cancel_grace

        def tick() -> None:
            # with no invocation running (nothing to watch for) the period is a second;
            # lines from other threads go out at the next beat, or while the period is
            # a second, on a flush they ask the loop for
            busy = self.dispatcher is None or bool(self.dispatcher.inflight)
            period = _BEAT if busy else _IDLE_BEAT
            beat[0], beat[1] = time.monotonic(), period
            self.sink.prompt = not busy
            self.sink.flush()
            loop.call_later(period, tick)

        def running() -> list[Invocation]:
            # Read from another thread while the loop is frozen; if it is not frozen after
            # all and the dict changes under us, the next round looks again.
            try:
                return list(self.dispatcher.inflight.values()) if self.dispatcher else []
            except RuntimeError:
                return []

        def overdue() -> list[str]:
            """Those past their deadline and grace that ran, if one is an async function's
            (what blocks the loop): a sync function runs on a thread of its own, or waits
            for one, and blocks no loop. Empty if no async function's is overdue."""
            now = time.monotonic()
            late = [inv for inv in running() if now > inv.deadline + grace]
            if not any(inv.function.is_async for inv in late):
                return []
            return [inv.id for inv in late if inv.function.is_async or inv.on_thread]

        def watched() -> None:
            # for the supervisor: a worker whose watchdog stops too (a function holding
            # the GIL in C code, a SIGSTOP) cannot replace itself; it is killed from
            # outside once an invocation's deadline and grace have passed meanwhile; not
            # one of a sync function waiting for a thread (it runs nothing, blocks nothing)
            if self.row is not None:
                invs = [i for i in running() if i.function.is_async or i.on_thread]
                self.row.set("overdue_at", min(i.deadline for i in invs) + grace if invs else 0)
                self.row.set("watched_at", time.monotonic())

        limit_mb = self.spawn.memory_limit_mb
        # opened once: at its open-files limit (a burst of connections) the worker can
        # open nothing more, and the watchdog must go on reading
        try:
            statm: int | None = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            statm = None  # no /proc: no memory readings

        def rss_mb() -> float | None:
            return None if statm is None else resident_mb(statm)

        def watch() -> None:
            next_reading = time.monotonic() + 1.0
            looked = resumed = time.monotonic()
            while True:
                time.sleep(beat[1])
                now = time.monotonic()
                if now - looked > beat[1] + _FROZEN:
                    # this thread overslept: the process was stopped (docker pause, Ctrl-Z,
                    # SIGSTOP) or starved, the loop with it; its stall counts from now
                    resumed = now
                looked = now
                watched()
                rss = None
                if time.monotonic() >= next_reading:
                    next_reading += 1.0
                    rss = rss_mb()
                if rss is not None:
                    if self.row is not None:
                        self.row.set("rss_mb", rss)
                    if limit_mb is not None and rss > limit_mb and not self._stopping:
                        self.log.warning(
                            "worker memory is over memory_limit_mb; replacing it once its "
                            "work is done",
                            rss_mb=round(rss, 1),
                            memory_limit_mb=limit_mb,
                        )
                        loop.call_soon_threadsafe(self.retire)
                stalled = time.monotonic() - max(beat[0], resumed)
                if stalled > beat[1] + 0.4 and (late := overdue()):
                    self.log.error(
                        "event loop blocked; an async function is calling blocking code; "
                        "replacing this worker",
                        blocked_s=round(stalled, 3),
                        invocations=late,
                    )
                    self._settle_frozen(late)
                    self.sink.flush()
                    os._exit(70)

        tick()
        watched()  # from here, before it serves: a stall from its first request on is seen
        threading.Thread(target=watch, name="hibana-watchdog", daemon=True).start()

    def _stop_serving(self, grace: float) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(grace)

    def _on_sigterm(self) -> None:
        # Once is enough: a service manager that signals every process of the host (as
        # systemd does by default) and the supervisor that passes the signal on both ask
        # for the same drain. Forcing an end is the supervisor's (it kills the workers).
        if self._draining:
            return
        self._draining = self._stopping = True
        if self._starting is not None:
            # not serving yet (a mounted app's lifespan still starting): nothing to drain,
            # and no reason to wait for it to start
            self._starting.cancel()
            return
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.front is not None and self.dispatcher is not None
        self.front.draining = True
        if self.consumer is not None:
            await self.consumer.stop()  # claim nothing new; what is held finishes or goes back
        self.dispatcher.cancel_all()
        self.front.cancel_streams()
        deadline = self._drain_deadline = time.monotonic() + self.config.shutdown_timeout
        while (self.dispatcher.inflight or self.front.streaming) and (  # noqa: ASYNC110
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        if self.dispatcher.inflight:
            self.log.warning(
                "shutdown_timeout passed with invocations still running; abandoning them",
                invocations=list(self.dispatcher.inflight),
            )
            # Their clients get 503 + Retry-After now; the functions die with the process,
            # and what they send from now on is refused, each send saying so
            self.dispatcher.abandon_all()
            self._close_outbox()
            await asyncio.sleep(0.05)
        if self.consumer is not None:
            # the settlements of its queue deliveries are waited for until the deadline
            # (a second more for the releases of what it abandoned): a retiring worker's
            # may be under way already
            self.consumer.drain_by(max(deadline, time.monotonic() + LAST_WRITES))
        if self.front.streaming:
            # streams still going are cut short now, not once the write grace is over too
            assert self.server is not None
            for inv in list(self.front.streaming.values()):
                self.server.cut(inv.cancellation)
        if self._stop is not None and self._stop.done():
            # it was retiring (a reload, scale-in), with a longer grace: shutdown's counts
            await asyncio.sleep(_WRITE_GRACE)
            assert self.server is not None
            self.server.abort()
        else:
            self._stop_serving(_WRITE_GRACE)

    def _close_outbox(self) -> None:
        if self.outbox is not None:
            self.outbox.close()

    def retire(self) -> None:
        """Stop accepting, finish what is in flight, exit: no 503s (scale-in, replacement,
        a reload). Each in-flight request is answered by its function's deadline at the
        latest; a streaming response is told that the worker stops (``ctx.cancelled``), so
        one that watches it ends whole and its client reconnects to a worker that stays."""
        self._stopping = True
        if self.front is not None:
            self.front.cancel_streams()
        longest = max((spec.timeout for spec in self.app.functions), default=0.0)
        if any(spec.max_concurrency is not None for spec in self.app.functions):
            # a request waiting for a permit runs its timeout once it has one (its
            # deadline moves on by the wait): it may wait all of concurrency_wait first
            longest += self.config.concurrency_wait
        grace = longest + self.config.cancel_grace + _WRITE_GRACE
        if self._stop is not None and not self._stop.done():
            self._retire_deadline = time.monotonic() + grace
        self._stop_serving(grace)

    def _on_stuck(self, inv: Invocation) -> None:
        # the invocation's own fields, as its lines carry them (a call's would be renamed)
        own = {**self.log.fields, "invocation_id": inv.id, "function": inv.function.name}
        Logger(self.sink, own).error(
            "function did not return after its timeout and cancellation; replacing this worker",
            cancel_grace_s=self.config.cancel_grace,
        )
        if self.server is not None:
            self.server.answer_stuck(inv.cancellation, inv.id, timed_out(inv.function))
        self.retire()


def preload() -> None:
    """Import what a worker imports lazily, so a worker forked after this starts without
    paying for it."""
    with contextlib.suppress(ImportError):  # uvloop is a dependency on Linux
        import uvloop  # noqa: F401


def run_worker(
    app: App,
    listener: socket.socket,
    config: HostConfig,
    spawn: Spawn,
    board: Board | None,
    handoff: int | None = None,
    permits: PermitTable | None = None,
) -> NoReturn:
    """Entry point in a freshly forked child of the zygote."""
    row = None
    if permits is not None and spawn.permit_row >= 0:
        row = permits.row(spawn.permit_row, spawn.permit_columns)
    Worker(app, listener, config, spawn, board, handoff, row).run()


def main(argv: list[str]) -> NoReturn:
    """``python -m hibana.host.worker ...``: a worker in a fresh interpreter (prewarm="none")."""
    config = HostConfig.from_json(argv[1])
    spawn = Spawn(**json.loads(argv[2]))
    listener = socket.socket(fileno=int(argv[3]))
    board = Board(int(argv[4]), Layout(**json.loads(argv[5])))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the zygote ignores it; exec kept that
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    die_with_parent(int(argv[6]))
    with import_logging(config.log_fd, config.log_level, {"worker": spawn.slot}):
        app = load_app(config.app_dir)
    run_worker(app, listener, config, spawn, board, int(argv[7]), PermitTable(int(argv[8])))


if __name__ == "__main__":
    main(sys.argv)
