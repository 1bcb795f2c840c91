"""What one log line holds: the caller's fields beside the line's own, values JSON
cannot carry, levels, messages that are no string, exceptions, stacks, and line breaks
that would cut it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hibana.telemetry.console import render
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from tests.hosts import Host, started


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
