"""The log sink's writes (whole lines, none lost, on a pipe that fills up), and the
console format."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hibana.telemetry.console import ConsoleLog, render
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from tests.hosts import APPS, Host, started
from tests.test_webhooks import API_TOKEN, set_secret


def test_a_full_non_blocking_pipe_loses_no_line_and_cuts_none() -> None:
    # A non-blocking stdout whose reader is away for a while: the sink waits for room
    # (it used to spin on EAGAIN), writes everything in order, and a line longer than
    # PIPE_BUF is written whole too when it is the only writer.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    received = bytearray()

    def reader() -> None:
        time.sleep(0.3)  # away while the pipe fills
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    sink = LogSink(write_end)
    log = Logger(sink, {"function": "f"})
    cpu = time.thread_time()
    for i in range(400):  # about 400 KB, several times what the pipe holds
        log.info("line", i=i, pad="x" * (20_000 if i == 7 else 1000))
    spent = time.thread_time() - cpu
    os.close(write_end)
    thread.join(10)
    os.close(read_end)
    lines = [json.loads(line) for line in bytes(received).splitlines()]
    assert [line["i"] for line in lines] == list(range(400))
    assert len(lines[7]["pad"]) == 20_000
    # it slept while the pipe was full: CPU time, not wall time, so a busy machine
    # does not change it (spinning on EAGAIN burnt the whole 0.3 s)
    assert spent < 0.15, f"the writer spent {spent:.2f}s of CPU waiting for the pipe"


def test_a_field_named_like_the_lines_own_does_not_replace_it() -> None:
    # ctx.log.info("slack message", msg=text) keeps the line's message and level; the
    # caller's values are kept beside them, with a trailing underscore
    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    log = Logger(sink, {"invocation_id": "abc"}).bind(level="bound")
    log.error("sent", msg="hello there", ts="yesterday", name="x", invocation_id="other")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as lines:
        line = json.loads(lines.readline())
    assert (line["msg"], line["level"], line["name"]) == ("sent", "error", "x")
    assert line["ts"].endswith("Z")
    assert (line["msg_"], line["ts_"], line["level_"]) == ("hello there", "yesterday", "bound")
    assert line["invocation_id"] == "abc"  # not put on another invocation's account
    assert line["invocation_id_"] == "other"


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


def test_a_value_json_cannot_carry_is_logged_escaped_and_never_fails_the_caller() -> None:
    """A file name that is not UTF-8 (decoded with surrogateescape) or an object whose
    repr raises must not turn a log call, or a print, into the function's failure."""

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    Logger(sink, {"invocation_id": "abc"}).info(
        "listing caf\udce9", path=b"caf\xe9".decode("utf-8", "surrogateescape"), x=Unprintable()
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as lines:
        line = json.loads(lines.readline())
    assert line["msg"] == "listing caf\\udce9"
    assert line["path"] == "caf\\udce9"
    assert line["x"] == "<Unprintable whose repr raised>"
    assert line["invocation_id"] == "abc"


def test_a_path_is_logged_as_its_text() -> None:
    """A ``pathlib.Path`` field was written as its repr, ``"PosixPath('/srv/in.csv')"``:
    not the path a reader searches the logs for."""
    read_end, write_end = os.pipe()
    log = Logger(LogSink(write_end), {})
    log.info("read", path=Path("/srv/in.csv"), more=[Path("a b")], sizes={Path("/x"): 1})
    log.info("escaped", path=Path("/srv"), name="caf\udce9")  # the fallback's way too
    os.close(write_end)
    with os.fdopen(read_end, "rb") as lines:
        read, escaped = (json.loads(line) for line in lines)
    assert (read["path"], read["more"], read["sizes"]) == ("/srv/in.csv", ["a b"], {"/x": 1})
    assert escaped["path"] == "/srv"


def test_a_lone_surrogate_beside_a_dict_with_a_tuple_key_is_logged(basic_host: Host) -> None:
    """Either alone was written; together, the escaping fallback turned the tuple key into
    a list, which no dict can hold: the function failed with a 500."""
    with basic_host.client() as client:
        r = client.get("/log-odd")
    assert (r.status_code, r.text) == (200, "logged")
    inv = r.headers["x-invocation-id"]
    for msg in ("upload", "bound upload"):
        line = basic_host.wait_for_log(msg=msg, invocation_id=inv)
        assert line["filename"] == "caf\\udce9.txt"
        assert line["sizes"] == {"(640, 480)": "vga"}  # the key's repr, as the encoder writes it


def test_a_line_whose_fields_cannot_be_written_at_all_still_goes_out() -> None:
    """The last resort: a dict that holds itself cannot be escaped either; the line keeps
    its own fields and says why the rest is missing, and the caller goes on."""
    loop: dict[str, object] = {}
    loop["self"] = loop
    read_end, write_end = os.pipe()
    log = Logger(LogSink(write_end), {"invocation_id": "abc"})
    log.info("caf\udce9", loop=loop)
    log.bind(loop=loop).warning("bound")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as out:
        lines = [json.loads(line) for line in out]
    assert [(x["msg"], x["level"], x["invocation_id"]) for x in lines] == [
        ("caf\\udce9", "info", "abc"),
        ("bound", "warning", "abc"),
    ]
    for line in lines:
        assert "loop" not in line
        assert line["log_error"] == (
            "the fields of this line could not be written as JSON (RecursionError); "
            "log plain values: str, numbers, lists and dicts of them"
        )


def test_a_field_named_like_a_renamed_one_or_an_exceptions_is_kept(basic_host: Host) -> None:
    """``msg=`` was renamed ``msg_`` over the caller's own ``msg_``, losing one of them
    silently; ``ctx.log.exception(..., error=...)`` raised (the function answered 500)."""
    with basic_host.client() as client:
        clash = client.get("/log-clash/msg")
        exception = client.get("/log-clash/exception")
    assert (clash.status_code, clash.text) == (200, "logged")
    line = basic_host.wait_for_log(invocation_id=clash.headers["x-invocation-id"], msg="clash")
    assert (line["msg_"], line["msg__"]) == ("other", "kept?")
    assert (exception.status_code, exception.text) == (200, "logged")
    line = basic_host.wait_for_log(
        invocation_id=exception.headers["x-invocation-id"], msg="upload failed"
    )
    assert line["level"] == "error"
    assert line["error"] == "ValueError: the upload is empty"
    assert 'raise ValueError("the upload is empty")' in line["traceback"]
    assert line["error_"] == "mine"


def test_an_exceptions_fields_keep_a_bound_or_extra_field_named_like_them(
    basic_host: Host,
) -> None:
    """``ctx.log.bind(error=...)`` then ``.exception(...)``, and ``logging``'s
    ``extra={"error": ...}`` with a traceback: both the exception's ``error`` and the
    caller's value are on the line (the caller's used to be replaced without a word)."""
    with basic_host.client() as client:
        bound = client.get("/log-clash/bound")
        library = client.get("/log-clash/logging")
    assert (bound.status_code, library.status_code) == (200, 200)
    line = basic_host.wait_for_log(
        invocation_id=bound.headers["x-invocation-id"], msg="bound failed"
    )
    assert line["error"] == "ValueError: the upload is empty"
    assert 'raise ValueError("the upload is empty")' in line["traceback"]
    assert (line["error_"], line["traceback_"]) == ("bound", "mine too")
    line = basic_host.wait_for_log(
        invocation_id=library.headers["x-invocation-id"], msg="library failed"
    )
    assert line["error"] == "ValueError: the library broke"
    assert line["ts"].endswith("Z")
    assert (line["error_"], line["error__"], line["ts_"]) == ("second", "first", "then")


def test_a_line_at_a_level_that_is_none_of_the_four_names_them(basic_host: Host) -> None:
    """A programming error, so it raises; it was a bare ``KeyError: 'fatal'``."""
    with basic_host.client() as client:
        r = client.get("/log-clash/fatal")
    assert r.status_code == 500
    line = basic_host.wait_for_log(
        invocation_id=r.headers["x-invocation-id"], msg="function raised"
    )
    assert line["error"] == (
        "ValueError: log level 'fatal' is not one of 'debug', 'info', 'warning', 'error'; "
        "call ctx.log.log() with one of those, or ctx.log.error(...) and the like"
    )


def test_a_message_that_is_not_a_string_is_logged_as_its_str() -> None:
    """``ctx.log.info(count)``, as ``logging.info(count)`` would: the line's ``msg`` is
    always a string, so whatever reads the lines can rely on its type."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no str")

    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    log = Logger(sink, {"invocation_id": "abc"})
    for message in (12345, None, {"a": 1}, Broken()):
        log.info(message)  # type: ignore[arg-type]
    os.close(write_end)
    with os.fdopen(read_end, "rb") as lines:
        messages = [json.loads(line)["msg"] for line in lines]
    assert messages == ["12345", "None", "{'a': 1}", "<Broken whose str raised>"]


def test_an_exception_line_takes_the_exception_being_handled_and_never_fails() -> None:
    """``ctx.log.exception("failed")`` in an except block was a TypeError (exc is
    required), and one given text an AttributeError: logging failed the function."""
    read_end, write_end = os.pipe()
    log = Logger(LogSink(write_end), {"invocation_id": "abc"})
    try:
        raise ValueError("the upload is empty")
    except ValueError:
        log.exception("upload failed", order=7)
    log.exception("charge failed", "card declined")  # type: ignore[arg-type]
    log.exception("nothing to tell")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as out:
        handled, text, nothing = (json.loads(line) for line in out.read().splitlines())
    assert (handled["msg"], handled["level"], handled["order"]) == ("upload failed", "error", 7)
    assert handled["error"] == "ValueError: the upload is empty"
    assert handled["traceback"].endswith("ValueError: the upload is empty\n")
    assert (text["error"], text["log_error"]) == (
        "card declined",
        "ctx.log.exception() takes an exception, not str: pass the exception, or log the text "
        "with ctx.log.error(msg, detail=...)",
    )
    assert nothing["log_error"].startswith("ctx.log.exception() was called outside an except")
    assert nothing["level"] == "error" and "traceback" not in nothing


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


ODD_SECRET = 'p@ss\\w0rd"€x'  # a backslash, a quote and a character outside ASCII


def test_a_secret_is_redacted_in_the_forms_code_writes_it_in() -> None:
    """``KeyError(secret)`` says its repr, ``json.dumps`` escapes it, a bytes field was
    written as base64: each of those leaked the value the plain match missed."""
    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    sink.redact([ODD_SECRET, "Plain5ecretValue"])
    log = Logger(sink, {"invocation_id": "abc"})
    try:
        raise KeyError(ODD_SECRET)
    except KeyError as exc:
        log.exception("lookup failed", exc)
    log.info("request", body=json.dumps({"password": ODD_SECRET}))
    log.info("ascii body", body=json.dumps({"password": ODD_SECRET}, ensure_ascii=False))
    log.info("bytes repr", error=repr(ODD_SECRET.encode()))
    log.info("upstream said", body=b'{"error": "token Plain5ecretValue expired"}')
    log.info("raw bytes", body=bytearray(b"\xff token " + ODD_SECRET.encode()))
    log.bind(token=b"Plain5ecretValue").info("bound bytes")
    log.info("nested bytes", headers={"auth": b"Plain5ecretValue"}, parts=(b"Plain5ecretValue",))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as out:
        raw = out.read()
    lines = [json.loads(line) for line in raw.splitlines()]
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    assert "w0rd" not in text and "Plain5ecret" not in text, text
    assert lines[0]["error"] == "KeyError: '[REDACTED]'"
    assert lines[1]["body"] == '{"password": "[REDACTED]"}'
    assert lines[2]["body"] == '{"password": "[REDACTED]"}'
    assert lines[3]["error"] == "b'[REDACTED]'"
    # bytes are written as text (UTF-8, other bytes escaped), where the value is found
    assert lines[4]["body"] == '{"error": "token [REDACTED] expired"}'
    assert lines[5]["body"] == "\\xff token [REDACTED]"
    assert lines[6]["token"] == "[REDACTED]"  # bound to the logger
    assert (lines[7]["headers"], lines[7]["parts"]) == ({"auth": "[REDACTED]"}, ["[REDACTED]"])


def test_scrub_replaces_the_escaped_forms_too() -> None:
    sink = LogSink(1)
    sink.redact([ODD_SECRET])
    assert sink.scrub(f"KeyError: {ODD_SECRET!r}") == "KeyError: '[REDACTED]'"
    assert sink.scrub(json.dumps([ODD_SECRET])) == '["[REDACTED]"]'


WRITER = """
import os, sys
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
log = Logger(LogSink(int(sys.argv[1])), {"writer": sys.argv[2]})
for i in range(200):
    log.info("big", i=i, pad=sys.argv[2] * (50_000 if i % 2 == 0 else 300))
"""


def test_processes_sharing_a_pipe_that_falls_behind_never_cut_each_others_lines() -> None:
    """A line longer than PIPE_BUF goes to a full pipe in parts; a line of another
    process could land between them, breaking both (one in 20 with 200 KB lines)."""
    read_end, write_end = os.pipe()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(write_end), name], pass_fds=(write_end,)
        )
        for name in "abcd"
    ]
    os.close(write_end)
    received = bytearray()
    time.sleep(0.2)  # away while the pipe fills: every writer waits on it
    while chunk := os.read(read_end, 1024):  # a slow reader: a little at a time
        received.extend(chunk)
    os.close(read_end)
    for writer in writers:
        assert writer.wait(30) == 0
    lines = [json.loads(line) for line in bytes(received).splitlines()]  # none is cut
    assert len(lines) == 800
    for name in "abcd":
        mine = [line for line in lines if line["writer"] == name]
        assert [line["i"] for line in mine] == list(range(200))
        assert all(set(line["pad"]) == {name} for line in mine)


def test_threads_writing_one_sink_on_a_pipe_that_falls_behind_cut_no_line() -> None:
    """lockf's lock is the process's: two threads of one process (the supervisor's) both
    held it, and one's unlock let another in on the other's long line."""
    read_end, write_end = os.pipe()
    sink = LogSink(write_end)  # attached to no loop: each line is written at once
    received = bytearray()

    def reader() -> None:
        while chunk := os.read(read_end, 4096):  # a slow reader: a page at a time
            received.extend(chunk)
            time.sleep(0.0005)

    def writer(tag: str) -> None:
        for i in range(20):
            sink.emit({"msg": tag * 100_000, "i": i})

    pump = threading.Thread(target=reader)
    pump.start()
    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.close(write_end)
    pump.join(30)
    os.close(read_end)
    lines = [json.loads(line) for line in bytes(received).splitlines()]  # none is cut
    assert sorted((line["msg"][0], line["i"]) for line in lines) == sorted(
        (tag, i) for tag in "ab" for i in range(20)
    )


def test_fd2_of_the_hosts_processes_is_redacted_whole_and_passed_on_as_written() -> None:
    """A secret across the cut of a line over 64 KiB went out in the clear, with a newline
    added mid-line; an unfinished line (a prompt) waited for a newline that never came."""
    from hibana.telemetry.process_output import ProcessOutput

    read_end, write_end = os.pipe()
    output = ProcessOutput(LogSink(os.open(os.devnull, os.O_WRONLY)), errors_fd=write_end)
    secret = "s3cr3t-TOKEN-abcdef0123456789"
    output.redact([secret])
    os.write(output.errors_fd, b"x" * 70_000 + secret[:10].encode())
    time.sleep(0.2)  # the pipe's reader takes the first piece alone
    os.write(output.errors_fd, secret[10:].encode() + b" end\n")
    os.write(output.errors_fd, b"Password: ")  # no newline: it still goes out
    deadline = time.monotonic() + 10
    got = b""
    while not got.endswith(b"Password: "):
        assert time.monotonic() < deadline, got[-100:]
        if select.select([read_end], [], [], 0.1)[0]:
            got += os.read(read_end, 1 << 20)
    output.close()
    os.close(write_end)
    os.close(read_end)
    assert got == b"x" * 70_000 + b"[REDACTED] end\nPassword: "


def test_lines_of_threads_beside_an_attached_loop_are_all_written_in_their_order() -> None:
    """Sync functions' threads add their lines while the loop flushes, without a lock
    unless the loop is idle: none is lost, each thread's come in its order, and a line
    from a thread goes out before the loop's line that follows it."""
    import asyncio

    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    received = bytearray()

    def reader() -> None:
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    pump = threading.Thread(target=reader)
    pump.start()

    async def main() -> None:
        sink.attach(asyncio.get_running_loop())

        def writer(tag: str) -> None:
            sink.prompt = tag == "c"  # one thread's lines each ask for a flush of their own
            for i in range(300):
                sink.emit({"msg": tag, "i": i})

        threads = [threading.Thread(target=writer, args=(tag,)) for tag in "abc"]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            sink.flush()
            await asyncio.sleep(0)
        for thread in threads:
            thread.join()
        sink.emit({"msg": "loop", "i": 0})  # after every thread's line
        await asyncio.sleep(0)

    asyncio.run(main())
    sink.detach()
    os.close(write_end)
    pump.join(10)
    os.close(read_end)
    lines = [json.loads(line) for line in bytes(received).splitlines()]
    for tag in "abc":
        assert [line["i"] for line in lines if line["msg"] == tag] == list(range(300))
    assert lines[-1]["msg"] == "loop"
    assert len(lines) == 901


def test_a_struct_line_leaves_out_its_unset_fields_also_when_it_must_be_escaped() -> None:
    import msgspec

    class Line(msgspec.Struct):
        msg: str
        error: str | msgspec.UnsetType = msgspec.UNSET
        reason: str | msgspec.UnsetType | None = msgspec.UNSET

    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    sink.emit(Line("plain"))
    sink.emit(Line("escaped", error="OSError: no file '\udcff'", reason=None))
    os.close(write_end)
    lines = [json.loads(line) for line in os.read(read_end, 65536).splitlines()]
    os.close(read_end)
    assert lines == [
        {"msg": "plain"},
        {"msg": "escaped", "error": "OSError: no file '\\udcff'", "reason": None},
    ]


STACK_APP = """
import logging

import hibana

app = hibana.App()


def where_it_was_asked():
    logging.getLogger("some.library").warning("how did we get here", stack_info=True)


@app.http("/stack", methods=["GET"])
def stack(req, ctx):
    where_it_was_asked()
    return "ok"
"""


def test_logging_with_stack_info_writes_the_stack(tmp_path: Path) -> None:
    """``logging``'s ``stack_info=True`` asks for the stack that led to the call (logging
    appends it to the message); the line went out without it."""
    (tmp_path / "function_app.py").write_text(STACK_APP)
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            assert client.get("/stack").text == "ok"
        line = host.wait_for_log(msg="how did we get here", logger="some.library")
        assert line["stack"].startswith("Stack (most recent call last):\n")
        assert "in where_it_was_asked" in line["stack"]
        assert line["function"] == "stack"


PARTLY_APP = """
import sys

import hibana

app = hibana.App()


@app.http("/sync", methods=["GET"])
def sync_print(req, ctx):
    print("sync result: 42", end="")
    return "ok"


@app.http("/async", methods=["GET"])
async def async_print(req, ctx):
    sys.stdout.write("first line\\nasync result: 43")
    return "ok"
"""


def test_text_printed_without_a_newline_goes_out_when_its_invocation_ends(
    tmp_path: Path,
) -> None:
    """``print(..., end="")`` or ``sys.stdout.write(...)`` without a newline last was held
    until the worker stopped (or its thread printed for another invocation)."""
    (tmp_path / "function_app.py").write_text(PARTLY_APP)
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            sync = client.get("/sync")
            asynchronous = client.get("/async")
        assert (sync.text, asynchronous.text) == ("ok", "ok")
        line = host.wait_for_log(msg="sync result: 42", stream="stdout")
        assert line["invocation_id"] == sync.headers["x-invocation-id"]
        line = host.wait_for_log(msg="async result: 43", stream="stdout")
        assert line["invocation_id"] == asynchronous.headers["x-invocation-id"]
        assert host.wait_for_log(msg="first line")["function"] == "async_print"


def test_a_line_holding_unicode_line_breaks_is_one_line_for_splitlines() -> None:
    """U+2028, U+2029 and NEL are valid raw in a JSON string, but ``str.splitlines()`` (and
    shippers that split as it does) cut the line there, into two that are not JSON."""
    read_end, write_end = os.pipe()
    sink = LogSink(write_end)
    sink.redact(["Plain5ecretValue"])
    text = "para\u2029graph line\u2028sep next\x85line café “quoted” Plain5ecretValue"
    Logger(sink, {"invocation_id": "abc"}).info(text, note="a\u2028b")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as out:
        raw = out.read().decode()
    (line,) = raw.splitlines()
    assert json.loads(line)["msg"] == text.replace("Plain5ecretValue", "[REDACTED]")
    assert json.loads(line)["note"] == "a\u2028b"
    assert "café “quoted”" in line  # other characters outside ASCII are written as they are
    # and the console format writes them as escapes, as it does control characters
    shown = render(json.loads(line))
    assert len(shown.splitlines()) == 1
    assert "para\\u2029graph line\\u2028sep next\\x85line" in shown


def test_fd1_of_the_hosts_processes_redacts_a_secret_across_the_cut_of_a_long_line(
    tmp_path: Path,
) -> None:
    """A line over 64 KiB on fd 1 (a program a function runs) goes out as several lines;
    a secret across the cut between two was written in the clear, half in each, and a
    character cut there as two U+FFFD. The end of such a line on fd 2 that never got its
    newline was held back for a secret that might go on, and never written."""
    from hibana.telemetry.process_output import ProcessOutput

    read_end, write_end = os.pipe()
    received = bytearray()

    def reader() -> None:
        while chunk := os.read(read_end, 65536):
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    errors = os.open(tmp_path / "stderr", os.O_WRONLY | os.O_CREAT)
    output = ProcessOutput(LogSink(write_end), errors_fd=errors)
    secret = "s3cr3t-TOKEN-abcdef0123456789"
    output.redact([secret])
    os.write(output.errors_fd, b"e" * 70_000 + b" the end")
    os.write(output.write_fd, b"x" * 70_000 + secret[:10].encode())
    time.sleep(0.2)  # the pipe's reader takes the first piece alone
    os.write(output.write_fd, secret[10:].encode() + "é end\n".encode())
    os.write(output.write_fd, b"y" * 70_000 + "é".encode()[:1])
    time.sleep(0.2)
    os.write(output.write_fd, "é".encode()[1:] + b" last\n")
    output.close()
    os.close(write_end)
    thread.join(10)
    os.close(read_end)
    text = "".join(json.loads(line)["msg"] for line in bytes(received).splitlines())
    assert secret[:10] not in text and secret[10:] not in text
    assert text == "x" * 70_000 + "[REDACTED]é end" + "y" * 70_000 + "é last"
    os.close(errors)
    assert (tmp_path / "stderr").read_bytes() == b"e" * 70_000 + b" the end"


FLUSHED_APP = """
import sys

import hibana

app = hibana.App()


@app.http("/progress", methods=["GET"], secrets=["api-token"])
def progress(req, ctx):
    token = ctx.secrets["api-token"]
    print("calling with", token[:9], end="", flush=True)
    print(token[9:], "... done")
    sys.stdout.write("step 1 ")
    sys.stdout.flush()  # nothing of a secret at its end: it goes out now
    return "ok"
"""


def test_a_secret_printed_in_two_flushed_pieces_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``print(part, end="", flush=True)`` wrote its text as a line at once: a secret
    printed in two such pieces went out in the clear, half in each line."""
    monkeypatch.setenv("HIBANA_SECRET_KEY_FILE", str(tmp_path / "keys" / "key"))
    (tmp_path / "function_app.py").write_text(FLUSHED_APP)
    assert set_secret(tmp_path, "api-token", API_TOKEN).returncode == 0
    for host in started(tmp_path, "--workers", "1"):
        with host.client() as client:
            assert client.get("/progress").text == "ok"
        # what may begin the secret waits for the rest; what comes before goes out
        assert host.wait_for_log(msg="calling with ")["stream"] == "stdout"
        assert host.wait_for_log(msg="[REDACTED] ... done")["function"] == "progress"
        assert host.wait_for_log(msg="step 1 ")["function"] == "progress"
    everything = "\n".join(host.stdout_lines + host.stderr_lines)
    assert API_TOKEN[:9] not in everything and API_TOKEN[9:] not in everything
