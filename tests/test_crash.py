"""The crash test: 10,000 messages enqueued over HTTP while every process of the host is
killed with SIGKILL at random moments and restarted. Whatever the host acknowledged
(a 202) must be processed; a client that got no answer retries with the same
idempotency keys, so nothing is enqueued twice either."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from hibana.store import open_store
from tests.hosts import Host, children, copy_app
from tests.test_queues import run, wait_until

ITEMS = 10_000
BATCH = 100
KILLS = 4


def kill_everything(host: Host) -> None:
    zygotes = children(host.proc.pid)
    pids = [host.proc.pid, *zygotes, *host.worker_pids()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    host.wait_exit()


def test_nothing_acknowledged_is_lost_across_kill_9(tmp_path: Path) -> None:
    app_dir = copy_app("crash", tmp_path)
    url: list[str] = [""]
    acked: list[int] = []
    failures: Counter[str] = Counter()
    batches = [list(range(i, min(i + BATCH, ITEMS))) for i in range(0, ITEMS, BATCH)]
    todo = list(reversed(batches))
    lock = threading.Lock()
    deadline = time.monotonic() + 50

    def send() -> None:
        with httpx.Client(timeout=5) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    batch = todo.pop()
                while time.monotonic() < deadline:  # until acknowledged; same keys each time
                    try:
                        r = client.post(url[0] + "/work", json={"items": batch})
                    except httpx.HTTPError as exc:
                        failures[type(exc).__name__] += 1
                        time.sleep(0.05)
                        continue
                    if r.status_code == 202:
                        with lock:
                            acked.extend(batch)
                        break
                    failures[str(r.status_code)] += 1
                    time.sleep(0.05)

    def start() -> Host:
        host = Host(app_dir, "--workers", "2", "--log-level", "warning")
        host.wait_ready()
        url[0] = host.url
        return host

    host = start()
    senders = [threading.Thread(target=send) for _ in range(4)]
    for t in senders:
        t.start()
    seed = int(os.environ.get("HIBANA_CRASH_SEED", time.time()))  # printed on failure
    rng = random.Random(seed)
    acked_at_kill: list[int] = []
    # kill at random points of the enqueueing, so acknowledged batches, batches in
    # flight and messages being processed are all cut short somewhere
    for threshold in sorted(rng.uniform(0.05, 0.9) * ITEMS for _ in range(KILLS)):
        while len(acked) < threshold and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        acked_at_kill.append(len(acked))
        kill_everything(host)
        time.sleep(rng.uniform(0.0, 0.3))
        host = start()
    try:
        for t in senders:
            t.join(timeout=max(1.0, deadline - time.monotonic()))
        assert len(acked) == ITEMS, f"seed {seed}: {len(acked)} acknowledged; failures {failures}"
        # the kills hit while messages were still arriving, not only after
        assert sum(n < ITEMS for n in acked_at_kill) >= 2, (seed, acked_at_kill)
        store = open_store(None, app_dir)
        try:

            def settled() -> bool:
                (q,) = [s for s in run(store.stats()) if s.queue == "work"]
                return bool(q.ready == q.delayed == q.in_flight == 0)

            wait_until(settled, timeout=40, what="every message settled")
            (q,) = [s for s in run(store.stats()) if s.queue == "work"]
        finally:
            store.close()
    finally:
        host.stop()
    processed = Counter(int(x) for x in (app_dir / "processed.log").read_text().split())
    missing = set(range(ITEMS)) - set(processed)
    assert not missing, (
        f"seed {seed}: {len(missing)} acknowledged items never processed: {sorted(missing)[:5]}"
    )
    assert q.dead == 0
    # at least once: kills make some run twice; say how many, for whoever reads the log
    print(
        f"seed {seed}: kills {KILLS} with {acked_at_kill} acknowledged, "
        f"client retries {dict(failures)}, "
        f"processed twice or more: {sum(1 for c in processed.values() if c > 1)}"
    )
