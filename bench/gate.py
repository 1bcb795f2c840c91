"""What a host-wide ``max_concurrency`` costs an invocation: the dispatcher's gate taking
and giving back a permit, counted in one worker (a plain counter) beside the same gate
taking it from the board every worker shares (a record lock, a read of every worker's
row). Both run the same loop of acquire + release on one event loop, in one process, in
turns, so the machine's noise falls on both alike.

Prints microseconds per acquire + release and the ratio; exits 0 whatever the numbers.

Run from anywhere: .venv/bin/python bench/gate.py [--rounds 5] [--slots 2,16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from hibana.dispatcher import Gate
from hibana.host.board import Board, Layout

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
    parser.add_argument("--slots", default="2,16", help="board rows (the host's max workers)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.slots.split(",")]
    boards = {n: Board.create(Layout(slots=n, functions=4)) for n in sizes}
    gates = {"per worker": Gate(50)}
    for n, board in boards.items():
        gates[f"host-wide, {n} workers"] = Gate(50, board.worker(n - 1), 3, 6.0)
    times: dict[str, list[float]] = {name: [] for name in gates}
    for _ in range(args.rounds):
        for name, gate in gates.items():
            times[name].append(asyncio.run(_cycles(gate)))
    base = statistics.median(times["per worker"])
    print(f"{'gate':<24} {'us per invocation':>18} {'ratio':>7}")
    for name, seen in times.items():
        median = statistics.median(seen)
        print(f"{name:<24} {median * 1e6:>18.2f} {median / base:>6.1f}x")
    for board in boards.values():
        board.close()


if __name__ == "__main__":
    main()
