"""The Celery worker app of the queue benchmark (bench/queue_peers.py): one no-op task.

Run by queue_peers with this folder as the working directory; its settings come from the
environment so that the benchmark's client and its workers agree on them.
"""

from __future__ import annotations

import os

from bench.apps import queue_probe
from celery import Celery

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "hibana_bench")
# Every key kombu makes starts with this, so the benchmark can remove exactly its own keys.
KEY_PREFIX = os.environ.get("BENCH_CELERY_KEY_PREFIX", "hibana_bench:")

app = Celery("hibana_bench", broker=BROKER)
app.conf.update(
    broker_transport_options={
        "global_keyprefix": KEY_PREFIX,
        # A broker that goes away must fail the run, not hang it.
        "socket_timeout": 10.0,
        "socket_connect_timeout": 5.0,
    },
    broker_connection_retry_on_startup=False,
    task_default_queue=QUEUE,
    task_ignore_result=True,
    # Nothing asks the workers anything: no pidbox keys or fanout traffic.
    worker_enable_remote_control=False,
)


@app.task(name="bench.noop")
def noop(sent: float, phase: int) -> None:
    queue_probe.record(sent, phase)
