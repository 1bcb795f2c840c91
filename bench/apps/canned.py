"""A server that parses nothing: it answers each request's end of head with the same bytes.

For bench/http.py, as the most a Python server reaches on this machine under the same
load: uvloop, the same worker count, no HTTP parsing, no ASGI, no function. Whatever it
does not reach is the load generator's share of the cores (wrk runs on the same machine),
not any server's. It serves GET requests without bodies only, which is all wrk sends.

Run: python bench/apps/canned.py PORT WORKERS
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import uvloop

ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 11\r\n\r\nHello world"
)
END = b"\r\n\r\n"


class Canned(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        heads = data.count(END)
        # what follows the last end of head is the start of the next request
        self.tail = data[data.rfind(END) + len(END) :] if heads else data
        if heads and self.transport is not None:
            self.transport.write(ANSWER * heads)
            if b"Connection: close" in data:  # bench/http.py's first check asks for it
                self.transport.close()


async def serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Canned, sock=sock)
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    server.close()


def main(port: int, workers: int) -> None:
    sock = socket.create_server(("127.0.0.1", port), backlog=1024)
    sock.setblocking(False)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            uvloop.run(serve(sock))
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: object) -> None:
        for pid in children:
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
