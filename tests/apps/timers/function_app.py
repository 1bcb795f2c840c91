"""A timer every second, and one that fails every time; each run appends a line to
fired.jsonl beside this file."""

import json
import os
import time
from pathlib import Path

import hibana

HERE = Path(__file__).parent
app = hibana.App()


def record(**fields: object) -> None:
    line = json.dumps({"pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(HERE / "fired.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@app.timer("* * * * * *")
def tick(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:
    record(fn="tick", slot=timer.scheduled_ts, past_due=timer.past_due, on_startup=timer.on_startup)


@app.timer("*/2 * * * * *", tz="Asia/Tokyo")
async def broken(timer: hibana.TimerInfo, ctx: hibana.Context) -> None:
    record(fn="broken", slot=timer.scheduled_ts)
    raise ValueError("this timer always fails")
