"""A log line longer than log shippers take whole (``LONGEST_LINE``): its longest values
are cut, each saying how much of it was, and the line is still one JSON object, with its
invocation's fields."""

from __future__ import annotations

import json
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from hibana.telemetry.long_lines import LONGEST_LINE
from hibana.telemetry.printed import LONGEST_PIECE
from tests.hosts import Host, started

#: What a cut value ends with.
CUT = re.compile(r"…\[cut by hibana: (\d+) of (\d+) bytes\]$")

LOUD_APP = """
import logging
import sys

import hibana

app = hibana.App()
BIG = 5_000_000


@app.http("/loud", methods=["GET"])
def loud(req, ctx):
    ctx.log.info("m" * BIG)
    ctx.log.info("a big field", body="b" * BIG, small="kept")
    print("p" * BIG)
    logging.getLogger("some.library").warning("l" * BIG)
    sys.stdout.write("w" * BIG)  # no newline: it goes out as the invocation ends
    return "ok"
"""


def cut_of(value: str, letter: str, whole: int) -> None:
    """``value`` is ``whole`` bytes of ``letter`` cut, and says how many it lost."""
    found = CUT.search(value)
    assert found is not None, value[-80:]
    kept = value[: found.start()]
    assert kept == letter * len(kept) and len(kept) > LONGEST_LINE // 2
    assert (int(found[1]), int(found[2])) == (whole - len(kept), whole)


def test_a_line_of_5_mb_is_cut_to_the_longest_a_line_holds_and_says_so(tmp_path: Path) -> None:
    """A 5 MB message, field or printed line went out as one 5 MB line, which log
    shippers and stores drop or split (Loki drops a line past 256 KB)."""
    (tmp_path / "function_app.py").write_text(LOUD_APP)
    big = 5_000_000
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            answer = client.get("/loud")
        assert answer.text == "ok"
        invocation = answer.headers["x-invocation-id"]
        host.wait_for_log(msg="invocation", invocation_id=invocation)
    assert max(len(line.encode()) for line in host.stdout_lines) <= LONGEST_LINE
    lines = [line for line in host.logs() if line.get("invocation_id") == invocation]
    message, field, printed, logged, written = lines[:5]
    cut_of(message["msg"], "m", big)
    assert field["msg"] == "a big field" and field["small"] == "kept"
    cut_of(field["body"], "b", big)
    assert (printed["stream"], logged["logger"], written["stream"]) == (
        "stdout",
        "some.library",
        "stdout",
    )
    cut_of(printed["msg"], "p", big)
    cut_of(logged["msg"], "l", big)
    cut_of(written["msg"], "w", big)
    assert all(line["function"] == "loud" for line in lines)


def written(log: Any) -> list[dict[str, Any]]:
    """The lines ``log(logger)`` writes, each checked to be no longer than a line holds."""
    with tempfile.TemporaryFile() as out:
        sink = LogSink(out.fileno())
        sink.redact(["Plain5ecretValue"])
        log(Logger(sink, {"invocation_id": "abc"}))
        out.seek(0)
        raw = out.read()
    lines = raw.decode().splitlines()
    assert all(len(line.encode()) <= LONGEST_LINE for line in lines)
    return [json.loads(line) for line in lines]


def test_a_long_line_cuts_a_string_inside_a_field_and_a_field_of_many_small_values() -> None:
    body = {"rows": ["r" * 400_000], "count": 1}
    numbers = list(range(100_000))
    inside, many = written(
        lambda log: (log.info("nested", body=body), log.info("numbers", ids=numbers, n=3))
    )
    assert inside["body"]["count"] == 1
    cut_of(inside["body"]["rows"][0], "r", 400_000)
    assert body == {"rows": ["r" * 400_000], "count": 1}  # the caller's dict as it was
    # no string in it to cut: the field is written as what it was
    assert many["ids"] == "…[cut by hibana: a list of 100000 items, 588891 bytes as JSON]"
    assert many["n"] == 3


def test_a_secret_at_the_cut_of_a_long_value_is_not_written_in_part() -> None:
    """The cut could end a value inside a secret, whose start would then be written: no
    longer the whole secret, it was not redacted."""
    for shift in range(0, 16, 3):
        text = "x" * (LONGEST_LINE - 260 + shift) + "Plain5ecretValue" * 40_000
        (line,) = written(lambda log, text=text: log.info("m", secret=text))
        kept = CUT.split(line["secret"])[0]
        assert not any(kept.endswith("Plain5ecretValue"[:n]) for n in range(1, 16)), shift
        assert "Plain5ec" not in kept.replace("[REDACTED]", "")


ENDLESS_APP = """
import pathlib
import sys
import time

import hibana

app = hibana.App()
here = pathlib.Path(__file__).parent


@app.http("/dots", methods=["GET"])
def dots(req, ctx):
    for _ in range(200):
        print("." * 1000, end="")
    while not (here / "release").exists():  # printing on and on, as far as the host knows
        time.sleep(0.01)
    sys.stdout.write("end")
    return "ok"
"""


def printed(host: Host) -> list[str]:
    """What the function ``dots`` printed, each line's text."""
    lines = [line for line in host.logs() if line.get("function") == "dots"]
    return [line["msg"] for line in lines if line.get("stream") == "stdout"]


def test_text_printed_without_a_newline_goes_out_in_pieces_while_it_is_printed(
    tmp_path: Path,
) -> None:
    """It was held until its newline, a flush or the invocation's end, however long it
    grew: ``while True: print(".", end="")`` took the worker's memory. Now it goes out in
    pieces of at most ``LONGEST_PIECE`` characters (and what one write added), as fd 1's
    output does, while the function still runs; nothing of it is lost."""
    (tmp_path / "function_app.py").write_text(ENDLESS_APP)
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client, ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.get, "/dots")

            deadline = time.monotonic() + 30
            while sum(map(len, printed(host))) < 3 * LONGEST_PIECE:
                assert time.monotonic() < deadline, f"printed so far: {printed(host)}"
                time.sleep(0.05)
            assert not answer.done()  # out while the function runs, not as it ends
            (tmp_path / "release").touch()
            assert answer.result().text == "ok"
        host.wait_for_log(msg="invocation", function="dots")
        pieces = printed(host)
        assert all(len(piece) <= LONGEST_PIECE + 1000 for piece in pieces)
        assert "".join(pieces) == "." * 200_000 + "end"
