"""What a host-wide ``max_concurrency`` costs an invocation: the dispatcher's gate taking
and giving back a permit, counted in one worker (a plain counter) beside the same gate
taking it from the permit table every worker of the host shares (a record lock, a read
of every row). Both run the same loop of acquire + release on one event loop, in one process, in
turns, so the machine's noise falls on both alike.

Prints microseconds per acquire + release and the ratio; exits 0 whatever the numbers.

Run from anywhere: .venv/bin/python bench/gate.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from hibana.dispatcher import Gate
from hibana.host.board import PermitTable

CYCLES = 100_000


async def _cycles(gate: Gate) -> float:
    """Seconds per acquire + release, none of them waiting (the common case)."""
    start = time.perf_counter()
    for _ in range(CYCLES):
        if not gate.try_acquire():
            raise RuntimeError("the gate refused with nothing running")
        gate.release()
    return (time.perf_counter() - start) / CYCLES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    table = PermitTable.create()
    gates = {
        "per worker": Gate(50),
        f"host-wide ({table.rows} rows)": Gate(50, table.row(3, [-1, 9]), 1, 6.0),
    }
    times: dict[str, list[float]] = {name: [] for name in gates}
    for _ in range(args.rounds):
        for name, gate in gates.items():
            times[name].append(asyncio.run(_cycles(gate)))
    base = statistics.median(times["per worker"])
    print(f"{'gate':<24} {'us per invocation':>18} {'ratio':>7}")
    for name, seen in times.items():
        median = statistics.median(seen)
        print(f"{name:<24} {median * 1e6:>18.2f} {median / base:>6.1f}x")
    table.close()


if __name__ == "__main__":
    main()
