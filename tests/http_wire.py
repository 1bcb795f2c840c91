"""Raw HTTP/1.1 for the tests of the worker's HTTP server: a socket to a real host that
sends bytes and reads whole responses with the standard library's ``http.client`` parser
(``Connection``); and a server whose connections are fed in-process
(``in_process_server``), each writing to a ``Transport``."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import IO, Any

from hibana.host.http_connection import HttpProtocol
from hibana.host.http_server import HttpServer
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from tests.hosts import Host


class _Reader:
    """The connection's one buffered reader, which a response's ``close`` leaves open."""

    def __init__(self, reader: IO[bytes]) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def close(self) -> None:
        pass


class _Stream:
    """What ``http.client.HTTPResponse`` wants of a socket: one buffered reader, shared by
    every response read from the connection (so pipelined answers are not lost)."""

    def __init__(self, reader: IO[bytes]) -> None:
        self.reader = _Reader(reader)

    def makefile(self, mode: str) -> _Reader:
        return self.reader


class Connection:
    """A raw connection: send bytes, read whole responses."""

    def __init__(self, host: Host) -> None:
        addr, port = host.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((addr, int(port)), timeout=10)
        self.file = self.sock.makefile("rb")
        self.stream = _Stream(self.file)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> http.client.HTTPResponse:
        resp = http.client.HTTPResponse(self.stream, method=method)  # type: ignore[arg-type]
        resp.begin()
        return resp

    def hello(self, name: str) -> http.client.HTTPResponse:
        """GET /hello/NAME on this connection, checked: 200 and ``Hello NAME``."""
        self.send(b"GET /hello/%s HTTP/1.1\r\nHost: x\r\n\r\n" % name.encode())
        resp = self.response()
        assert (resp.status, resp.read()) == (200, b"Hello " + name.encode())
        return resp

    def closed_by_server(self) -> bool:
        """True if the server has closed its side (reads give EOF)."""
        rest: bytes = self.stream.reader.read(1)
        return rest == b""

    def close(self) -> None:
        self.file.close()  # else the socket stays open as long as its reader does
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Transport(asyncio.Transport):
    """What a protocol fed in-process writes to: the bytes kept, and whether it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5), "sockname": ("127.0.0.1", 7)}.get(name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class InProcess:
    """An ``HttpServer`` whose connections are fed in-process, on the running loop."""

    def __init__(self, server: HttpServer, read_end: int, write_end: int) -> None:
        self.server = server
        self.read_end = read_end
        self.write_end = write_end

    def connect(self) -> tuple[HttpProtocol, Transport]:
        """A new connection to the server, and the transport it writes to."""
        protocol = HttpProtocol(self.server, asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        return protocol, transport

    async def settle(self) -> None:
        """Turns of the loop enough for the tasks of the answers due to run."""
        for _ in range(20):
            await asyncio.sleep(0)

    def logged(self) -> list[dict[str, Any]]:
        """The server's log lines so far (once its loop has ended); it logs no more."""
        os.close(self.write_end)
        self.write_end = -1
        with os.fdopen(os.dup(self.read_end), "rb") as lines:
            return [json.loads(line) for line in lines]


@contextlib.contextmanager
def in_process_server(front: object, max_body_bytes: int = 1000) -> Iterator[InProcess]:
    """A server for ``HttpProtocol``s fed in-process: ``front`` answers (a stand-in with
    the front's ``table``, ``handle`` and ``draining``), its log lines go to a pipe."""
    read_end, write_end = os.pipe()
    served = InProcess(
        HttpServer(
            front,  # type: ignore[arg-type]
            Logger(LogSink(write_end), {}),
            max_body_bytes=max_body_bytes,
            max_header_bytes=4096,
            header_timeout=5,
            body_timeout=5,
            keep_alive_timeout=5,
        ),
        read_end,
        write_end,
    )
    try:
        yield served
    finally:
        if served.write_end != -1:
            os.close(served.write_end)
        os.close(read_end)
