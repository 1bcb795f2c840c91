"""Webhook signatures as each provider documents them. Each check raises ``Rejected`` with
the reason (logged, and answered with 401); comparisons are constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac

#: Slack and Standard Webhooks refuse requests signed longer ago than this (replay).
TOLERANCE = 300.0
#: Digits of a timestamp past any clock's now (the year 33658): read no further.
_DIGITS = 12


class Rejected(Exception):
    """A delivery refused: 401 for its signature or timestamp, 400 for its content."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def github(secret: str, body: bytes, header: str | None) -> None:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``."""
    if not header:
        raise Rejected("X-Hub-Signature-256 is missing")
    scheme, _, given = header.partition("=")
    if scheme != "sha256" or not given:
        raise Rejected("X-Hub-Signature-256 is not of the form sha256=<hex>")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not _same(expected, given.strip().lower()):
        raise Rejected("X-Hub-Signature-256 does not match the body")


def slack(secret: str, body: bytes, timestamp: str | None, header: str | None, now: float) -> None:
    """``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">``, with
    ``X-Slack-Request-Timestamp`` within five minutes of now."""
    if not timestamp or not header:
        raise Rejected("X-Slack-Request-Timestamp or X-Slack-Signature is missing")
    _fresh(timestamp, now, "X-Slack-Request-Timestamp")
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not _same(expected, header.strip()):
        raise Rejected("X-Slack-Signature does not match the body")


def standard(
    secret: str,
    body: bytes,
    msg_id: str | None,
    timestamp: str | None,
    header: str | None,
    now: float,
) -> None:
    """Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256 of
    "{id}.{timestamp}.{body}">`` (several, space-separated), keyed with the base64 secret
    after ``whsec_``."""
    if not msg_id or not timestamp or not header:
        raise Rejected("webhook-id, webhook-timestamp or webhook-signature is missing")
    _fresh(timestamp, now, "webhook-timestamp")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise Rejected("the secret is not a Standard Webhooks secret (whsec_<base64>)") from None
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in header.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and _same(expected, value):
            return
    raise Rejected("webhook-signature has no v1 signature that matches the body")


def _same(expected: str, given: str) -> bool:
    """Constant-time equality of a signature and what the request gave, whatever that
    holds (``compare_digest`` refuses a str with characters outside ASCII)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def _fresh(timestamp: str, now: float, header: str) -> None:
    """``timestamp`` is whole seconds since the epoch (as Slack and Standard Webhooks
    send it), within ``TOLERANCE`` of ``now``."""
    stripped = timestamp.strip()
    if not stripped.isascii() or not stripped.isdigit():
        raise Rejected(f"{header} is not a whole number of seconds since the epoch")
    digits = stripped.lstrip("0")
    if len(digits) > _DIGITS:
        # no clock is near it; as a float (for ``now - ``) it would overflow past 308
        # digits, and int() refuses a string of more than 4300
        raise Rejected(
            f"{header} is {len(digits)} digits long, far ahead of this host's clock, more "
            f"than {TOLERANCE:.0f}s from now: a replay?"
        )
    age = now - int(digits or "0")
    if abs(age) > TOLERANCE:
        when = f"{age:.0f}s ago" if age > 0 else f"{-age:.0f}s ahead of this host's clock"
        raise Rejected(f"{header} is {when}, more than {TOLERANCE:.0f}s from now: a replay?")
