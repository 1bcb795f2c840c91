"""The standard ``logging`` module's records as the worker's JSON lines, with the fields
of the invocation that logged them, beside the handlers the app configured itself.

Under the host stdout is JSON lines, so a handler the app gave a logger that writes to the
process's stdout or stderr (what ``basicConfig()`` makes, a dictConfig's
``logging.StreamHandler``) is replaced by hibana's JSON handler, keeping its level and
filters; every other handler (a file, syslog, an error tracker's) is left as configured.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import queue
import threading
from collections.abc import Iterator
from typing import Any

from hibana.telemetry.log_fields import (
    MAY_HOLD_BYTES,
    OWN_FIELDS,
    Level,
    bytes_as_text,
    error_fields,
    error_text,
    timestamp,
)
from hibana.telemetry.log_sink import LogSink
from hibana.telemetry.logs import current_logger


class JsonLogHandler(logging.Handler):
    """Writes each record as a JSON line of ``sink``: its level, message and logger, the
    process's ``fields`` (a worker's slot, the zygote's pid), the fields of the invocation
    that logged it, and ``extra={...}``."""

    def __init__(self, sink: LogSink, fields: dict[str, Any], level: int) -> None:
        super().__init__(level)
        self.sink = sink
        self.fields = fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._emit(record)
        except Exception:  # as logging's own handlers: never the caller's exception
            self.handleError(record)

    def _emit(self, record: logging.LogRecord) -> None:
        line: dict[str, Any] = {
            "ts": timestamp(),
            "level": record.levelname.lower(),
            "msg": _message(record),
            "logger": record.name,
            **self.fields,
        }
        bound = current_logger.get()
        if bound is not None:  # logged by a function: its invocation's fields too
            line.update(bound.fields)
        if record.exc_info and record.exc_info[1] is not None:
            line.update(error_fields(record.exc_info[1]))  # log.exception(...)
        if record.stack_info:  # stack_info=True: where the call was made from
            line["stack"] = record.stack_info
        held = False  # an extra= field holds bytes
        for key, value in record.__dict__.items():  # what extra={...} added
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                # one named like the line's own (``error``, ``ts``, ``outcome``), or like
                # one renamed so, is kept under a name no other field has, as ctx.log
                # keeps it
                while key in line or key in OWN_FIELDS:
                    key += "_"
                line[key] = value
                if type(value) in MAY_HOLD_BYTES:
                    held = True
        if held:
            bytes_as_text(line)  # as ctx.log writes them: text, a secret in them redacted
        self.sink.emit(line)


def _message(record: logging.LogRecord) -> str:
    """The record's message; one whose arguments do not fit its format (``log.info("%s
    %s", 1)``) is logged as given, with why, as ``logging`` never fails its caller."""
    try:
        return record.getMessage()
    except Exception as exc:
        failed = error_text(exc)
    try:
        msg = str(record.msg)
    except Exception:  # logging.info(obj) whose __str__ raises, as ctx.log.info(obj) tells it
        return f"<{type(record.msg).__name__} whose str raised> ({failed})"
    try:
        args = repr(record.args)
    except Exception:
        args = f"<{type(record.args).__name__} whose repr raised>"
    return f"{msg} (its arguments {args} did not format: {failed})"


#: A LogRecord's own attributes; any other was added by ``extra=`` and is a field.
_RECORD_ATTRIBUTES = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime"]
)


def route_logging(sink: LogSink, worker: int, level: Level) -> None:
    """Write ``logging``'s records as JSON lines of ``sink``, none below ``level``
    (``--log-level``), and keep what the app configured as it was imported:

    - the root logger gets the JSON handler; the root's level is the app's, but for
      WARNING, the default (which ``basicConfig()`` leaves), which becomes ``level``: a
      function's ``logging.info`` is written;
    - a handler to stdout or stderr is replaced by a JSON handler with its level and
      filters, on a logger whose records do not reach the root's handlers
      (``propagate = False``); on one whose records do, it is removed: the root's writes
      the line, once;
    - the ``hibana`` logger's level is ``level`` unless the app set one."""
    floor = _floor(level)
    fields = {"worker": worker}
    root = logging.getLogger()
    loggers = [root, *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if not isinstance(logger, logging.Logger) or not logger.handlers:
            continue  # a PlaceHolder: a name only the dots of others' names made
        console = [h for h in logger.handlers if _to_console(h)]
        if not console:
            continue
        kept = [h for h in logger.handlers if h not in console]
        if logger is root or not _reaches_root(logger):
            first = console[0]
            json_handler = JsonLogHandler(sink, fields, max(first.level, floor))
            json_handler.filters = list(first.filters)
            kept.insert(logger.handlers.index(first), json_handler)
        logger.handlers = kept
    if not any(isinstance(h, JsonLogHandler) for h in root.handlers):
        root.addHandler(JsonLogHandler(sink, fields, floor))
    if root.level == logging.WARNING:
        root.setLevel(floor)
    own = logging.getLogger("hibana")
    if own.level == logging.NOTSET:
        own.setLevel(floor)


@contextlib.contextmanager
def import_logging(fd: int, level: Level, fields: dict[str, Any]) -> Iterator[None]:
    """While the app is imported (its module-level code runs), what it logs is JSON lines
    on ``fd`` with ``fields``, as the workers' records are: the handlers the import makes
    exist only once it has ended, when ``route_logging`` replaces those to stdout or
    stderr (in each worker), so meanwhile a record such a handler takes (``basicConfig()``'s)
    is written by a JSON handler in its place, and so is one no handler takes (Python's
    last resort writes it to stderr). The root logger's level is as ``route_logging``
    leaves it, WARNING becoming ``level``; all else the app configures is left as made."""
    floor = _floor(level)
    sink = LogSink(fd, level)
    as_json = JsonLogHandler(sink, fields, floor)
    stream_emit = logging.StreamHandler.emit

    def emit(handler: logging.StreamHandler[Any], record: logging.LogRecord) -> None:
        if not _to_console(handler):
            stream_emit(handler, record)
        elif record.levelno >= floor:
            as_json.emit(record)

    root = logging.getLogger()
    if root.level == logging.WARNING:
        root.setLevel(floor)
    last_resort, logging.lastResort = logging.lastResort, as_json
    # the class's, as the handlers the import makes are not there yet to be given one
    setattr(logging.StreamHandler, "emit", emit)  # noqa: B010
    try:
        yield
    finally:
        setattr(logging.StreamHandler, "emit", stream_emit)  # noqa: B010
        logging.lastResort = last_resort


def running_listeners() -> list[logging.handlers.QueueListener]:
    """The ``QueueListener``s whose thread runs in this process (the app started them as
    it was imported): a process forked from it has them, but not their threads."""
    found = []
    for thread in threading.enumerate():
        owner = getattr(getattr(thread, "_target", None), "__self__", None)
        if isinstance(owner, logging.handlers.QueueListener):
            found.append(owner)
    return found


def restart_listeners(listeners: list[logging.handlers.QueueListener]) -> None:
    """In a process forked from the one ``listeners`` ran in: start each again, whose
    thread did not come along (a record its ``QueueHandler`` took would wait in the queue
    for ever, unhandled), but one the app has stopped, or started again itself (in an
    ``os.register_at_fork`` hook)."""
    for listener in listeners:
        thread = listener._thread
        if thread is None or thread.is_alive():
            continue
        # the old thread waits in the queue's get() here too, as far as the queue knows: a
        # queue.Queue would wake it, not the new one, for the next record; woken now, it
        # is forgotten. Its lock is free unless the fork came while the old thread held it
        ready = getattr(listener.queue, "not_empty", None)
        if isinstance(ready, threading.Condition):
            if not ready.acquire(timeout=0.1):
                continue  # held by a thread that is gone: nobody can use the queue
            ready.notify_all()
            ready.release()
        listener._thread = None
        listener.start()


def stop_listeners() -> None:
    """Stop each ``QueueListener`` running in this process whose queue is this process's
    own (a ``queue.Queue``), once it has handled what the queue holds: a process that
    exits would lose those records. One on a queue shared with other processes (a
    ``multiprocessing`` queue) is left running: the sentinel that stops it could stop
    another process's listener instead."""
    for listener in running_listeners():
        if isinstance(listener.queue, queue.Queue | queue.SimpleQueue):
            listener.stop()


def _floor(level: Level) -> int:
    """``level`` (``--log-level``) as ``logging``'s number."""
    return logging.getLevelNamesMapping()[level.upper()]


def _to_console(handler: logging.Handler) -> bool:
    """``handler`` writes to this process's stdout or stderr (fd 1 or 2)."""
    if not isinstance(handler, logging.StreamHandler):
        return False
    try:
        return handler.stream.fileno() in (1, 2)
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor, or closed
        return False


def _reaches_root(logger: logging.Logger) -> bool:
    """A record of ``logger``'s goes on to the root logger's handlers."""
    at = logger
    while at.propagate and at.parent is not None:
        at = at.parent
    return at.parent is None  # the root: it has none
