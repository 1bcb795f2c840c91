"""The Procrastinate worker app of the queue benchmark (bench/queue_peers.py): one no-op task.

Run by queue_peers with this folder as the working directory and the database to use in
BENCH_PROCRASTINATE_DSN.
"""

from __future__ import annotations

import os

from bench.apps import queue_probe
from procrastinate import App, PsycopgConnector

# No default: a worker must never run against a database the benchmark did not make.
DSN = os.environ["BENCH_PROCRASTINATE_DSN"]
# queue_peers sizes the pool so that no connection is waited for: the worker's fetch loop,
# heartbeat and abort polling each take one, and so does each running job's status update.
POOL_SIZE = int(os.environ.get("BENCH_PROCRASTINATE_POOL", "4"))

app = App(connector=PsycopgConnector(conninfo=DSN, min_size=POOL_SIZE, max_size=POOL_SIZE))


# async: Procrastinate runs a sync task in a thread, which only adds a hop to a no-op.
@app.task(name="bench.noop")
async def noop(sent: float, phase: int) -> None:
    queue_probe.record(sent, phase)
