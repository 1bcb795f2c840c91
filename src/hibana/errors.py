"""hibana's exceptions.

One tree, one base::

    HibanaError                 anything hibana raises on purpose
    ├── AppError                the user's app is wrong (a route, a decorator use, an import)
    │   ├── RouteError          a route pattern that does not parse, or that clashes with another
    │   └── AppLoadError        the app file is missing, does not import, or defines no App
    ├── ConfigError             a setting (CLI flag, App option) that is out of range
    ├── StoreError              the store cannot be opened or used (its URL, its schema)
    ├── QueueError              an enqueue names an unknown queue or carries too large a payload
    ├── BadMessage              (a msgspec.DecodeError too) msg.data of a body that is no JSON
    └── HTTPError               raise in a function to answer with a status and a message
        ├── BadRequest          400: the request body or a parameter is malformed
        │   └── MissingField    (a KeyError too) req.query["page"] of a key not sent
        └── FailedWith          (internal) the function failed; an adapter's own error page

Control signals that user code must not swallow derive from BaseException, like
``asyncio.CancelledError`` does: see ``Cancelled``.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from hibana.responses import HeadersArg, Response, check_status, header_list

_encode_json = msgspec.json.encode

#: The 503's error once the host has begun to stop: for a new request, for one still
#: waiting for a max_concurrency permit (neither has run), and for one waiting on the
#: socket when the last worker has gone.
SHUTTING_DOWN = "this host is shutting down; retry the request"


class HibanaError(Exception):
    """Base of every error hibana raises on purpose."""


class AppError(HibanaError):
    """The user's app is wrong; the message names the file, the line and the fix."""


class RouteError(AppError):
    """A route pattern does not parse, or clashes with another function's route."""


class AppLoadError(AppError):
    """The app file is missing, fails to import, or defines no ``hibana.App``."""


class ConfigError(HibanaError):
    """A setting is out of range; the message names the setting and what it accepts."""


class StoreError(HibanaError):
    """The store cannot be opened or used; the message names the store and the fix."""


class QueueError(HibanaError):
    """An enqueue that cannot be accepted (unknown queue, payload over the limit);
    nothing was written."""


class BadMessage(HibanaError, msgspec.DecodeError):
    """``msg.data`` of a queue message whose body is not JSON (another program wrote it
    through ``hibana.store``): no attempt can change its body, so a function that lets it
    out makes the message a dead letter at once, not after ``max_attempts``."""

    def __init__(self, message_id: int, queue: str, detail: str) -> None:
        self.message_id = message_id
        self.queue = queue
        super().__init__(detail)


class HTTPError(HibanaError):
    """Raise from a function to answer with ``status`` and a JSON body naming ``detail``."""

    def __init__(self, status: int, detail: str = "", headers: HeadersArg = None):
        check_status(status)
        if status < 400:
            raise ValueError(
                f"HTTPError({status}) answers with an error body; an error status is 400 to "
                "599 (return a hibana.Response for any other)"
            )
        # detail and headers are checked here, where the function raises it: the answer
        # is made once the function has ended, where a detail JSON cannot carry (an
        # exception, ``BadRequest(exc)``) or a header that is no header failed the host's
        # front (a 500 without the invocation's id, and no invocation line)
        try:
            _encode_json(detail)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            fix = "str(exc)" if isinstance(detail, BaseException) else "a str, or JSON data"
            raise TypeError(
                f"HTTPError detail {detail!r} cannot be sent as JSON "
                f"({type(exc).__name__}: {exc}); give {fix}"
            ) from None
        super().__init__(detail or str(status))
        self.status = status
        self.detail = detail
        pairs = header_list(headers)
        self.headers: Mapping[str, str] | list[tuple[str, str]] = (
            headers or {} if headers is None or isinstance(headers, Mapping) else pairs
        )


def is_client_error(exc: BaseException | None) -> bool:
    """``exc`` is an HTTPError answering a client error (4xx): the client's fault, not a
    failure of the function that raised it (not counted as one)."""
    status = getattr(exc, "status", None) if isinstance(exc, HTTPError) else None
    return isinstance(status, int) and status < 500


class BadRequest(HTTPError):
    """400: the request is malformed (a body that is not JSON, say)."""

    def __init__(self, detail: str):
        super().__init__(400, detail)


class MissingField(BadRequest, KeyError):
    """400: ``req.query["page"]``, ``req.headers[...]``, ``req.form()[...]`` or
    ``req.files()[...]`` of a key the client did not send. A KeyError too, so code that
    catches one for a key it does without goes on working. Not exported."""

    def __init__(self, detail: str, key: object) -> None:
        super().__init__(detail)
        self.key = key

    __str__ = Exception.__str__  # the detail, not KeyError's repr of it


class FailedWith(HTTPError):
    """The function failed, and its client gets ``response``: the page the platform an
    adapter stands in for answers with (API Gateway's 502 for a result it cannot read).
    ``why`` is the invocation line's ``error``. Not exported: adapters raise it, the HTTP
    trigger answers it."""

    def __init__(self, response: Response, why: str):
        super().__init__(response.status, why)
        self.response = response


class Cancelled(BaseException):
    """Raised by ``Context.raise_if_cancelled()``: the invocation's deadline passed or the
    worker is shutting down. Derives from BaseException so ``except Exception`` does not eat it."""
