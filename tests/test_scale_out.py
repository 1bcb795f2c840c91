"""Several hosts on one PostgreSQL store: they share queues and timers, and a message is
never processed by two of them at once, nor lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from hibana.store import NewMessage, open_store
from tests.hosts import copy_app, started
from tests.test_queues import records, run, wait_until
from tests.test_timers import fired


def test_two_hosts_share_a_queue_with_nothing_processed_twice_or_lost(
    tmp_path: Path, pg_store_url: str
) -> None:
    one, two = copy_app("queues", tmp_path / "one"), copy_app("queues", tmp_path / "two")
    store = open_store(pg_store_url)
    try:
        for _host_a in started(one, "--workers", "1", "--store", pg_store_url):
            for host_b in started(two, "--workers", "1", "--store", pg_store_url):
                assert f"Store: {pg_store_url}" in "\n".join(host_b.stderr_lines)
                sent = run(
                    store.enqueue_many(
                        [NewMessage("orders", json.dumps({"sleep": 0.02}).encode())] * 300
                    )
                )

                def done() -> bool:
                    return len(records(one, "order")) + len(records(two, "order")) >= 300

                wait_until(done, timeout=60, what="300 messages processed")
        (stats,) = [s for s in run(store.stats()) if s.queue == "orders"]
    finally:
        store.close()
    processed = Counter(r["id"] for r in records(one, "order") + records(two, "order"))
    assert set(processed) == {s.id for s in sent}
    assert max(processed.values()) == 1
    assert records(one, "order") and records(two, "order"), "both hosts took a share"
    assert (stats.ready, stats.in_flight, stats.dead) == (0, 0, 0)


def test_two_hosts_fire_each_timer_slot_once(tmp_path: Path, pg_store_url: str) -> None:
    one, two = copy_app("timers", tmp_path / "one"), copy_app("timers", tmp_path / "two")
    for _a in started(one, "--workers", "1", "--store", pg_store_url):
        for _b in started(two, "--workers", "1", "--store", pg_store_url):
            wait_until(
                lambda: len(fired(one, "tick")) + len(fired(two, "tick")) >= 4,
                timeout=20,
                what="4 ticks",
            )
    slots = [t["slot"] for t in fired(one, "tick") + fired(two, "tick")]
    assert len(slots) == len(set(slots)), sorted(slots)
    broken = [t["slot"] for t in fired(one, "broken") + fired(two, "broken")]
    assert len(broken) == len(set(broken))
