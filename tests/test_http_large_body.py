"""A function's large whole body is sent as it is, not copied beside its head: a worker
that answered 100 MB held 200 MB more while it sent it (the body, and the body joined to
the head for one write), twice what the function itself had made."""

from __future__ import annotations

from tests.hosts import started


def _high_water_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_a_100_mb_body_costs_its_worker_the_body_once() -> None:
    gen = started("basic", "--workers", "1")
    host = next(gen)
    try:
        (worker,) = host.worker_pids()
        with host.client(timeout=120) as client:
            assert client.get("/hello/warm").text == "Hello warm"
            before = _high_water_mib(worker)
            answer = client.get("/large/100")
            assert answer.status_code == 200
            assert answer.content == b"x" * (100 << 20)
            assert answer.headers["content-length"] == str(100 << 20)
        grown = _high_water_mib(worker) - before
        # the function's own 100 MiB, and room for the rest; joined it was 200 MiB
        assert 100 <= grown < 150, f"the worker's peak memory grew by {grown} MiB"
        with host.client() as client:
            assert client.get("/hello/after").text == "Hello after"  # same worker, on
        assert host.worker_pids() == {worker}
    finally:
        gen.close()
