"""The host's store thread: it tells the supervisor that messages wait with a byte on
a socket, and the supervisor reads ``pending`` as it wakes."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from hibana.host.store_duties import StoreDuties
from hibana.store import NewMessage, open_store

FUNCTIONS = [{"kind": "queue", "name": "job", "queue": "jobs", "max_attempts": 3}]


class Wake(socket.socket):
    """The supervisor's end of the wake-up: what it would read of ``pending`` the moment
    the byte arrives."""

    duties: StoreDuties | None = None
    seen: list[bool]

    def send(self, data: bytes, flags: int = 0, /) -> int:  # type: ignore[override]
        assert self.duties is not None
        self.seen.append(self.duties.pending)
        return super().send(data, flags)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_when_the_supervisor_is_woken_for_messages_it_finds_them_pending(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    """It read False, and with no worker running slept its idle tick (1 s) before
    starting one: a concurrency group's message, visible again when a killed worker's
    lease ran out, waited a second more on PostgreSQL (now and then on SQLite)."""
    url = request.getfixturevalue("pg_store_url") if engine == "postgres" else None
    store = open_store(url, tmp_path)
    ours, theirs = socket.socketpair()
    wake = Wake(fileno=ours.detach())
    wake.seen = []
    try:
        asyncio.run(store.enqueue(NewMessage("jobs", b"{}")))
        duties = StoreDuties(store, FUNCTIONS, wake, lambda line: None)
        wake.duties = duties
        duties.start()
        theirs.settimeout(30)
        assert theirs.recv(1) == b"q"
        duties.stop()
        assert wake.seen == [True]
    finally:
        store.close()
        wake.close()
        theirs.close()
