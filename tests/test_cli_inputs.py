"""What `hibana queue send` and `hibana events publish` refuse: input no consumer could read
back as sent (NaN, a lone surrogate, bytes that are not UTF-8) or a delay that parks a
message for good. A usage error (exit 2) naming the option and the value, nothing written."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hibana.store import QueueInfo, Store, SubscriptionInfo, open_store
from tests.hosts import copy_app, run_cli

#: What a shell passes for $'\xff': Python gets the byte back as this surrogate (PEP 383),
#: and subprocess turns it back into the byte.
NOT_UTF8 = "\udcff"
DELAY_BOUND = "must be a number of seconds from 0 to 31536000 (365 days)"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return copy_app("queues", tmp_path)


@pytest.fixture
def store(app_dir: Path) -> Iterator[Store]:
    opened = open_store(None, app_dir)
    asyncio.run(opened.declare([QueueInfo("orders", "on_order", 3)]))
    asyncio.run(opened.subscribe([SubscriptionInfo("on_event", "github", "orders", None)]))
    yield opened
    opened.close()


def _nothing_sent(store: Store) -> bool:
    return all(q.ready == q.delayed == 0 for q in asyncio.run(store.stats()))


def _refused(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    assert f"Invalid value: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_queue_send_reads_a_message_too_large_for_the_command_line_from_a_file_or_stdin(
    app_dir: Path, store: Store, tmp_path: Path
) -> None:
    # 200 KB: under the 256 KiB a message holds, over the 128 KiB an argument does
    document = json.dumps({"p": "x" * 200_000})
    (tmp_path / "big.json").write_text(document)
    from_file = run_cli(
        "queue", "send", "orders", "--data", f"@{tmp_path / 'big.json'}", "--app", str(app_dir)
    )
    assert from_file.returncode == 0, from_file.stderr
    from_stdin = subprocess.run(
        [
            sys.executable,
            "-m",
            "hibana",
            "queue",
            "send",
            "orders",
            "--data",
            "@-",
            "--app",
            str(app_dir),
        ],
        input=document.encode(),
        capture_output=True,
        timeout=60,
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    messages = asyncio.run(store.claim("orders", "test", 2, lease=30))
    assert [json.loads(m.body) for m in messages] == [{"p": "x" * 200_000}] * 2
    missing = run_cli("queue", "send", "orders", "--data", "@/no/such.json", "--app", str(app_dir))
    assert missing.returncode == 2
    assert "--data @/no/such.json: cannot read it: No such file or directory" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "NaN"], "--data is not JSON: NaN is not a JSON value; pass a number, or null"),
        (["--data", "Infinity"], "--data is not JSON: Infinity is not a JSON value"),
        (["--data", '{"a": [-Infinity]}'], "--data is not JSON: -Infinity is not a JSON value"),
        (
            ["--data", "1e400"],
            "--data is not JSON: 1e400 is too large for a JSON number (at most about 1.8e308)",
        ),
        (
            ["--data", '{"s": "\\ud800"}'],
            "--data holds '\\ud800', a string with a lone surrogate ('\\ud800': half of a "
            'UTF-16 pair, not a character); escape both halves ("\\ud83d\\ude00") or write '
            "the character itself",
        ),
        (["--data", '{"\\udc00": 1}'], "--data holds '\\udc00', a string with a lone surrogate"),
        (["--data", f'"{NOT_UTF8}"'], "--data b'\"\\xff\"' is not UTF-8 text; pass it in UTF-8"),
        (["--data", "[" * 5000], "--data nests too deeply to read (about 1000 levels at most)"),
        (
            ["--data", "1", "--idempotency-key", "\udcff\udcfe"],
            "--idempotency-key b'\\xff\\xfe' is not UTF-8 text; pass it in UTF-8",
        ),
        (
            ["--data", "1", "--idempotency-key", ""],
            "--idempotency-key '' is empty: every message sent with it within 24 h would be "
            "one, the rest dropped as duplicates; leave --idempotency-key out for a message "
            "with no key",
        ),
        (
            ["--data", "1", "--delay", "inf"],
            f"--delay inf {DELAY_BOUND}; for work due later, keep it elsewhere and let an "
            "@app.timer function enqueue it",
        ),
        (["--data", "1", "--delay", "1e300"], f"--delay 1e+300 {DELAY_BOUND}"),
        (["--data", "1", "--delay", "31536001"], f"--delay 31536001 {DELAY_BOUND}"),
        (["--data", "1", "--delay", "nan"], f"--delay nan {DELAY_BOUND}"),
        (["--data", "1", "--delay", "-1"], f"--delay -1 {DELAY_BOUND}"),
    ],
)
def test_queue_send_refuses_what_no_consumer_reads_back(
    app_dir: Path, store: Store, args: list[str], message: str
) -> None:
    _refused(["queue", "send", "orders", *args, "--app", str(app_dir)], message)
    assert _nothing_sent(store)


def test_queue_send_names_a_queue_that_is_not_utf8(app_dir: Path, store: Store) -> None:
    _refused(
        ["queue", "send", NOT_UTF8, "--data", "1", "--app", str(app_dir)],
        "QUEUE b'\\xff' is not UTF-8 text; pass it in UTF-8",
    )


def test_queue_send_takes_a_year_of_delay_and_escaped_pairs(app_dir: Path, store: Store) -> None:
    sent = run_cli(
        "queue", "send", "orders", "--data", '"\\ud83d\\ude00"', "--delay", "31536000",
        "--app", str(app_dir),
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    (stats,) = asyncio.run(store.stats())
    assert (stats.queue, stats.delayed) == ("orders", 1)
    big = run_cli("queue", "send", "orders", "--data", "[1e308, -2.5e-300]", "--app", str(app_dir))
    assert big.returncode == 0, big.stderr
    (message,) = asyncio.run(store.claim("orders", "test", 1, lease=30))
    assert json.loads(message.body) == [1e308, -2.5e-300]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "NaN"], "--data is not JSON: NaN is not a JSON value; pass a number, or null"),
        (["--data", "[Infinity]"], "--data is not JSON: Infinity is not a JSON value"),
        (["--data", '{"s": "\\udc00"}'], "--data holds '\\udc00', a string with a lone surrogate"),
        (["--subject", NOT_UTF8], "--subject b'\\xff' is not UTF-8 text; pass it in UTF-8"),
        (["--id", "\udcff\udcfe"], "--id b'\\xff\\xfe' is not UTF-8 text; pass it in UTF-8"),
    ],
)
def test_events_publish_refuses_what_no_subscriber_reads_back(
    app_dir: Path, store: Store, args: list[str], message: str
) -> None:
    _refused(
        ["events", "publish", "github", "--type", "t", "--source", "s", *args,
         "--app", str(app_dir)],
        message,
    )  # fmt: skip
    assert _nothing_sent(store)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["github", "--type", NOT_UTF8, "--source", "s"], "--type"),
        (["github", "--type", "t", "--source", NOT_UTF8], "--source"),
        ([NOT_UTF8, "--type", "t", "--source", "s"], "TOPIC"),
    ],
)
def test_events_publish_names_attributes_that_are_not_utf8(
    app_dir: Path, store: Store, args: list[str], option: str
) -> None:
    _refused(
        ["events", "publish", *args, "--app", str(app_dir)],
        f"{option} b'\\xff' is not UTF-8 text; pass it in UTF-8",
    )


def test_queue_send_to_a_timers_queue_says_the_schedule_owns_it(
    app_dir: Path, store: Store
) -> None:
    result = run_cli("queue", "send", "timer:hourly", "--data", "{}", "--app", str(app_dir))
    assert result.returncode == 2
    assert "'timer:hourly' is a timer's own queue: its schedule sends to it" in result.stderr
    assert "Traceback" not in result.stderr and _nothing_sent(store)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["dlq", "orders", "--limit", "99999999999999999999"],
            "Invalid value for '--limit': Input should be less than or equal to "
            "9223372036854775807",
        ),
        (
            ["redrive", "orders", "--id", "99999999999999999999"],
            "Invalid value for '--id': Input should be less than or equal to 9223372036854775807",
        ),
        (
            ["redrive", "orders", "--id", "3", "--id", "-5"],
            "Invalid value for '--id': Input should be greater than or equal to 1",
        ),
    ],
)
def test_queue_ids_and_limits_past_what_a_store_holds_are_usage_errors(
    app_dir: Path, store: Store, args: list[str], message: str
) -> None:
    """Not 'the store failed: OverflowError' (exit 1), as if the store were broken."""
    result = run_cli("queue", *args, "--app", str(app_dir))
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.replace("│", "").split()), result.stderr
    assert "store" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ('{"order": 7}', "--data lacks the required attributes id, source, specversion, type"),
        ("[1, 2]", "--data is not a JSON object"),
    ],
)
def test_queue_send_to_a_subscriptions_queue_takes_only_a_cloudevent(
    app_dir: Path, store: Store, data: str, problem: str
) -> None:
    """What its subscriber is given is a CloudEvent: anything else was written, and became
    a dead letter at once, unrun ('cannot be delivered')."""
    asyncio.run(store.declare([QueueInfo("event:on_event", "on_event", 3)]))
    _refused(
        ["queue", "send", "event:on_event", "--data", data, "--app", str(app_dir)],
        f"'event:on_event' takes CloudEvents, and {problem}; publish with `hibana events "
        "publish`, or send a whole event to replay it to this subscriber",
    )
    assert _nothing_sent(store)
    # a whole event goes to that subscriber alone: a replay
    event = {"specversion": "1.0", "id": "e-1", "source": "/test", "type": "com.test.replay"}
    sent = run_cli(
        "queue", "send", "event:on_event", "--data", json.dumps(event), "--app", str(app_dir)
    )
    assert sent.returncode == 0, sent.stderr
    assert [q.ready for q in asyncio.run(store.stats()) if q.queue == "event:on_event"] == [1]


def _run_with_stdin_closed(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI started with its fd 0 closed, as `hibana ... <&-` starts it: Python then
    has no ``sys.stdin`` at all."""
    return subprocess.run(
        [sys.executable, "-m", "hibana", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
        preexec_fn=lambda: os.close(0),
    )


@pytest.mark.parametrize(
    "command",
    [
        ["queue", "send", "orders"],
        ["events", "publish", "github", "--type", "t.x", "--source", "/s"],
    ],
)
def test_data_from_a_closed_stdin_is_a_usage_error(
    app_dir: Path, store: Store, command: list[str]
) -> None:
    """Not a traceback (AttributeError: 'NoneType' object has no attribute 'buffer')."""
    result = _run_with_stdin_closed(*command, "--data", "@-", "--app", str(app_dir))
    assert result.returncode == 2, result
    assert (
        "Invalid value: --data @-: standard input is closed; pipe the document in, or pass "
        "@FILE" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert _nothing_sent(store)


def test_secrets_set_with_stdin_closed_says_where_the_value_comes_from(
    app_dir: Path, store: Store
) -> None:
    result = _run_with_stdin_closed("secrets", "set", "api-token", "--app", str(app_dir))
    assert result.returncode == 1, result
    assert result.stderr == (
        "error: no value for api-token: standard input is closed; pipe the value in, or run "
        "the command in a terminal to be asked for it. Nothing was set\n"
    )
    assert asyncio.run(store.secrets()) == {}


@pytest.mark.parametrize(
    ("command", "argument"),
    [(["queue", "dlq"], "QUEUE"), (["queue", "redrive"], "QUEUE"), (["secrets", "rm"], "NAME")],
)
def test_names_that_are_not_utf8_are_usage_errors_where_they_are_looked_up(
    app_dir: Path, store: Store, command: list[str], argument: str
) -> None:
    """Not 'the store ... failed: UnicodeEncodeError' (exit 1), as if the store were broken."""
    _refused(
        [*command, NOT_UTF8, "--app", str(app_dir)],
        f"{argument} b'\\xff' is not UTF-8 text; pass it in UTF-8",
    )


RULE = "use 1 to 200 ASCII letters, digits, '-', '_' or '.'"
OWN_QUEUES = " (a timer's queue is timer:FUNCTION; a subscriber's, event:FUNCTION)"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["queue", "dlq", "a b"],
            f"queue name 'a b': {RULE}{OWN_QUEUES}; ' ' (a space) is not one",
        ),
        (["queue", "redrive", "a/b"], f"queue name 'a/b': {RULE}{OWN_QUEUES}; '/' is not one"),
        (
            ["queue", "send", "a b", "--data", "1"],
            f"queue name 'a b': {RULE}{OWN_QUEUES}; ' ' (a space) is not one",
        ),
        (["queue", "dlq", "event:"], f"queue name 'event:': {RULE}{OWN_QUEUES}; it is empty"),
        (
            ["events", "publish", "a b", "--type", "t.x", "--source", "/s"],
            f"topic name 'a b': {RULE}; ' ' (a space) is not one",
        ),
        (["secrets", "rm", "a b"], f"secret name 'a b': {RULE}; ' ' (a space) is not one"),
    ],
)
def test_names_no_store_holds_are_usage_errors_naming_the_rule(
    app_dir: Path, store: Store, command: list[str], message: str
) -> None:
    """They were looked up, and said not to be there ('no secret 'a b'', 'no queue ...'),
    as if mistyped: `hibana secrets set 'a b'` named the rule."""
    _refused([*command, "--app", str(app_dir)], message)
    assert _nothing_sent(store)


def test_a_timers_or_subscribers_own_queue_is_a_name_queue_commands_take(
    app_dir: Path, store: Store
) -> None:
    asyncio.run(store.declare([QueueInfo("event:on_event", "on_event", 3)]))
    result = run_cli("queue", "dlq", "event:on_event", "--app", str(app_dir))
    assert result.returncode == 0, result
    assert "no dead letters in event:on_event" in result.stdout


def test_data_from_an_endless_file_or_stdin_is_read_only_so_far(
    app_dir: Path, store: Store
) -> None:
    """/dev/zero (or `yes |`) was read until memory ran out; a file far past what a message
    holds was read whole, then its size refused."""
    _refused(
        ["queue", "send", "orders", "--data", "@/dev/zero", "--app", str(app_dir)],
        "--data @/dev/zero holds more than 4194304 bytes; a message holds 256 KiB of JSON at most",
    )
    command = ["queue", "send", "orders", "--data", "@-", "--app", str(app_dir)]
    piped = subprocess.run(
        [sys.executable, "-m", "hibana", *command],
        input=b" " * (4 * 1024 * 1024 + 1),
        capture_output=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert piped.returncode == 2, piped
    assert b"--data @- holds more than 4194304 bytes" in piped.stderr
    assert _nothing_sent(store)


@pytest.mark.parametrize(
    ("option", "left_out"),
    [("--subject", "for an event with no subject"), ("--id", "for a new id")],
)
def test_events_publish_names_an_empty_subject_or_id_as_an_option(
    app_dir: Path, store: Store, option: str, left_out: str
) -> None:
    """It said "id='': leave it out (None) instead": the library's words, not the CLI's."""
    attributes = ["--type", "t.x", "--source", "/s", option, ""]
    _refused(
        ["events", "publish", "github", *attributes, "--app", str(app_dir)],
        f"{option} '' is empty: leave {option} out {left_out}",
    )
    assert _nothing_sent(store)
