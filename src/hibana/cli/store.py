"""The commands of ``hibana`` that work on an app's store, with or without a running host:
``queue`` (send, stats, dead letters, redrive), ``events publish`` and ``secrets``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from hibana.cli.options import AppOpt, Commands, StoreOpt, check_store, fail, report, usage
from hibana.cli.tables import new_console, new_table, queues_table

if TYPE_CHECKING:
    from hibana.store.base import DeadLetter, Store

T = TypeVar("T")

#: The largest message id and count a store takes: a 64-bit integer, in SQLite and PostgreSQL.
MAX_ID = 2**63 - 1


queue_cli = Commands(
    help="Look into queues and act on them: send, stats, dead letters, redrive. "
    "Works with or without a running host.",
    no_args_is_help=True,
)


@contextlib.contextmanager
def _opened_store(app: Path, store: str | None, *, create: bool = False) -> Iterator[Store]:
    """The app's store (or ``--store``), closed afterwards; exit 1 naming the problem.

    A store that does not exist yet is made only when ``create`` (setting a secret before
    the first start); otherwise its absence is the error, so a mistyped ``--app`` or
    ``--store`` leaves no ``.hibana`` folder, nor a store in an empty file, behind. The
    default store needs an app folder around it."""
    from hibana.errors import HibanaError
    from hibana.host.loader import APP_FILE
    from hibana.store import STORE_ENV, open_store, resolve_url

    check_store(store)
    url = resolve_url(store, app)
    default = not (store or os.environ.get(STORE_ENV))
    if default and not (app / APP_FILE).is_file():
        fail(
            f"{app.resolve()} is not an app folder (it has no {APP_FILE}): pass --app APP_DIR, "
            "or --store URL",
            1,
        )
    if default and not create:  # (the engine names a --store that is not there)
        path = Path(url.removeprefix("sqlite:///")).resolve()
        if not path.exists():
            fail(
                f"no store at {path}: no host has run this app yet; start one with "
                f"`hibana serve {app}` (or pass --store URL)",
                1,
            )
    try:
        opened = open_store(store, app, create=create, on_wait=report)
    except HibanaError as exc:
        fail(str(exc), 1)
    interrupted = False
    try:
        yield opened
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        # at Ctrl-C, not waited for: its writer may be waiting for a lock, as it was told
        opened.close(timeout=0 if interrupted else None)


def _check_queue(opened: Store, queue: str) -> None:
    """Exit 1 if the store knows no queue of that name (declared, or holding messages)."""
    known = {q.name for q in _run(opened.declared())} | {s.queue for s in _run(opened.stats())}
    if queue not in known:
        names = ", ".join(sorted(known)) or "none yet (start the host once)"
        fail(f"no queue {queue!r} in {opened.display}; queues: {names}", 1)


def _text(option: str, value: str) -> str:
    """``value``, if it is text; else a usage error naming ``option``. Bytes of the command
    line that are not UTF-8 reach Python as lone surrogates, which nothing can store."""
    try:
        value.encode()
    except UnicodeEncodeError:
        try:
            shown = repr(os.fsencode(value))  # the bytes as they were given
        except UnicodeEncodeError:
            shown = repr(value)
        usage(f"{option} {shown} is not UTF-8 text; pass it in UTF-8")
    return value


#: The queues of a timer and of a subscriber are named for the function: timer:NAME.
_OWN_QUEUES = ("timer:", "event:")


def _name(kind: str, name: str) -> None:
    """A usage error unless ``name`` is one the store can hold a ``kind`` (queue, topic)
    under: else 'a b' is said to be a queue or topic not there, as if mistyped."""
    from hibana.names import NAME_RULE, name_problem

    own = kind == "queue" and name.startswith(_OWN_QUEUES)
    problem = name_problem(name.split(":", 1)[1] if own else name)
    if problem is not None:
        rule = NAME_RULE + (
            " (a timer's queue is timer:FUNCTION; a subscriber's, event:FUNCTION)"
            if kind == "queue"
            else ""
        )
        usage(f"{kind} name {name!r}: use {rule}; {problem}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value; pass a number, or null")


def _finite(number: str) -> float:
    value = float(number)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{number} is too large for a JSON number (at most about 1.8e308)")
    return value


#: Bytes of a document read from @FILE or @- at most: 16 times what a message holds, room
#: for any indentation, while /dev/zero or `yes |` is not read until memory runs out.
MAX_DOCUMENT_BYTES = 16 * 256 * 1024


def _read_document(option: str, source: str) -> str:
    """What ``option @FILE`` (or ``@-``, standard input) names: a document too large for
    the command line (an argument holds 128 KiB at most on Linux)."""
    if source == "-" and sys.stdin is None:  # started with fd 0 closed (`<&-`)
        usage(f"{option} @-: standard input is closed; pipe the document in, or pass @FILE")
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
        else:
            with Path(source).open("rb") as f:
                raw = f.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            usage(
                f"{option} @{source} holds more than {MAX_DOCUMENT_BYTES} bytes; a message "
                "holds 256 KiB of JSON at most"
            )
        return raw.decode()
    except OSError as exc:
        usage(f"{option} @{source}: cannot read it: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        usage(f"{option} @{source} is not UTF-8 text: {exc}")


def _json_option(option: str, text: str) -> Any:
    """The JSON document ``text`` holds; a usage error naming ``option`` unless it is one
    that any JSON reader reads back as sent: Python's own reader takes NaN and Infinity,
    and lone surrogates (``"\\ud800"``), which become null and an encoding error later."""
    import json

    if text.startswith("@"):
        text = _read_document(option, text[1:])
    _text(option, text)
    try:
        document = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:
        usage(f"{option} is not JSON: {exc}")
    except RecursionError:
        usage(f"{option} nests too deeply to read (about 1000 levels at most); flatten it")
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending += [*item, *item.values()]
        elif isinstance(item, list):
            pending += item
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError as exc:
                bad = item[exc.start : exc.end]
                usage(
                    f"{option} holds {item!r}, a string with a lone surrogate ({bad!r}: half "
                    "of a UTF-16 pair, not a character); escape both halves "
                    '("\\ud83d\\ude00") or write the character itself'
                )
    return document


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    from hibana.errors import HibanaError

    try:
        return asyncio.run(coro)
    except HibanaError as exc:
        fail(str(exc), 1)


@queue_cli.command("send")
def queue_send(
    queue: Annotated[str, typer.Argument(metavar="QUEUE", help="The queue to send to.")],
    data: Annotated[
        str,
        typer.Option(
            "--data", help="The message: a JSON document, or @FILE, or @- to read standard input."
        ),
    ],
    delay: Annotated[
        float, typer.Option(help="Seconds before it is delivered: 0 to 31536000 (365 days).")
    ] = 0.0,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="The same key twice within 24 h is one message (default: none)."),
    ] = None,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Put a message on a queue of the app."""
    from hibana.context import checked_delay, checked_key
    from hibana.errors import QueueError
    from hibana.messages import encode_json
    from hibana.store.base import NewMessage
    from hibana.triggers.outbox import MAX_PAYLOAD_BYTES

    _name("queue", _text("QUEUE", queue))
    payload = _json_option("--data", data)
    try:
        # as typed: 31536001, not 3.1536e+07
        checked_delay(delay, f"--delay {delay:.15g}")
    except QueueError as exc:
        usage(str(exc))
    if idempotency_key is not None:
        _text("--idempotency-key", idempotency_key)
        try:
            checked_key(
                idempotency_key,
                f"--idempotency-key {idempotency_key!r}",
                "leave --idempotency-key out",
            )
        except QueueError as exc:
            usage(str(exc))
    body = encode_json(payload, f"the message for queue {queue!r}")
    if len(body) > MAX_PAYLOAD_BYTES:
        usage(f"--data is {len(body)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    if queue.startswith("timer:"):
        usage(
            f"{queue!r} is a timer's own queue: its schedule sends to it, nothing else may; "
            "to run the timer function now, give it run_on_startup=True, or call its code "
            "from a function of your own"
        )
    if queue.startswith("event:"):
        # what its subscriber is given is a CloudEvent: anything else would be a dead letter
        # at once, unrun
        from hibana.events.cloudevent import EventError, from_structured

        try:
            from_structured(payload, where="--data")
        except EventError as exc:
            usage(
                f"{queue!r} takes CloudEvents, and {exc.message}; publish with `hibana events "
                "publish`, or send a whole event to replay it to this subscriber"
            )
    with _opened_store(app, store) as opened:
        declared = [q.name for q in _run(opened.declared())]
        if queue not in declared:
            known = ", ".join(declared) if declared else "none yet (start the host once)"
            fail(
                f"no function consumes the queue {queue!r} in {opened.display}; declared "
                f"queues: {known}",
                1,
            )
        sent = _run(opened.enqueue(NewMessage(queue, body, delay, idempotency_key)))
    if sent.duplicate:
        print(f"Duplicate: message {sent.id} already has idempotency key {idempotency_key!r}")
    else:
        print(f"Sent message {sent.id} to {queue}")


@queue_cli.command("stats")
def queue_stats(
    app: AppOpt = Path("."),
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Depth, delayed, in flight, oldest age and dead letters of every queue."""
    import dataclasses
    import json

    with _opened_store(app, store) as opened:
        stats = _run(opened.stats())
    if as_json:
        print(json.dumps([dataclasses.asdict(s) for s in stats], indent=2))
        return
    shown = queues_table([dataclasses.asdict(s) for s in stats])
    new_console().print(shown if stats else f"no queues in {opened.display}")


@queue_cli.command("dlq")
def queue_dlq(
    queue: Annotated[
        str, typer.Argument(metavar="QUEUE", help="The queue whose dead letters to list.")
    ],
    limit: Annotated[int, typer.Option(min=1, max=MAX_ID, help="List at most this many.")] = 100,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List a queue's dead letters: id, attempts, last error, payload."""
    import json
    import time

    _name("queue", _text("QUEUE", queue))
    with _opened_store(app, store) as opened:
        dead = _run(opened.dead_letters(queue, limit))
        if not dead:
            _check_queue(opened, queue)
    if as_json:
        print(json.dumps([_dead_letter(d) for d in dead], indent=2))
        return
    table = new_table("id", "attempts", "died", "last error", "data")
    for d in dead:
        died = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.died_at))
        last = d.errors[-1]["error"] if d.errors else "-"
        text = d.body.decode(errors="replace")
        table.add_row(str(d.id), str(d.attempts), died, last, text[:60])
    new_console().print(table if dead else f"no dead letters in {queue}")


def _dead_letter(d: DeadLetter) -> dict[str, Any]:
    """A dead letter for ``queue dlq --json``: its payload as ``data``, or, for a body that
    is no JSON (code may write any bytes through ``hibana.store``), as ``body_base64``."""
    import base64
    import json

    shown: dict[str, Any] = {"id": d.id, "queue": d.queue}
    try:
        shown["data"] = json.loads(d.body, parse_constant=_no_constant)
    except ValueError:  # not UTF-8 either, or NaN: what any JSON reader would refuse
        shown["body_base64"] = base64.b64encode(d.body).decode()
    return {
        **shown,
        "attempts": d.attempts,
        "errors": d.errors,
        "enqueued_at": d.enqueued_at,
        "died_at": d.died_at,
    }


@queue_cli.command("redrive")
def queue_redrive(
    queue: Annotated[
        str, typer.Argument(metavar="QUEUE", help="The queue whose dead letters to move back.")
    ],
    ids: Annotated[
        list[int] | None,
        typer.Option(
            "--id",
            min=1,
            max=MAX_ID,
            help="Only this dead letter (repeatable; default: every one of QUEUE).",
        ),
    ] = None,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Move dead letters back into their queue, with their attempts reset."""
    _name("queue", _text("QUEUE", queue))
    if ids:
        ids = list(dict.fromkeys(ids))  # an id given twice is one message
    with _opened_store(app, store) as opened:
        moved = _run(opened.redrive(queue, ids or None))
        if not moved:
            _check_queue(opened, queue)
    if ids and moved < len(ids):
        print(
            f"Moved {moved} of {len(ids)} message(s) back to {queue}; the rest are not "
            "dead letters of that queue"
        )
        raise typer.Exit(1)
    print(f"Moved {moved} message(s) back to {queue}")


events_cli = Commands(help="Publish CloudEvents to the app's topics.", no_args_is_help=True)


@events_cli.command("publish")
def events_publish(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="The topic to publish to.")],
    type_: Annotated[str, typer.Option("--type", help="The event's type attribute.")],
    source: Annotated[str, typer.Option(help="The event's source attribute.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="The event's data: JSON, or @FILE, or @- for standard input (default: none).",
        ),
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="The event's subject (default: none).")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="The event's id (default: a new one).")
    ] = None,
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Publish one CloudEvent to every subscription of TOPIC whose filter matches."""
    import json

    from hibana.events.cloudevent import EventError, new_event
    from hibana.events.filters import Filter
    from hibana.telemetry.trace import continue_or_start
    from hibana.triggers.outbox import DEDUPE_WINDOW, MAX_PAYLOAD_BYTES, event_key, fan_out

    for option, value in [
        ("TOPIC", topic),
        ("--type", type_),
        ("--source", source),
        ("--subject", subject),
        ("--id", event_id),
    ]:
        if value is not None:
            _text(option, value)
    _name("topic", topic)
    for option, value, left_out in [
        ("--subject", subject, "for an event with no subject"),
        ("--id", event_id, "for a new id"),
    ]:
        if value == "":  # the library's message names None, which no command line passes
            usage(f"{option} '' is empty: leave {option} out {left_out}")
    payload = None if data is None else _json_option("--data", data)
    try:
        event = new_event(type=type_, source=source, data=payload, subject=subject, id=event_id)
    except EventError as exc:
        usage(exc.message)
    # one trace for every subscriber's invocation, as ctx.publish gives them
    trace = continue_or_start(None)
    event.extensions["traceparent"] = trace.traceparent
    body = event.to_json()
    if len(body) > MAX_PAYLOAD_BYTES:
        usage(f"the event is {len(body)} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    with _opened_store(app, store) as opened:
        subs = _run(opened.subscriptions())
        topics = sorted({s.topic for s in subs})
        if topic not in topics:
            known = ", ".join(topics) if topics else "none yet (start the host once)"
            fail(f"no subscription to topic {topic!r} in {opened.display}; topics: {known}", 1)
        routes = [
            (s.topic, s.queue, None if s.filter is None else Filter.from_dict(json.loads(s.filter)))
            for s in subs
        ]
        deliveries = fan_out(topic, event, body, routes)
        fresh = _run(opened.publish(topic, event_key(event), deliveries, DEDUPE_WINDOW))
    if not fresh:
        print(f"Duplicate: event {event.id!r} from {event.source!r} was published already")
    else:
        print(
            f"Published event {event.id} to {len(deliveries)} subscription(s) of {topic} "
            f"(trace {trace.trace_id})"
        )


secrets_cli = Commands(
    help="Secrets for functions: encrypted in the store, never in environment variables.",
    no_args_is_help=True,
)


@secrets_cli.command("set")
def secrets_set(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The secret's name, as functions name it.")
    ],
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Set a secret. The value comes from stdin (piped) or a hidden prompt, never from the
    command line, which shell history and `ps` would show."""
    from hibana.secrets import SecretError, check_name, load_key, seal

    try:
        check_name(name)
    except SecretError as exc:
        usage(str(exc))
    if sys.stdin is None:  # started with fd 0 closed (`<&-`)
        fail(
            f"no value for {name}: standard input is closed; pipe the value in, or run the "
            "command in a terminal to be asked for it. Nothing was set",
            1,
        )
    # the store and the key first: a value typed (twice) for a store that cannot be
    # opened would be typed in vain
    with _opened_store(app, store, create=True) as opened:
        try:
            key = load_key(create=True)
        except SecretError as exc:
            fail(str(exc), 1)
        value = _secret_value(name)
        try:
            sealed = seal(key, name, value)
        except SecretError as exc:
            fail(str(exc), 1)
        _run(opened.put_secret(name, sealed))
    print(f"Set secret {name} in {opened.display}")


def _secret_value(name: str) -> str:
    """The value of secret ``name``: from a hidden prompt (twice) on a terminal, else from
    standard input; exit 1 naming what is wrong with it."""
    import getpass

    from hibana.secrets import MAX_VALUE_BYTES

    if sys.stdin.isatty():
        value = getpass.getpass(f"Value of {name}: ")
        if getpass.getpass("Again, to confirm: ") != value:
            fail("the two values differ; nothing was set", 1)
    else:
        # past the limit, and a line end, is enough to refuse: `yes |` never ends
        raw = sys.stdin.buffer.read(MAX_VALUE_BYTES + 3)
        if len(raw) > MAX_VALUE_BYTES + 2:
            fail(
                f"the value of {name} on stdin is over {MAX_VALUE_BYTES} bytes (64 KiB); keep "
                "a large file elsewhere, and the key that opens it as the secret. Nothing "
                "was set",
                1,
            )
        try:
            value = raw.decode().removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as exc:
            fail(
                f"the value of {name} on stdin is not UTF-8 text (byte {exc.start}); a secret "
                "is text: base64-encode a binary value first. Nothing was set",
                1,
            )
    if not value:
        fail(f"no value for {name} on stdin; nothing was set", 1)
    return value


@secrets_cli.command("list")
def secrets_list(app: AppOpt = Path("."), store: StoreOpt = None) -> None:
    """The names of the secrets in the store (never their values)."""
    with _opened_store(app, store) as opened:
        names = sorted(_run(opened.secrets()))
    print("\n".join(names) if names else f"no secrets in {opened.display}")


@secrets_cli.command("rm")
def secrets_rm(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The secret to delete.")],
    app: AppOpt = Path("."),
    store: StoreOpt = None,
) -> None:
    """Delete a secret."""
    from hibana.secrets import SecretError, check_name

    _text("NAME", name)
    try:
        check_name(name)  # else 'a b' is said to be no secret, as if mistyped
    except SecretError as exc:
        usage(str(exc))
    with _opened_store(app, store) as opened:
        removed = _run(opened.delete_secret(name))
    if not removed:
        fail(f"no secret {name!r} in {opened.display}", 1)
    print(f"Deleted secret {name}")
