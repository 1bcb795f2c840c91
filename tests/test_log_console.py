"""The console format (``--log-format console``, ``hibana dev``'s on a terminal): the
JSON lines drawn for a person, with no control character let through."""

from __future__ import annotations

import os
import re

from hibana.telemetry.console import ConsoleLog, render
from tests.hosts import APPS, Host


def test_console_format_renders_the_json_lines_for_a_person() -> None:
    # hibana dev's default on a terminal; asked for here, since the test's stdout is a pipe
    host = Host(APPS / "basic", "--workers", "1", "--log-format", "console").wait_ready()
    try:
        with host.client() as client:
            hello = client.get("/hello/x").headers["x-invocation-id"][:8]
            boom = client.get("/boom").headers["x-invocation-id"][:8]
            mine = client.get("/log-clash/invocation").headers["x-invocation-id"][:8]
        host.wait_for_stdout(r"GET /boom → 500  error in [0-9.]+ ms")
    finally:
        host.stop()
    lines = host.stdout_lines
    out = "\n".join(lines)
    assert not [line for line in lines if line.startswith("{")], out
    assert re.search(rf"^[0-9:.]{{12}} INFO  greeting  name=x  · hello {hello}$", out, re.M), out
    assert re.search(
        rf" INFO  hello  GET /hello/x → 200  ok in [0-9.]+ ms  .*· {hello}$", out, re.M
    )
    # a function's own "invocation" lines, with an outcome of theirs, are not drawn as the
    # host's: theirs is written outcome_ (ctx.log and logging alike)
    assert re.search(
        rf" INFO  invocation  outcome_=declined  status=402  · log_clash {mine}$", out, re.M
    ), out
    assert re.search(
        rf" INFO  invocation  logger=payments  outcome_=declined  · log_clash {mine}$", out, re.M
    ), out
    assert re.search(
        rf" INFO  log_clash  GET /log-clash/invocation → 200  ok in .*· {mine}$", out, re.M
    )
    # an error line, and under it its traceback, indented, from the function on
    (at,) = [i for i, line in enumerate(lines) if " ERROR function raised  " in line]
    assert lines[at].endswith(f"· boom {boom}") and "RuntimeError: secret detail" in lines[at]
    assert lines[at + 1] == "    Traceback (most recent call last):"
    assert lines[at + 2].startswith(f'      File "{APPS / "basic" / "function_app.py"}", line ')
    assert lines[at + 2].endswith(", in boom")
    assert lines[at + 3] == '        raise RuntimeError("secret detail that must stay in the log")'


def test_the_console_format_writes_a_lines_control_characters_as_escapes() -> None:
    """A message cannot forge a line of its own, nor send the terminal an escape."""
    record = {
        "ts": "2026-12-06T09:30:27.148Z",
        "level": "info",
        "msg": "line one\nFAKE 12:00:00.000 ERROR  injected\x1b[2J",
        "who": "a\x1bb",
        "traceback": "Traceback\n  raise ValueError('\x1b[31m')\n",
    }
    shown = render(record).split("\n")
    assert len(shown) == 3  # the line and its two traceback lines
    assert "line one\\nFAKE 12:00:00.000 ERROR  injected\\x1b[2J" in shown[0]
    assert "who='a\\x1bb'" in shown[0]
    assert shown[2] == "      raise ValueError('\\x1b[31m')"
    assert "\x1b" not in "".join(shown)
    assert "\x1b[41;1mCRIT " in render({**record, "level": "critical"}, color=True)


def test_the_console_escapes_control_characters_in_names_levels_and_lines_not_json() -> None:
    """A field's name (``ctx.log.info(msg, **fields)``, logging's ``extra=``), a level
    named with ``logging.addLevelName`` and a line that is not JSON reached the terminal
    as they were: an ``ESC [2J`` in them cleared it."""
    record = {
        "ts": "2026-12-06T09:30:27.148Z",
        "level": "\x1b[2Jloud",
        "msg": "hello",
        "\x1b[2Jname": 1,
        "invocation_id": "\x1b[2Jabcdef",
        "function": "f\x1b]0;title\x07",
    }
    shown = render(record, color=True)
    assert "\x1b[2J" not in shown and "\x1b]" not in shown, repr(shown)
    assert "\\x1b[2JLOUD" in shown and "\\x1b[2Jname=1" in shown
    read_end, out = os.pipe()
    console = ConsoleLog(out, color=False)
    os.write(console.write_fd, b"not json \x1b[2J\n[1, \x1b[2J]\n")
    console.close()
    os.close(out)
    with os.fdopen(read_end, "rb") as rendered:
        assert rendered.read() == b"not json \\x1b[2J\n[1, \\x1b[2J]\n"


def test_the_console_shows_a_functions_fields_named_like_the_hosts() -> None:
    """A function's ``pid`` (of a child it started), ``worker`` or ``stream`` was hidden,
    taken for the host's own; the host's stay hidden."""
    mine = {
        "ts": "2026-12-06T09:30:27.148Z",
        "level": "info",
        "msg": "spawned",
        "invocation_id": "53de27e8aa",
        "function": "convert",
        "pid": 4242,
        "worker": "alice",
        "stream": "orders",
    }
    assert render(mine).endswith(
        " INFO  spawned  pid=4242  worker=alice  stream=orders  · convert 53de27e8"
    )
    printed = {k: v for k, v in mine.items() if k not in ("pid", "worker")}
    printed.update(msg="printed", stream="stdout")
    own = {"ts": mine["ts"], "level": "info", "msg": "worker ready", "worker": 0, "pid": 7}
    library = {**printed, "msg": "library", "logger": "lib", "worker": 0}
    del library["stream"]
    assert render(printed).endswith(" INFO  printed  · convert 53de27e8")
    assert render(own).endswith(" INFO  worker ready")
    assert render(library).endswith(" INFO  library  logger=lib  · convert 53de27e8")


def test_the_console_draws_the_line_of_an_invocation_a_dead_worker_took_with_it() -> None:
    """The supervisor's 502 line knows no function, request or duration: it was drawn as
    "? error in ? ms", without its 502."""
    record = {
        "ts": "2026-12-06T09:30:27.148Z",
        "level": "error",
        "msg": "invocation",
        "invocation_id": "53de27e8aa",
        "outcome": "error",
        "status": 502,
        "error": "the worker died",
        "worker": 0,
        "pid": 4242,
        "worker_exit": "killed by SIGKILL",
    }
    line = render(record)
    assert line.endswith(
        " ERROR invocation  → 502  error  error='the worker died'  "
        "worker_exit='killed by SIGKILL'  · 53de27e8"
    ), line
