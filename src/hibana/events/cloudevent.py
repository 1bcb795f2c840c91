"""CloudEvents 1.0: the event type, and reading events from HTTP in binary, structured and
batch mode. Errors name the attribute or the part of the request that is wrong."""

from __future__ import annotations

import base64
import codecs
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from hibana.errors import HibanaError
from hibana.messages import encode_json

REQUIRED = ("id", "source", "specversion", "type")
#: Context attributes of the spec; anything else is an extension.
KNOWN = frozenset({*REQUIRED, "subject", "time", "datacontenttype", "dataschema"})
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

_decode = msgspec.json.decode
_encode = msgspec.json.encode


class EventError(HibanaError):
    """An event that cannot be accepted; ``status`` is the HTTP answer (400, 403, 404,
    413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class CloudEvent:
    """One CloudEvent. ``data`` is decoded JSON when the content type is JSON (or, sent in
    binary mode with none, when it decodes as JSON), ``str`` for text, ``bytes`` otherwise;
    ``extensions`` holds the other attributes (``traceparent``...)."""

    id: str
    source: str
    type: str
    specversion: str = "1.0"
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None
    extensions: dict[str, str] = field(default_factory=dict)

    def get(self, attribute: str) -> str | None:
        """Any context attribute by name, extensions included (what filters match on)."""
        if attribute in KNOWN:
            value = getattr(self, attribute)
            return None if value is None else str(value)
        return self.extensions.get(attribute)

    @property
    def traceparent(self) -> str | None:
        return self.extensions.get("traceparent")

    def to_json(self) -> bytes:
        """Structured-mode JSON (what the store keeps and a subscriber receives)."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        for name in ("subject", "time", "datacontenttype", "dataschema"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extensions)
        if isinstance(self.data, bytes):
            out["data_base64"] = base64.b64encode(self.data).decode()
        elif self.data is not None:
            # checked as a message's payload is: a NaN, or a type JSON has no form for,
            # raises TypeError naming it (a NaN was written as null); encoded once
            out["data"] = msgspec.Raw(encode_json(self.data, f"the data of event {self.id!r}"))
        return _encode(out)

    @classmethod
    def from_json(cls, body: bytes) -> CloudEvent:
        # as it was stored: checked when it came in (by the rules of the hibana of then)
        return from_structured(_decode(body), where="the event", stored=True)


def new_event(
    *,
    type: str,
    source: str,
    data: Any = None,
    id: str | None = None,
    subject: str | None = None,
    time: str | None = None,
    datacontenttype: str | None = None,
    extensions: Mapping[str, str] | None = None,
) -> CloudEvent:
    """An event a function or the CLI publishes: ``id`` and ``time`` are filled in."""
    import uuid

    for name, value in (("type", type), ("source", source)):
        if not isinstance(value, str) or not value:
            raise EventError(400, f"{name}={value!r}: a CloudEvent needs a non-empty {name}")
    for optional, given in (("id", id), ("subject", subject), ("time", time)):
        if given == "":  # CloudEvents 1.0: an optional attribute, if present, is non-empty
            raise EventError(400, f"{optional}='': leave it out (None) instead")
        if given is not None and not isinstance(given, str):
            # stored as it is, each subscriber's delivery could not be read back: set aside
            raise EventError(
                400, f"{optional}={given!r:.60}: a CloudEvents attribute is a string; pass one"
            )
    if time is not None and not _is_timestamp(time):
        raise EventError(
            400,
            f"time={time!r:.60} is not an RFC 3339 timestamp (like 2026-12-04T11:30:00Z); "
            "leave it out for the time of publishing",
        )
    checked: dict[str, str] = {}
    for name, value in (extensions or {}).items():
        _check_name(name, "the event")
        if name in KNOWN or name in _DATA:
            raise EventError(400, f"the event: {name} is a CloudEvents attribute, not an extension")
        checked[name] = _extension_value(name, value, "the event")
    _check_strings(
        {"id": id, "source": source, "type": type, "subject": subject, **checked}, "the event"
    )
    if data is not None and not isinstance(data, str | bytes):
        _check_data_is_json(datacontenttype, data, "the event")
    return CloudEvent(
        id=id or uuid.uuid4().hex,
        source=source,
        type=type,
        subject=subject,
        time=time or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        datacontenttype=datacontenttype or _type_of(data),
        data=data,
        extensions=checked,
    )


def _type_of(data: Any) -> str | None:
    """The datacontenttype of data published without one: bytes are no JSON (JSON event
    format 3.1.1: it "MUST reflect the format of the original binary data"; they went as
    application/json, and a subscriber that trusts it parses a PNG)."""
    if data is None:
        return None
    return "application/octet-stream" if isinstance(data, bytes | bytearray) else "application/json"


def _is_json(media: str) -> bool:
    """``media`` (lower-case, no parameters) declares JSON: ``*/json`` or ``*/*+json``
    (JSON event format 3.1.1; text/json was read as text)."""
    return media.endswith(("/json", "+json"))


def from_structured(obj: Any, where: str, stored: bool = False) -> CloudEvent:
    if not isinstance(obj, dict):
        raise EventError(400, f"{where} is not a JSON object")
    missing = [name for name in REQUIRED if obj.get(name) is None]
    if missing:
        raise EventError(
            400,
            f"{where} lacks the required attribute{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}",
        )
    for name in REQUIRED:
        if not isinstance(obj[name], str):
            raise EventError(
                400, f"{where}: attribute {name} is {_shown(obj[name])}; it must be a string"
            )
        if not obj[name]:
            raise EventError(
                400, f"{where}: attribute {name} is empty; a CloudEvent's {name} is non-empty"
            )
    if obj["specversion"] != "1.0":
        raise EventError(
            400, f"{where} has specversion {_shown(obj['specversion'])}; hibana accepts 1.0"
        )
    data: Any = obj.get("data")
    if obj.get("data_base64") is not None:
        if data is not None:
            raise EventError(400, f"{where} has both data and data_base64; send one of them")
        try:
            data = base64.b64decode(obj["data_base64"], validate=True)
        except (ValueError, TypeError):
            raise EventError(400, f"{where}: data_base64 is not base64") from None
    elif data is not None and not stored and not isinstance(data, str):
        _check_data_is_json(obj.get("datacontenttype"), data, where)
    extensions: dict[str, str] = {}
    for name, value in obj.items():
        if name in _DATA or value is None:  # null is the same as absent (JSON format 2.2)
            continue
        _check_name(name, where)
        if name not in KNOWN:
            extensions[name] = _extension_value(name, value, where)
    if not stored:
        _check_strings(obj, where)
    time = _opt(obj, "time", where, stored)
    if time is not None and not _is_timestamp(time):
        raise EventError(
            400,
            f"{where}: time {_shown(time)} is not an RFC 3339 timestamp (like "
            "2026-12-04T11:30:00Z)",
        )
    return CloudEvent(
        id=obj["id"],
        source=obj["source"],
        type=obj["type"],
        specversion="1.0",
        subject=_opt(obj, "subject", where, stored),
        time=time,
        datacontenttype=_opt(obj, "datacontenttype", where, stored),
        dataschema=_opt(obj, "dataschema", where, stored),
        data=data,
        extensions=extensions,
    )


def _check_data_is_json(content_type: object, data: Any, where: str) -> None:
    """``data``, a JSON value that is no string, is what ``content_type`` declares: JSON.
    Of any other type, data is a string of that content (JSON event format 3.1.2); a
    subscriber would be handed a dict it takes for text or XML."""
    if not isinstance(content_type, str):
        return  # none (JSON, as the format says), or one that is no string: refused below
    if _is_json(content_type.split(";", 1)[0].strip().lower()):
        return
    if isinstance(data, dict):
        kind = "an object"
    elif isinstance(data, list | tuple):
        kind = "an array"
    elif isinstance(data, bool):
        kind = "true" if data else "false"
    elif isinstance(data, int | float):
        kind = f"the number {data!r}"
    else:
        kind = f"a {type(data).__name__}"
    raise EventError(
        400,
        f"{where}: datacontenttype {_shown(content_type)} is not JSON, and data is {kind}; data "
        "of such a type is a string of that content (JSON event format 3.1.2): send it as "
        "a string, bytes as data_base64, or JSON with datacontenttype application/json",
    )


#: The most characters of a sender's value an error quotes: a refused request's answer
#: and its log line stay short, whatever it sent (a 200 KB specversion was quoted whole).
_SHOWN = 100


def _shown(value: object) -> str:
    """``repr(value)``, cut to ``_SHOWN`` characters (and how many more there were)."""
    text = repr(value)
    if len(text) <= _SHOWN:
        return text
    return f"{text[:_SHOWN]}... ({len(text) - _SHOWN} characters more)"


def _check_strings(attributes: Mapping[str, Any], where: str) -> None:
    for name, value in attributes.items():
        if name not in _DATA and type(value) is str and (bad := _FORBIDDEN.search(value)):
            raise EventError(
                400,
                f"{where}: attribute {name} holds {bad[0]!r}; a CloudEvents string holds no "
                "control character or lone surrogate (CloudEvents 1.0, Type System: String)",
            )


_DATA = frozenset({"data", "data_base64"})
#: What no CloudEvents string may hold: C0 and C1 controls, DEL, surrogate code points.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NAME = re.compile(r"[a-z0-9]+")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
_INT32 = range(-(2**31), 2**31)


def _is_timestamp(text: str) -> bool:
    if not _TIMESTAMP.fullmatch(text):
        return False
    if text[17:19] == "60":  # a leap second (RFC 3339 5.7), which datetime cannot hold
        text = f"{text[:17]}59{text[19:]}"
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:  # the right shape, but a 13th month or a 61st minute
        return False
    return True


def is_attribute_name(name: str) -> bool:
    """``name`` can name an event's context attribute or extension."""
    return _NAME.fullmatch(name) is not None


def _check_name(name: str, where: str) -> None:
    if not _NAME.fullmatch(name):
        raise EventError(
            400,
            f"{where}: attribute name {_shown(name)} is not valid; CloudEvents attribute names "
            "are lower-case letters a-z and digits only",
        )


def _extension_value(name: str, value: Any, where: str) -> str:
    """An extension's value in its canonical string form (what filters match against)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value in _INT32:
        return str(value)
    raise EventError(
        400,
        f"{where}: extension {name} is {_shown(value)}; an attribute's value is a string, a "
        "boolean or a 32-bit integer",
    )


def _opt(obj: dict[str, Any], name: str, where: str, stored: bool = False) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise EventError(400, f"{where}: attribute {name} must be a string")
    if value == "" and not stored:
        # CloudEvents 1.0: an optional attribute, if present, is non-empty
        raise EventError(400, f"{where}: attribute {name} is empty; leave it out instead")
    return value


def from_http(headers: Iterable[tuple[str, str]], body: bytes) -> list[CloudEvent]:
    """The events of one HTTP request: binary mode (``ce-*`` headers), structured mode
    (``application/cloudevents+json``) or batch mode (``application/cloudevents-batch+json``)."""
    content_type = ""
    ce: dict[str, str] = {}
    repeated = None
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            content_type = value
        elif lower.startswith("ce-"):
            if lower[3:] in ce:
                repeated = lower
            ce[lower[3:]] = value
    media = content_type.split(";", 1)[0].strip().lower()
    if media == STRUCTURED:
        return [from_structured(_parse_json(body, "the body"), where="the event")]
    if media == BATCH:
        items = _parse_json(body, "the batch")
        if not isinstance(items, list):
            raise EventError(
                400, "a batch (application/cloudevents-batch+json) must be a JSON array"
            )
        return [
            from_structured(item, where=f"event {i} of the batch") for i, item in enumerate(items)
        ]
    if not ce:
        raise EventError(
            400,
            "no CloudEvent in the request: send ce-id, ce-source, ce-specversion and ce-type "
            f"headers (binary mode), or Content-Type {STRUCTURED} or {BATCH}",
        )
    if repeated is not None:
        raise EventError(
            400,
            f"header {repeated} is sent more than once; an attribute has one value: send it once",
        )
    for attribute, value in ce.items():
        if not _PLAIN(value):
            ce[attribute] = _header_value(f"ce-{attribute}", value)
    if data_headers := sorted(_DATA & ce.keys()):
        raise EventError(
            400,
            f"header ce-{data_headers[0]}: in binary mode the event's data is the body; send it "
            "there (its type as Content-Type), or the whole event in structured mode",
        )
    if (declared := ce.pop("datacontenttype", None)) is not None:
        # binary mode's datacontenttype is Content-Type (HTTP binding 3.1.1); a sender that
        # put it in a ce- header says what its data is all the same (its text was bytes)
        if content_type and declared != content_type:
            raise EventError(
                400,
                f"header ce-datacontenttype: {_shown(declared)} is not the Content-Type "
                f"{_shown(content_type)}; in binary mode the data's type is the Content-Type "
                "header: send it there alone",
            )
        content_type = declared
        media = content_type.split(";", 1)[0].strip().lower()
    data: Any = None
    if body:
        if not media:
            data = _json_or_bytes(body)
        elif _is_json(media):
            data = _parse_json(body, "the event data")
        elif media.startswith("text/"):
            data = _text(body, content_type)
        else:
            data = body
    obj: dict[str, Any] = dict(ce)
    if content_type:
        obj["datacontenttype"] = content_type
    event = from_structured(obj, where="the event (ce-* headers)")
    event.data = data
    return [event]


#: A header value that is its attribute's value as it is: printable ASCII without a
#: percent sign or a double quote.
_PLAIN = re.compile(r"[\x20\x21\x23\x24\x26-\x7e]*").fullmatch
#: RFC 9110 5.6.4: a quoted string, and the quoted pairs in it.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S).fullmatch
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)


def _header_value(header: str, value: str) -> str:
    """The attribute a ``ce-*`` header's value holds (HTTP binding 3.1.3.2): a quoted
    string unquoted (what senders of the binding's first versions send: it kept its
    quotes), then percent-decoded, and the bytes read as UTF-8. A byte outside ASCII sent
    as it is (``curl -H 'ce-subject: café'``) is read as UTF-8 too, where the request's
    Latin-1 made it 'cafÃ©'; bytes that are no UTF-8 are refused, as the binding asks
    (they were taken as U+FFFD)."""
    if quoted := _QUOTED(value):
        value = _QUOTED_PAIR.sub(r"\1", quoted[1])
    try:
        raw = value.encode("latin-1")  # the header's bytes as they came
    except UnicodeEncodeError:  # not read off the wire: already text
        raw = value.encode("utf-8", "surrogatepass")
    decoded = urllib.parse.unquote_to_bytes(raw)
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(
            400,
            f"header {header}: {_shown(value)} is not UTF-8 once percent-decoded (byte "
            f"0x{decoded[exc.start]:02X}: {exc.reason}); percent-encode the UTF-8 bytes of each "
            "character outside printable ASCII, as caf%C3%A9 for café (CloudEvents HTTP "
            "binding 3.1.3.2)",
        ) from None


def _json_or_bytes(body: bytes) -> Any:
    """Binary-mode data that no Content-Type describes. "No datacontenttype means JSON" is
    the JSON event format's rule (structured mode), not the HTTP binding's: such a body may
    be anything (RFC 9110 8.3 lets a receiver take it as application/octet-stream). The
    cloudevents SDK sends JSON data this way, and reads it back as JSON if it decodes, as
    bytes if not: so does hibana (an image or a gzip sent so was refused as bad JSON)."""
    try:
        return _decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return body


def _text(body: bytes, content_type: str) -> str:
    """Text data in the charset its content type names (UTF-8 if it names none)."""
    charset = "utf-8"
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return body.decode(charset)
    except LookupError:
        raise EventError(400, f"the event data's charset {_shown(charset)} is unknown") from None
    except UnicodeError as exc:  # UnicodeDecodeError, or what idna and punycode raise
        raise EventError(400, f"the event data is not {charset} text: {exc}") from None


def _parse_json(body: bytes, what: str) -> Any:
    try:
        return _decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        if body.startswith(codecs.BOM_UTF8):
            # what Windows tools write first (PowerShell's UTF8): RFC 8259 8.1 lets a
            # parser ignore it, and msgspec does not
            return _parse_json(body[len(codecs.BOM_UTF8) :], what)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as not_utf8:
            raise EventError(
                400,
                f"{what} is not UTF-8 (byte 0x{body[not_utf8.start]:02X} at offset "
                f"{not_utf8.start}: {not_utf8.reason}); JSON is UTF-8 (RFC 8259 8.1): "
                "encode it so",
            ) from None
        raise EventError(400, f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise EventError(400, f"{what} is JSON nested too deeply to decode") from None
