"""The reload: moving from the version of the app that serves to a fresh import of it
without a dropped request, and back to the old one if the new one does not start; and
seeing the versions it retired off once their last worker has exited.

It is a sequence of steps the supervisor takes (import, adopt, start workers, retire the
old ones), so it asks the supervisor for each step through ``ReloadingHost``: that list
is what a reload needs of the host, and nothing else of the supervisor's state is used.
"""

from __future__ import annotations

import contextlib
import selectors
import signal
import time
from collections.abc import Callable
from typing import Protocol

from hibana.errors import AppLoadError
from hibana.host.banner import reloaded
from hibana.host.config import HostStartError
from hibana.host.scaling import Scaler
from hibana.host.worker_records import WorkerRecord, signal_worker
from hibana.host.zygote_handle import IMPORT_TIMEOUT, REPLACE_RETRY, Zygote, exit_reason

#: How long a reload waits for the old version's workers to stop accepting connections.
RETIRE_ACK_TIMEOUT = 5.0


class ReloadingHost(Protocol):
    """What a reload asks of the supervisor."""

    #: Workers asked for or running, of every version.
    records: list[WorkerRecord]
    #: The versions that no longer serve, whose workers finish what they hold.
    retired: list[Zygote]
    #: The version that serves, and its scaler.
    zygote: Zygote | None
    scaler: Scaler | None
    report: Callable[[str], None]

    @property
    def sel(self) -> selectors.BaseSelector: ...
    @property
    def shutting_down(self) -> bool: ...
    @property
    def url(self) -> str: ...
    def start_zygote(self) -> Zygote | None: ...
    def check_secrets(self, zygote: Zygote) -> None: ...
    def adopt(self, zygote: Zygote) -> None: ...
    def restart_duties(self, zygote: Zygote) -> None: ...
    def tick(self) -> None: ...
    def spawn_more(self, zygote: Zygote, total: int, on_demand: bool) -> None: ...
    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool: ...
    def enforce_limits(self, zygote: Zygote) -> None: ...


def swap(host: ReloadingHost, old: Zygote) -> str | None:
    """Move from ``old`` to a fresh import of the app: None once it serves, else why not
    (and ``old`` serves on)."""
    try:
        return _swap_to_fresh(host, old)
    finally:
        serving = host.zygote
        if serving is not None and serving.dead and not host.shutting_down:
            # the version that served died while the new one imported, and the new one
            # did not take over: start one again (one import at a time: only now)
            replace_zygote(host)


def _swap_to_fresh(host: ReloadingHost, old: Zygote) -> str | None:
    try:
        fresh = host.start_zygote()
    except AppLoadError as exc:
        return _kept(host, str(exc))
    if fresh is None:
        return "the host is shutting down"
    try:
        host.check_secrets(fresh)
    except HostStartError as exc:
        host.sel.unregister(fresh.channel.sock)
        fresh.stop()
        return _kept(host, str(exc))
    running = sum(1 for r in host.records if r.zygote is old and not r.retiring)
    host.adopt(fresh)
    host.restart_duties(fresh)
    host.tick()
    assert fresh.scaling is not None
    host.spawn_more(fresh, min(max(1, running), fresh.scaling.max_instances), False)
    failed = await_ready(host, fresh)
    if failed is not None:
        _roll_back(host, old, fresh)
        return _kept(host, failed) if not host.shutting_down else failed
    host.enforce_limits(fresh)  # the old version's waiters too are let in under them
    host.report(reloaded(fresh, old, host.url))
    host.retired.append(old)
    finishing = 0
    for r in host.records:
        if r.zygote is old and r.pid is not None:
            # retire, not shut down: the old version finishes its requests and
            # stops accepting; new ones go to the new workers, never a 503
            r.retiring = True
            finishing += 1
            signal_worker(r.pid, signal.SIGUSR1)
    host.wait_until(lambda: _accepts_no_more(host.records, old), RETIRE_ACK_TIMEOUT)
    host.report(
        f"Reloaded: generation {fresh.generation} of the app serves; "
        f"{finishing} worker(s) of generation {old.generation} finish their work and exit"
    )
    reap_retired(host)
    return None


def _kept(host: ReloadingHost, why: str) -> str:
    """Say that the reload failed, ``why``, and what serves now; returns what the caller
    of the reload is told."""
    previous = host.zygote
    if previous is None or not previous.dead:
        host.report(f"error: {why}\nStill serving the previous version of the app.")
        return why
    # it died before the reload or during its import: it is started again (``swap``)
    lost = (
        "the previous version does not serve either: its zygote had died, and it is "
        "started again from the app's files as they are now"
    )
    host.report(f"error: {why}\n{lost[0].upper()}{lost[1:]}.")
    return f"{why}\n({lost})"


def await_ready(host: ReloadingHost, fresh: Zygote, whose: str = "the new version") -> str | None:
    """Wait until every worker asked of ``fresh`` serves: None, or why that failed."""
    board = fresh.board
    assert board is not None

    def settled() -> bool:
        return fresh.last_crash != 0 or all(
            r.pid is not None and board.get(r.slot, "ready_at")
            for r in host.records
            if r.zygote is fresh
        )

    if not host.wait_until(settled, IMPORT_TIMEOUT):
        if host.shutting_down:
            return "the host is shutting down"
        return f"{whose}'s workers did not start within {IMPORT_TIMEOUT:g}s"
    if fresh.last_crash:
        return (
            f"a worker of {whose} exited with code {fresh.last_crash} as it started "
            f"({exit_reason(fresh.last_crash)})"
        )
    return None


def _roll_back(host: ReloadingHost, old: Zygote, fresh: Zygote) -> None:
    """Go back to serving ``old``: ``fresh``'s workers that started finish what they
    took and exit."""
    host.records = [r for r in host.records if r.zygote is not fresh or r.pid is not None]
    for r in host.records:
        if r.zygote is fresh:
            r.retiring = True
            signal_worker(r.pid, signal.SIGUSR1)  # type: ignore[arg-type]
    host.retired.append(fresh)
    host.zygote = old
    assert old.scaling is not None
    host.scaler = Scaler(old.scaling)
    host.restart_duties(old)
    reap_retired(host)


def _accepts_no_more(records: list[WorkerRecord], zygote: Zygote) -> bool:
    """Every worker of ``zygote`` has stopped accepting connections, or exited."""
    board = zygote.board
    return board is None or all(
        board.get(r.slot, "stopped_at") for r in records if r.zygote is zygote and r.pid is not None
    )


def replace_zygote(host: ReloadingHost) -> None:
    """Start the serving version's zygote again (it died): a fresh import of the app. If
    that fails, the dead one stays (``Zygote.unreplaced``), and is tried again later."""
    dead = host.zygote
    try:
        fresh = host.start_zygote()
        if fresh is not None:
            # the app's files as they are now: checked as a reload checks them
            try:
                host.check_secrets(fresh)
            except HostStartError:
                host.sel.unregister(fresh.channel.sock)
                fresh.stop()
                raise
    except (AppLoadError, HostStartError) as exc:
        fails = "import" if isinstance(exc, AppLoadError) else "start"
        host.report(
            f"error: {exc}\nThe app's zygote died, and the app does not {fails} again: "
            f"requests get 503 until it does (tried again every {REPLACE_RETRY:g}s, or at "
            "`hibana reload`)"
        )
        if dead is not None:
            dead.unreplaced = f"the app's zygote died, and the app does not {fails} again: {exc}"
            dead.replace_at = time.monotonic() + REPLACE_RETRY
        return
    if fresh is not None:
        host.adopt(fresh)
        host.enforce_limits(fresh)
        host.restart_duties(fresh)  # its timers and queues, which may have changed too


def reap_retired(host: ReloadingHost) -> None:
    """Stop each retired version whose workers have all exited."""
    for old in list(host.retired):
        if not any(r.zygote is old for r in host.records):
            host.retired.remove(old)
            with contextlib.suppress(KeyError):  # one that died is unregistered already
                host.sel.unregister(old.channel.sock)
            host.report(f"Generation {old.generation} of the app has exited")
            old.stop()
