"""The log sink's writes (whole lines, none lost, on a pipe that fills up; threads and
processes sharing it), secrets redacted in whatever form they are written, and what
the host's processes print (fd 1 and 2, unfinished lines) passed on."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import Logger
from tests.hosts import started
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
