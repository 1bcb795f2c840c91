"""The worker's HTTP/1.1 server: ``HttpServer`` serves the front on the listening socket,
one ``HttpProtocol`` a connection (see ``http_connection.py``), and lets them finish on
shutdown."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hibana.host.handoff import Handoff
from hibana.host.http_connection import HttpProtocol
from hibana.host.http_refusals import error_response
from hibana.host.open_files import limit as open_file_limit
from hibana.telemetry.logs import Logger
from hibana.triggers.http import HttpFront


class HttpServer:
    """Serves the front on a listening socket; ``shutdown`` lets connections finish."""

    def __init__(
        self,
        front: HttpFront,
        log: Logger,
        *,
        max_body_bytes: int,
        max_header_bytes: int,
        header_timeout: float,
        body_timeout: float,
        keep_alive_timeout: float,
        min_body_rate: int = 0,
        handoff: Handoff | None = None,
        crowded: int = 1 << 62,
    ) -> None:
        """``crowded``: the connections at which this worker nears its limit on open
        files (see ``host.open_files``); it says so in a log line."""
        self.front = front
        self.log = log
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.keep_alive_timeout = keep_alive_timeout
        self.handoff = handoff
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.AbstractServer | None = None
        self.crowded = crowded
        #: Said that the connections near the limit; said again once they have fallen
        #: to ``uncrowded`` and risen back.
        self.crowding = False
        self.uncrowded = crowded * 3 // 4

    def warn_crowded(self) -> None:
        self.crowding = True
        self.log.warning(
            "this worker's connections near its limit on open files; past it, new ones "
            "are closed unanswered: raise the limit (`ulimit -n`, LimitNOFILE= in a "
            "systemd unit) or run more workers",
            connections=len(self.connections),
            open_file_limit=open_file_limit(),
        )

    async def start(self, listener: Any) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self, loop), sock=listener, backlog=2048
        )

    def stop_accepting(self) -> None:
        """Accept no more connections; close idle ones now and busy ones once their
        requests are answered (each answer says ``Connection: close``)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()

    async def shutdown(self, grace: float) -> None:
        """``stop_accepting``, then wait up to ``grace`` seconds for the busy connections
        to close; then close whatever is left."""
        self.stop_accepting()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        self.abort()

    def answer_stuck(self, cancellation: object, invocation_id: str, message: str) -> None:
        """Answer 504 for an invocation whose function ignores its deadline and its
        cancellation (an async one that swallows ``CancelledError``): its client is told
        now, not whenever the function returns; the connection closes."""
        for conn in self.connections:
            req = conn.active
            if req is None or conn.started or conn.lost:
                continue
            if req.scope.get("hibana.cancellation") is cancellation:
                conn.started = True  # the function's answer, if it ever comes, is not sent
                req.keep_alive = False  # nor an answer to a request pipelined behind it
                conn.transport.write(error_response(504, message, invocation_id, req.head))
                conn.transport.close()

    def cut(self, cancellation: object) -> None:
        """Close now the connection of the invocation whose cancellation this is (a
        response still streaming when the shutdown timeout is over): it is cut short."""
        for conn in list(self.connections):
            req = conn.active
            if req is not None and req.scope.get("hibana.cancellation") is cancellation:
                conn.abort()

    def abort(self) -> None:
        """Close every connection now (a second signal, or the grace period is over)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
