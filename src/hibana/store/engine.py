"""The engine: a connection and the SQL for one database, run by the ``Store``'s writer
thread (see ``store.base``, which every caller imports these from). ``store.sql`` holds
what SQLite and PostgreSQL share; each engine module adds its own dialect."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hibana.store.base import (
        DeadLetter,
        Delivery,
        Enqueued,
        NewMessage,
        QueueInfo,
        QueueStats,
        Settle,
        SubscriptionInfo,
    )


class ChangeWatcher:
    """A file descriptor that becomes readable when messages may have been enqueued by
    anyone (another process, another host): idle consumers wake at once instead of at
    their next poll. ``drain`` is called when it is readable."""

    def fileno(self) -> int:
        raise NotImplementedError

    def drain(self) -> bool:
        """Consume what made it readable; False when it is broken for good (the caller
        stops watching and polls)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


#: Seconds an engine's wait on another process goes on before ``Engine.on_wait`` is told.
WAIT_NOTICE = 1.0


class Engine:
    """A connection and the SQL for one database. Only the writer thread calls it."""

    def watcher(self) -> ChangeWatcher | None:
        """A ``ChangeWatcher`` for this database, on its own connection or file
        descriptor (used from an event loop, not the writer thread); None: poll."""
        return None

    #: Shown in errors and ``hibana queue`` output, with no password.
    display: str
    #: Told (once, a sentence) when an operation has waited a while (``WAIT_NOTICE``) on
    #: another process, and waits on: the CLI says so, rather than seem to hang. None: no
    #: one is told.
    on_wait: Callable[[str], None] | None = None
    _told = False

    @contextlib.contextmanager
    def noticed(self, said: Callable[[], str]) -> Iterator[None]:
        """Tell ``on_wait`` ``said()`` if the block (a wait for a lock, for a server to
        answer: nothing else in it takes long) goes on past ``WAIT_NOTICE``; once for the
        engine, however many waits follow."""
        if self.on_wait is None or self._told:
            yield
            return
        timer = threading.Timer(WAIT_NOTICE, self._tell, (said,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _tell(self, said: Callable[[], str]) -> None:
        if self.on_wait is not None and not self._told:
            self._told = True
            self.on_wait(said())

    def connect(self) -> None:
        raise NotImplementedError

    def lost_connection(self, exc: BaseException) -> bool:
        """``exc`` means the connection dropped (the server restarted, a proxy cut it):
        the transaction did not happen here, and is worth one retry on a new one."""
        return False

    def connection_failed(self, exc: BaseException) -> bool:
        """``exc`` is the connection's failure, not one operation's (it cannot be made, it
        was cut, it went during a COMMIT): every operation of the batch gets it. Run one by
        one they would only wait on it again, or run twice what may have committed."""
        return False

    def in_doubt(self, exc: BaseException) -> bool:
        """``exc``, a ``connection_failed`` one, came as the transaction was committing:
        it may have happened."""
        return False

    def close(self) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self, write: bool) -> Iterator[float]:
        """Run the body in one transaction; yields the engine's clock (``now``)."""
        raise NotImplementedError
        yield 0.0

    # Each operation below runs inside ``transaction`` and is given its ``now``.
    def declare(self, now: float, queues: Sequence[QueueInfo]) -> None:
        raise NotImplementedError

    def declared(self, now: float) -> list[QueueInfo]:
        raise NotImplementedError

    def enqueue(self, now: float, items: Sequence[NewMessage]) -> list[Enqueued]:
        raise NotImplementedError

    def claim(
        self,
        now: float,
        queue: str,
        owner: str,
        limit: int,
        lease: float,
        group: tuple[str, int] | None,
    ) -> list[Delivery]:
        raise NotImplementedError

    def settle(self, now: float, items: Sequence[Settle]) -> None:
        raise NotImplementedError

    def ready(self, now: float, queues: Sequence[str]) -> int:
        raise NotImplementedError

    def next_visible(self, now: float, queues: Sequence[str]) -> float | None:
        raise NotImplementedError

    def stats(self, now: float) -> list[QueueStats]:
        raise NotImplementedError

    def dead_letters(self, now: float, queue: str, limit: int) -> list[DeadLetter]:
        raise NotImplementedError

    def redrive(self, now: float, queue: str, ids: Sequence[int] | None) -> int:
        raise NotImplementedError

    def fire_timer(
        self, now: float, function: str, slot: float, message: NewMessage, replacing: bytes
    ) -> bool:
        raise NotImplementedError

    def startup_run(self, now: float, message: NewMessage) -> bool:
        raise NotImplementedError

    def last_fire(self, now: float, function: str) -> float | None:
        raise NotImplementedError

    def purge(self, now: float) -> int:
        raise NotImplementedError

    def subscribe(self, now: float, subscriptions: Sequence[SubscriptionInfo]) -> None:
        raise NotImplementedError

    def subscriptions(self, now: float) -> list[SubscriptionInfo]:
        raise NotImplementedError

    def publish(
        self, now: float, topic: str, key: str, ttl: float, messages: Sequence[NewMessage]
    ) -> bool:
        raise NotImplementedError

    def put_secret(self, now: float, name: str, value: bytes) -> None:
        raise NotImplementedError

    def secrets(self, now: float, names: Sequence[str] | None) -> dict[str, bytes]:
        raise NotImplementedError

    def delete_secret(self, now: float, name: str) -> bool:
        raise NotImplementedError
