"""The PostgreSQL store's URL: what is libpq's (checked as libpq would read it, before any
connection is tried), what is hibana's (``?schema=NAME``, ``?operation_timeout=SECONDS``,
``?lease_grace=SECONDS``),
and how errors show it (its password hidden)."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from hibana.errors import StoreError

#: Seconds a store operation may wait on PostgreSQL before the engine cuts its connection
#: and fails it: a server that stops answering with no reset (a partition, a proxy that
#: holds the bytes) held it until tcp_user_timeout (60 s), or for ever. The URL's
#: ``?operation_timeout=SECONDS`` sets another bound.
OPERATION_TIMEOUT = 30.0

#: Seconds after PostgreSQL comes back (it started, or a lost connection was made again) in
#: which claims take no message whose lease ran out: its owner, cut off too, may hold its
#: settlement and write it once it reconnects. The URL's ``?lease_grace=SECONDS`` sets
#: another (longer where hosts may take longer to reach a server that is back).
LEASE_GRACE = 10.0

#: The URL's parameters that are hibana's, not libpq's.
_OWN = ("schema", "operation_timeout", "lease_grace")
#: The longest name PostgreSQL keeps whole, in bytes (NAMEDATALEN - 1).
NAME_BYTES = 63


def split_url(url: str) -> tuple[str, str | None, float, float]:
    """(the libpq URL, hibana's schema, the operation timeout, the lease grace) from
    ``postgresql://...?schema=NAME&operation_timeout=SECONDS&lease_grace=SECONDS``."""
    parts = _parsed(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    timeout = next((v for k, v in query if k == "operation_timeout"), None)
    grace = next((v for k, v in query if k == "lease_grace"), None)
    # quote, not quote_plus: libpq reads no "+" as a space (options=-c%20statement_timeout)
    rest = urlencode([(k, v) for k, v in query if k not in _OWN], quote_via=quote)
    if schema is not None and not schema.replace("_", "").isalnum():
        raise StoreError(
            f"schema={schema!r} in the store URL must be letters, digits and underscores"
        )
    if schema is not None and len(schema.encode()) > NAME_BYTES:
        # PostgreSQL cuts a longer name to its first 63 bytes: two such schemas would be one
        raise StoreError(
            f"schema={schema!r} in the store URL is {len(schema.encode())} bytes, and "
            f"PostgreSQL keeps a name's first {NAME_BYTES} only; name one of at most "
            f"{NAME_BYTES} bytes"
        )
    libpq_url = urlunsplit(parts._replace(query=rest))
    _check_libpq(libpq_url, url)
    return (
        libpq_url,
        schema,
        _seconds("operation_timeout", timeout, OPERATION_TIMEOUT),
        _seconds("lease_grace", grace, LEASE_GRACE),
    )


_FIX = "fix the URL given to --store (or $HIBANA_STORE): postgresql://USER@HOST:PORT/DATABASE"


def _parsed(url: str) -> SplitResult:
    """``url``'s parts; StoreError if it is not a URL at all (an unclosed ``[``)."""
    try:
        parts = urlsplit(url)
        redacted(url)  # what later errors show of the URL
    except ValueError as exc:
        raise StoreError(f"the store URL is malformed ({exc}); {_FIX}") from None
    return parts


def _check_libpq(libpq_url: str, url: str) -> None:
    """StoreError naming what libpq would not read in ``libpq_url`` (``url`` without
    hibana's parameters): else each connection fails as if the server were not there."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(libpq_url)
    except ProgrammingError as exc:
        # libpq's message quotes the whole URL, password included: cut at the quote
        said = str(exc).strip().split(" in URI: ")[0]
        raise StoreError(f"the store URL {redacted(url)} is malformed: {said}; {_FIX}") from None
    for name, value in params.items():
        takes = _takes(name, str(value))
        if takes:
            raise StoreError(
                f"the store URL {redacted(url)} has {name}={value!r}; {name} takes {takes}; {_FIX}"
            )
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise StoreError(
                f"the store URL {redacted(url)} has port {port!r}, not a number in 1..65535; {_FIX}"
            )


#: libpq's parameters that take one of a few words (as written: only the TLS versions'
#: case may differ), and those words. libpq reads them only as it connects, and
#: a word it does not know failed every connection as if the server were not there.
_CHOICES: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "sslcertmode": ("disable", "allow", "require"),
    "sslnegotiation": ("postgres", "direct"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
}
_TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
#: libpq's parameters that take a whole number.
_WHOLE = (
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


def _takes(name: str, value: str) -> str | None:
    """What libpq's parameter ``name`` takes, if ``value`` is not one of those; else None."""
    if name in _CHOICES:
        return None if value in _CHOICES[name] else "one of " + ", ".join(_CHOICES[name])
    if name in ("ssl_min_protocol_version", "ssl_max_protocol_version"):
        known = {v.lower() for v in _TLS_VERSIONS}
        return None if value.lower() in known | {""} else "one of " + ", ".join(_TLS_VERSIONS)
    if name in _WHOLE:
        return None if re.fullmatch(r"\s*[-+]?\d+\s*", value) else "a whole number"
    if name == "connect_timeout":
        try:
            float(value)
        except ValueError:
            return "a number of seconds"
    return None


def _seconds(name: str, text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise StoreError(
            f"{name}={text!r} in the store URL must be a number of seconds "
            f"over 0 (the default is {default:g})"
        )
    return value


def redacted(url: str) -> str:
    """``url`` with its password as ``***``: in the user part, or a ``password=``
    parameter (libpq takes both)."""
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "password" for k, _ in query):
        hidden = [(k, "***" if k == "password" else v) for k, v in query]
        parts = parts._replace(query=urlencode(hidden, safe="*", quote_via=quote))
    return urlunsplit(parts)
