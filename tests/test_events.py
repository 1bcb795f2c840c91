"""Events end to end: CloudEvents sent with the cloudevents SDK in binary, structured and
batch mode, fan-out to filtered subscriptions, retries and dead letters per subscription,
deduplication, trace continuity, and bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_dict, to_structured
from cloudevents.http import CloudEvent, from_http

import hibana
from hibana.events.cloudevent import CloudEvent as CloudEventIn
from hibana.store import NewMessage, open_store
from tests.hosts import Host, copy_app, read_jsonl, run_cli, started
from tests.test_queues import wait_until


def delivered(app_dir: Path, fn: str | None = None) -> list[dict[str, Any]]:
    return read_jsonl(app_dir / "delivered.jsonl", fn=fn)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return copy_app("events", tmp_path)


@pytest.fixture
def host(app_dir: Path) -> Iterator[Host]:
    yield from started(app_dir, "--workers", "1")


def post_event(host: Host, event: CloudEvent, mode: str = "binary") -> httpx.Response:
    headers, body = to_binary(event) if mode == "binary" else to_structured(event)
    return httpx.post(host.url + "/runtime/events/github", headers=headers, content=body)


def run_event(**attrs: Any) -> CloudEvent:
    data = attrs.pop("data", {"conclusion": "success"})
    return CloudEvent({"type": "com.github.workflow_run", "source": "gh/hooks", **attrs}, data)


def test_binary_mode_fans_out_to_matching_subscriptions(host: Host, app_dir: Path) -> None:
    event = run_event(subject="repo/hibana/hibana", id="run-1")
    r = post_event(host, event)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0, "deliveries": 2}
    wait_until(lambda: len(delivered(app_dir)) == 2, what="two deliveries")
    got = {d["fn"]: d for d in delivered(app_dir)}
    assert set(got) == {"everything", "runs"}  # flaky's filter does not match
    assert got["runs"]["id"] == "run-1" and got["runs"]["data"] == {"conclusion": "success"}
    assert got["runs"]["subject"] == "repo/hibana/hibana"


def test_structured_mode_and_a_filter_on_the_type_suffix(host: Host, app_dir: Path) -> None:
    event = CloudEvent(
        {"type": "com.github.pull_request", "source": "gh/hooks", "id": "pr-9"}, {"n": 9}
    )
    r = post_event(host, event, mode="structured")
    assert r.status_code == 202 and r.json()["deliveries"] == 2
    wait_until(lambda: len(delivered(app_dir)) == 2)
    assert {d["fn"] for d in delivered(app_dir)} == {"everything", "flaky"}


def test_batch_mode(host: Host, app_dir: Path) -> None:
    events = [run_event(id=f"b{i}", subject="repo/x") for i in range(3)]
    r = httpx.post(
        host.url + "/runtime/events/github",
        headers={"content-type": "application/cloudevents-batch+json"},
        content=json.dumps([to_dict(e) for e in events]),
    )
    assert r.status_code == 202 and r.json() == {"accepted": 3, "duplicates": 0, "deliveries": 6}
    wait_until(lambda: len(delivered(app_dir, "runs")) == 3)
    assert sorted(d["id"] for d in delivered(app_dir, "runs")) == ["b0", "b1", "b2"]


def test_a_redelivered_event_is_processed_once(host: Host, app_dir: Path) -> None:
    event = run_event(id="same", subject="repo/x")
    assert post_event(host, event).json()["accepted"] == 1
    again = post_event(host, run_event(id="same", subject="repo/x"))
    assert again.status_code == 202 and again.json() == {
        "accepted": 0,
        "duplicates": 1,
        "deliveries": 0,
    }
    # another source with the same id is another event
    other = post_event(host, run_event(id="same", source="elsewhere", subject="repo/x"))
    assert other.json()["accepted"] == 1
    wait_until(lambda: len(delivered(app_dir, "everything")) == 2)
    host.wait_for_log(function="flaky", outcome="ok")  # "elsewhere" passes not(prefix gh)
    assert len(delivered(app_dir, "everything")) == 2


def test_a_failing_subscriber_dead_letters_without_touching_the_others(
    host: Host, app_dir: Path
) -> None:
    (app_dir / "fail").write_text("x")
    event = CloudEvent({"type": "com.github.pull_request", "source": "gh/h", "id": "pr-1"}, {})
    assert post_event(host, event).status_code == 202
    host.wait_for_log(function="flaky", dead_lettered=True, timeout=20)
    assert [d["attempt"] for d in delivered(app_dir, "flaky")] == [1, 2]
    assert len(delivered(app_dir, "everything")) == 1
    dlq = run_cli("queue", "dlq", "event:flaky", "--app", str(app_dir), "--json")
    (dead,) = json.loads(dlq.stdout)
    assert dead["data"]["id"] == "pr-1" and dead["errors"][-1]["error"] == (
        "RuntimeError: flaky subscriber fails"
    )


def test_the_trace_continues_from_publisher_to_every_subscriber(host: Host, app_dir: Path) -> None:
    with host.client() as client:
        sent = client.post(
            "/publish",
            json={"type": "com.github.workflow_run", "source": "gh/app", "subject": "repo/r"},
            headers={
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "vendor=abc",
            },
        ).json()
    assert sent["deliveries"] == 2 and sent["duplicate"] is False
    wait_until(lambda: len(delivered(app_dir)) == 2)
    assert {d["trace_id"] for d in delivered(app_dir)} == {sent["trace_id"]}
    assert {d["tracestate"] for d in delivered(app_dir)} == {"vendor=abc"}
    # each subscriber's parent is the publisher's own span (its log line)
    publisher = host.wait_for_log(msg="invocation", function="publish", trace_id=sent["trace_id"])
    for fn in ("everything", "runs"):
        line = host.wait_for_log(msg="invocation", function=fn, trace_id=sent["trace_id"])
        assert line["parent_span_id"] == publisher["span_id"]
    # an incoming event's own traceparent extension is continued too
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    event = run_event(
        id="traced",
        subject="repo/r",
        traceparent=f"00-{trace_id}-00f067aa0ba902b7-01",
        tracestate="congo=t61rcWkgMzE",
    )
    assert post_event(host, event).status_code == 202
    wait_until(lambda: len([d for d in delivered(app_dir) if d["id"] == "traced"]) == 2)
    assert {d["trace_id"] for d in delivered(app_dir) if d["id"] == "traced"} == {trace_id}
    traced = {d["tracestate"] for d in delivered(app_dir) if d["id"] == "traced"}
    assert traced == {"congo=t61rcWkgMzE"}
    line = host.wait_for_log(function="runs", outcome="ok", trace_id=trace_id)
    assert line["parent_span_id"] == "00f067aa0ba902b7"


def test_text_data_in_its_own_charset_and_a_traceparent_that_is_none(
    host: Host, app_dir: Path
) -> None:
    """Latin-1 text came out as 'caf\ufffd'; an extension traceparent of "garbage" was kept,
    and each subscriber started a trace of its own."""
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    r = httpx.post(
        host.url + "/runtime/events/github",
        headers={
            "ce-id": "latin",
            "ce-source": "gh/hooks",
            "ce-specversion": "1.0",
            "ce-type": "com.github.workflow_run",
            "ce-subject": "repo/r",
            "ce-traceparent": "garbage",
            "ce-tracestate": "stale=1",
            "content-type": "text/plain; charset=iso-8859-1",
            "traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
        },
        content="café".encode("latin-1"),
    )
    assert r.status_code == 202, r.text
    wait_until(lambda: len([d for d in delivered(app_dir) if d["id"] == "latin"]) == 2)
    got = [d for d in delivered(app_dir) if d["id"] == "latin"]
    assert {d["data"] for d in got} == {"café"}
    assert {d["trace_id"] for d in got} == {trace_id}  # the request's, for every subscriber
    assert {d["tracestate"] for d in got} == {""}  # the invalid one's tracestate went with it


@pytest.mark.parametrize(
    ("headers", "body", "status", "problem"),
    [
        (
            {"ce-source": "s", "ce-specversion": "1.0", "ce-type": "t"},
            b"{}",
            400,
            "lacks the required attribute id",
        ),
        (
            # JSON is UTF-8: a body in UTF-16 or data in Latin-1 was "invalid character"
            {"content-type": "application/cloudevents+json"},
            '{"id": "1", "source": "s", "specversion": "1.0", "type": "t"}'.encode("utf-16"),
            400,
            "the body is not UTF-8 (byte 0xFF at offset 0: invalid start byte); JSON is UTF-8"
            " (RFC 8259 8.1): encode it so",
        ),
        (
            {
                "ce-id": "1",
                "ce-source": "s",
                "ce-specversion": "1.0",
                "ce-type": "t",
                "content-type": "application/json",
            },
            '{"city": "Zürich"}'.encode("latin-1"),
            400,
            "the event data is not UTF-8 (byte 0xFC at offset 11: invalid start byte)",
        ),
        (
            # JSON event format 3.1.2: data of a type that is not JSON is a string of it
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": "s", "specversion": "1.0", "type": "t",'
            b' "datacontenttype": "text/plain", "data": {"a": 1}}',
            400,
            "the event: datacontenttype 'text/plain' is not JSON, and data is an object; data"
            " of such a type is a string of that content (JSON event format 3.1.2)",
        ),
        (
            # present, but empty or no string: it said the attribute was missing
            {"content-type": "application/cloudevents+json"},
            b'{"id": "", "source": "s", "specversion": "1.0", "type": "t"}',
            400,
            "the event: attribute id is empty; a CloudEvent's id is non-empty",
        ),
        (
            {"content-type": "application/cloudevents-batch+json"},
            b'[{"id": 0, "source": "s", "specversion": "1.0", "type": "t"}]',
            400,
            "event 0 of the batch: attribute id is 0; it must be a string",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": "s", "specversion": "0.3", "type": "t"}',
            400,
            "specversion '0.3'; hibana accepts 1.0",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": ',
            400,
            "the body is not valid JSON",
        ),
        (
            {"content-type": "application/cloudevents-batch+json"},
            b'[{"id": "1", "source": "s", "specversion": "1.0", "type": "t"}, {"id": "2"}]',
            400,
            "event 1 of the batch lacks the required attributes source, specversion, type",
        ),
        ({"content-type": "text/plain"}, b"hello", 400, "no CloudEvent in the request"),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": "s", "specversion": "1.0", "type": "t", "data": 1,'
            b' "data_base64": "aGk="}',
            400,
            "has both data and data_base64",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": "s", "specversion": "1.0", "type": "t", "time": "yesterday"}',
            400,
            "time 'yesterday' is not an RFC 3339 timestamp",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": "s", "specversion": "1.0", "type": "t",'
            b' "time": "2026-13-01T00:00:00Z"}',
            400,
            "is not an RFC 3339 timestamp",
        ),
        (
            {
                "ce-id": "1",
                "ce-source": "s",
                "ce-specversion": "1.0",
                "ce-type": "t",
                "ce-My-Ext": "x",
            },
            b"",
            400,
            "attribute name 'my-ext' is not valid",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": "s", "specversion": "1.0", "type": "t", "ext": {"a": 1}}',
            400,
            "extension ext is {'a': 1}; an attribute's value is a string, a boolean",
        ),
        (
            {
                "ce-id": "1",
                "ce-source": "s",
                "ce-specversion": "1.0",
                "ce-type": "t",
                "content-type": "application/json",
            },
            json.dumps({"blob": "x" * 300_000}).encode(),
            413,
            "over the limit of 262144",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"id": "1", "source": "s", "specversion": "1.0", "type": "t", "subject": ""}',
            400,
            "attribute subject is empty; leave it out instead",
        ),
        (
            {
                "ce-id": "1",
                "ce-source": "s",
                "ce-specversion": "1.0",
                "ce-type": "t",
                "content-type": "text/plain; charset=no-such-charset",
            },
            b"caf\xe9",
            400,
            "the event data's charset 'no-such-charset' is unknown",
        ),
        (
            {
                "ce-id": "1",
                "ce-source": "s",
                "ce-specversion": "1.0",
                "ce-type": "t",
                "content-type": "text/plain; charset=idna",  # it raises UnicodeError
            },
            b"xn--zz",
            400,
            "the event data is not idna text: decoding with 'idna' codec failed",
        ),
        (
            {"ce-id": "x%00y", "ce-source": "s", "ce-specversion": "1.0", "ce-type": "t"},
            b"",
            400,
            "attribute id holds '\\x00'; a CloudEvents string holds no control character",
        ),
        (
            # an overlong UTF-8 space: the binding says to refuse it (it was taken as U+FFFD)
            {"ce-id": "1", "ce-source": "s%C0%A0", "ce-specversion": "1.0", "ce-type": "t"},
            b"",
            400,
            "header ce-source: 's%C0%A0' is not UTF-8 once percent-decoded (byte 0xC0",
        ),
        (
            {"content-type": "application/cloudevents-batch+json"},
            b'[{"id": "good", "source": "s", "specversion": "1.0", "type": "t"},'
            b' {"id": "1", "source": "s\\u0007", "specversion": "1.0", "type": "t"}]',
            400,
            "event 1 of the batch: attribute source holds '\\x07'",
        ),
    ],
)
def test_bad_events_are_refused_with_the_reason_and_nothing_stored(
    shared_host: tuple[Host, Path],
    headers: dict[str, str],
    body: bytes,
    status: int,
    problem: str,
) -> None:
    host, app_dir = shared_host
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content=body)
    assert r.status_code == status, r.text
    assert problem in r.json()["error"]
    stats = json.loads(run_cli("queue", "stats", "--app", str(app_dir), "--json").stdout)
    assert all(q["ready"] == q["in_flight"] == q["delayed"] == 0 for q in stats)
    assert delivered(app_dir) == []


@pytest.fixture(scope="module")
def shared_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Path]]:
    app_dir = copy_app("events", tmp_path_factory.mktemp("ev"))
    for host in started(app_dir, "--workers", "1"):
        yield host, app_dir


def test_a_refusal_quotes_a_huge_value_cut_short(shared_host: tuple[Host, Path]) -> None:
    """A 200 KB specversion was quoted whole in the answer and in the host's log line, for
    every request that sent one."""
    host, _ = shared_host
    event = {"id": "huge", "source": "s", "specversion": "x" * 200_000, "type": "t"}
    r = httpx.post(
        host.url + "/runtime/events/github",
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(event),
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error == (
        f"the event has specversion '{'x' * 99}... (199902 characters more); hibana accepts 1.0"
    )
    assert host.wait_for_log(msg="event refused", error=error)["status"] == 400


BINARY = [("ce-id", "1"), ("ce-source", "s"), ("ce-specversion", "1.0"), ("ce-type", "t")]


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        (
            [*BINARY, ("ce-id", "2")],
            "header ce-id is sent more than once; an attribute has one value: send it once",
        ),
        (
            [*BINARY, ("ce-data_base64", "aGk=")],
            "header ce-data_base64: in binary mode the event's data is the body; send it there",
        ),
        (
            [*BINARY, ("ce-datacontenttype", "text/plain"), ("content-type", "application/json")],
            "header ce-datacontenttype: 'text/plain' is not the Content-Type 'application/json';"
            " in binary mode the data's type is the Content-Type header: send it there alone",
        ),
    ],
)
def test_binary_mode_headers_that_say_two_things_are_refused(
    shared_host: tuple[Host, Path], headers: list[tuple[str, str]], problem: str
) -> None:
    """The last of two ce-id headers was the event's id; data_base64 in a header was read
    (and then replaced by the body); a ce-datacontenttype beside a Content-Type saying
    another thing was dropped without a word."""
    host, app_dir = shared_host
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content=b'{"a": 1}')
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(problem)
    assert delivered(app_dir) == []


def test_ce_headers_beside_a_structured_event_are_not_read(host: Host, app_dir: Path) -> None:
    """Structured mode may carry binary mode's headers too (HTTP binding 3.2.3): the body
    is the event, so one that is no UTF-8 once percent-decoded does not refuse it."""
    headers, body = to_structured(run_event(id="structured", subject="repo/s"))
    headers = {**headers, "ce-id": "%C0", "ce-source": "other"}
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content=body)
    assert r.status_code == 202 and r.json()["accepted"] == 1, r.text
    wait_until(lambda: len(delivered(app_dir, "runs")) == 1)
    assert delivered(app_dir, "runs")[0]["id"] == "structured"


def test_an_unknown_topic_is_404(shared_host: tuple[Host, Path]) -> None:
    host, _ = shared_host
    r = post_to(host, "nope", run_event(id="x"))
    assert r.status_code == 404
    assert r.json()["error"].startswith("no topic 'nope' in this app (topics: github)")
    # and the abuse-protection handshake grants no sender a topic that takes nothing
    asked = httpx.options(
        host.url + "/runtime/events/nope", headers={"WebHook-Request-Origin": "example.com"}
    )
    assert asked.status_code == 404 and "webhook-allowed-origin" not in asked.headers


def post_to(host: Host, topic: str, event: CloudEvent) -> httpx.Response:
    headers, body = to_binary(event)
    return httpx.post(f"{host.url}/runtime/events/{topic}", headers=headers, content=body)


def test_the_abuse_protection_handshake(shared_host: tuple[Host, Path]) -> None:
    host, _ = shared_host
    r = httpx.options(
        host.url + "/runtime/events/github",
        headers={
            "WebHook-Request-Origin": "eventemitter.example.com",
            "WebHook-Request-Rate": "120",
        },
    )
    assert r.status_code == 200
    assert r.headers["webhook-allowed-origin"] == "eventemitter.example.com"
    assert r.headers["webhook-allowed-rate"] == "*"


def test_events_publish_from_the_shell(host: Host, app_dir: Path) -> None:
    def publish(topic: str, *options: str) -> subprocess.CompletedProcess[str]:
        return run_cli("events", "publish", topic, *options, "--app", str(app_dir))

    out = publish(
        "github",
        *("--type", "com.github.workflow_run", "--source", "cli", "--subject", "repo/z"),
        *("--id", "from-cli", "--data", '{"k": 1}'),
    )
    assert out.returncode == 0, out.stderr
    # everything, runs (workflow_run on repo/...) and flaky (the source is not gh...)
    printed = re.fullmatch(
        r"Published event from-cli to 3 subscription\(s\) of github \(trace ([0-9a-f]{32})\)",
        out.stdout.strip(),
    )
    assert printed is not None, out.stdout
    wait_until(lambda: len(delivered(app_dir)) == 3)
    # one trace for all its subscribers, the one it printed
    assert {d["trace_id"] for d in delivered(app_dir)} == {printed[1]}
    again = publish("github", "--type", "x", "--source", "cli", "--id", "from-cli")
    assert "Duplicate" in again.stdout
    # refused when published, not dead-lettered when delivered
    empty = publish("github", "--type", "x", "--source", "y", "--subject", "")
    said = " ".join(empty.stderr.replace("│", "").split())
    assert empty.returncode == 2 and "--subject '' is empty: leave --subject out" in said
    unknown = publish("nope", "--type", "x", "--source", "y")
    assert unknown.returncode == 1 and "topics: github" in unknown.stderr


def test_filters_match_like_the_subscriptions_api() -> None:
    F = hibana.Filter
    e = hibana.CloudEvent(id="1", source="gh/x", type="com.github.push", subject="repo/a")
    assert F.exact(type="com.github.push").matches(e)
    assert not F.exact(type="com.github.push", subject="repo/b").matches(e)
    assert F.prefix(subject="repo/").matches(e) and not F.prefix(dataschema="x").matches(e)
    assert F.suffix(type=".push").matches(e)
    assert F.all(F.prefix(source="gh"), F.suffix(type="push")).matches(e)
    assert F.any(F.exact(type="nope"), F.exact(source="gh/x")).matches(e)
    assert F.not_(F.exact(type="nope")).matches(e)
    f = F.all(F.exact(type="a"), F.not_(F.any(F.prefix(subject="x"), F.suffix(source="y"))))
    assert F.from_dict(json.loads(json.dumps(f.to_dict()))) == f
    assert f.to_dict() == {
        "all": [
            {"exact": {"type": "a"}},
            {"not": {"any": [{"prefix": {"subject": "x"}}, {"suffix": {"source": "y"}}]}},
        ]
    }
    with pytest.raises(ValueError, match="needs at least one attribute"):
        F.exact()


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        (
            {"event_type": "com.github.push"},
            "Filter.exact(event_type='com.github.push'): no event has an attribute named "
            "'event_type' (CloudEvents attribute names are lower-case letters a-z and digits "
            "only), so this filter would match none; name one that events carry: type, "
            "source, subject, or an extension as they spell it (eventtype)",
        ),
        ({"data": "x"}, "Filter.exact(data='x'): data is the event's payload, not an attribute"),
    ],
)
def test_a_filter_on_an_attribute_no_event_can_have_is_refused(
    attributes: dict[str, str], problem: str
) -> None:
    """It matched nothing, for ever, without a word: the subscription stayed quiet."""
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}"):
        hibana.Filter.exact(**attributes)


def test_binary_mode_data_without_a_content_type_is_json_if_it_decodes_else_bytes(
    host: Host, app_dir: Path
) -> None:
    """The SDK's to_binary sends bytes data with no Content-Type (and JSON data so too):
    a PNG got 400 'the event data is not valid JSON', which the SDK's from_http accepts."""
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    headers, body = to_binary(run_event(id="png", subject="repo/x", data=png))
    assert not {k.lower() for k in headers} & {"content-type", "ce-datacontenttype"}
    assert from_http(headers, body).data == png  # what the SDK reads there
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content=body)
    assert r.status_code == 202 and r.json()["deliveries"] == 2, r.text
    # JSON the SDK sent so (post_event's dict data) still arrives decoded
    assert post_event(host, run_event(id="json", subject="repo/x")).status_code == 202
    wait_until(lambda: len(delivered(app_dir, "runs")) == 2, what="both events")
    got = {d["id"]: d for d in delivered(app_dir, "runs")}
    assert base64.b64decode(got["png"]["data_base64"]) == png and got["png"]["data"] is None
    assert got["json"]["data"] == {"conclusion": "success"}


def test_binary_mode_attribute_values_are_percent_decoded(host: Host, app_dir: Path) -> None:
    headers = {
        "ce-id": "pct-1",
        "ce-source": "gh/hooks",
        "ce-specversion": "1.0",
        "ce-type": "com.github.workflow_run",
        "ce-subject": "repo/caf%C3%A9%20100%25",
        "content-type": "application/json",
    }
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content=b"{}")
    assert r.status_code == 202 and r.json()["deliveries"] == 2, r.text
    wait_until(lambda: len(delivered(app_dir, "runs")) == 1)
    assert delivered(app_dir, "runs")[0]["subject"] == "repo/caf\u00e9 100%"


def test_binary_mode_datacontenttype_in_a_ce_header_is_the_datas_type(
    host: Host, app_dir: Path
) -> None:
    """Binary mode puts it in Content-Type; a sender that sent ce-datacontenttype instead
    got its text delivered as bytes (the type said text/plain, the data was base64)."""
    headers, _ = to_binary(run_event(id="declared", subject="repo/d"))
    headers["ce-datacontenttype"] = "text/plain; charset=utf-8"
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content="café".encode())
    assert r.status_code == 202, r.text
    wait_until(lambda: len(delivered(app_dir, "runs")) == 1)
    assert delivered(app_dir, "runs")[0]["data"] == "café"


def test_binary_mode_data_of_any_json_media_type_is_json(host: Host, app_dir: Path) -> None:
    """JSON event format 3.1.1: */json and */*+json declare JSON; text/json came as the
    text of the JSON, a str, where application/json gave its value."""
    event = CloudEvent(
        {
            "type": "com.github.workflow_run",
            "source": "gh/hooks",
            "id": "text-json",
            "subject": "repo/j",
            "datacontenttype": "text/json; charset=utf-8",
        },
        {"conclusion": "success"},
    )
    headers, body = to_binary(event)
    assert headers["content-type"] == "text/json; charset=utf-8"
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content=body)
    assert r.status_code == 202, r.text
    wait_until(lambda: len(delivered(app_dir, "runs")) == 1)
    assert delivered(app_dir, "runs")[0]["data"] == {"conclusion": "success"}


def test_a_structured_event_after_a_utf8_byte_order_mark_is_read(host: Host, app_dir: Path) -> None:
    """What PowerShell's -Encoding UTF8 writes first: RFC 8259 8.1 lets a parser ignore it,
    and it was 400 'invalid character (byte 0)'."""
    headers, body = to_structured(run_event(id="bom", subject="repo/b"))
    r = httpx.post(
        host.url + "/runtime/events/github", headers=headers, content=b"\xef\xbb\xbf" + body
    )
    assert r.status_code == 202, r.text
    wait_until(lambda: len(delivered(app_dir, "runs")) == 1)
    assert delivered(app_dir, "runs")[0]["id"] == "bom"


def test_binary_mode_attribute_values_in_quotes_are_unquoted(host: Host, app_dir: Path) -> None:
    """HTTP binding 3.1.3.2: a value is unquoted first (what senders of the binding's first
    versions send, which did not percent-encode a space); its quotes were kept, and the
    subject '"repo/..."' matched no filter on "repo/"."""
    headers, body = to_binary(run_event(id="quoted"))
    headers["ce-subject"] = '"repo/a \\"b\\" caf%C3%A9"'
    r = httpx.post(host.url + "/runtime/events/github", headers=headers, content=body)
    assert r.status_code == 202 and r.json()["deliveries"] == 2, r.text
    wait_until(lambda: len(delivered(app_dir, "runs")) == 1)
    assert delivered(app_dir, "runs")[0]["subject"] == 'repo/a "b" caf\u00e9'


def test_binary_mode_attribute_values_sent_as_raw_utf8_are_read_as_utf8(
    host: Host, app_dir: Path
) -> None:
    """The SDK's to_binary leaves a subject's "é" and "€" as they are, and a client that
    sends them so (curl, Go's net/http) sends their UTF-8: the request's Latin-1 made the
    subject 'cafÃ©', and "€" (whose UTF-8 holds 0x82) a 400 for a control character."""
    headers, body = to_binary(run_event(id="utf8", subject="repo/café €"))
    assert headers["ce-subject"] == "repo/café €"
    raw = {name.encode(): value.encode() for name, value in headers.items()}
    r = httpx.post(host.url + "/runtime/events/github", headers=raw, content=body)
    assert r.status_code == 202 and r.json()["deliveries"] == 2, r.text
    wait_until(lambda: len(delivered(app_dir, "runs")) == 1)
    assert delivered(app_dir, "runs")[0]["subject"] == "repo/café €"
    # bytes that are no UTF-8 are named, with the fix, not taken as Latin-1
    raw[b"ce-id"], raw[b"ce-subject"] = b"latin", "repo/café".encode("latin-1")
    r = httpx.post(host.url + "/runtime/events/github", headers=raw, content=body)
    assert r.status_code == 400
    assert r.json()["error"].startswith(
        "header ce-subject: 'repo/caf\xe9' is not UTF-8 once percent-decoded (byte 0xE9"
    )
    assert "percent-encode the UTF-8 bytes" in r.json()["error"]


@pytest.mark.parametrize("time", ["2016-12-31T23:59:60Z", "2017-01-01T08:59:60.5+09:00"])
def test_a_leap_second_is_an_rfc3339_time(time: str) -> None:
    """RFC 3339 5.7 allows a 60th second; it was refused as 'not an RFC 3339 timestamp'."""
    from hibana.events.cloudevent import from_http

    event = {"id": "1", "source": "s", "specversion": "1.0", "type": "t", "time": time}
    headers = [("content-type", "application/cloudevents+json")]
    assert from_http(headers, json.dumps(event).encode())[0].time == time


def test_extension_values_keep_their_canonical_form() -> None:
    from hibana.events.cloudevent import from_http

    body = b'{"id": "1", "source": "s", "specversion": "1.0", "type": "t", "sampled": true,'
    body += b' "hops": 3, "region": "eu", "subject": null}'
    (event,) = from_http([("content-type", "application/cloudevents+json")], body)
    assert event.extensions == {"sampled": "true", "hops": "3", "region": "eu"}
    assert event.subject is None
    assert hibana.Filter.exact(sampled="true").matches(event)


@pytest.mark.parametrize(
    ("what", "problem"),
    [
        (
            "nan",
            "the data of event 'bad-nan' holds the float nan, which JSON has no value for "
            "(it would reach the consumer as None)",
        ),
        (
            "object",
            "the data of event 'bad-object' is not JSON-serialisable: Encoding objects of type "
            "object is unsupported",
        ),
    ],
)
def test_ctx_publish_of_data_json_cannot_hold_raises_type_error(
    host: Host, app_dir: Path, what: str, problem: str
) -> None:
    """A NaN reached the subscribers as null; an object was a bare msgspec error."""
    with host.client() as client:
        got = client.post(f"/publish-bad/{what}").json()
    assert got["error_type"] == "TypeError"
    assert problem in got["error"]


def test_a_published_event_of_bytes_is_not_called_json() -> None:
    """ctx.publish(data=png) went out as datacontenttype application/json with data_base64:
    a subscriber that reads the type to know how to read the data took a PNG for JSON."""
    from hibana.events.cloudevent import new_event

    png = b"\x89PNG\r\n\x1a\n"
    sent = json.loads(new_event(type="t", source="s", data=png).to_json())
    assert sent["datacontenttype"] == "application/octet-stream"
    assert base64.b64decode(sent["data_base64"]) == png
    sent = json.loads(new_event(type="t", source="s", data={"a": 1}).to_json())
    assert sent["datacontenttype"] == "application/json"


def test_a_published_event_whose_data_is_not_of_its_content_type_is_refused_at_the_call() -> None:
    """ctx.publish(datacontenttype="text/plain", data={...}) was stored, and each subscriber
    was handed a dict its event called text."""
    from hibana.events.cloudevent import EventError, new_event

    with pytest.raises(EventError, match="datacontenttype 'text/csv' is not JSON, and data is an"):
        new_event(type="t", source="s", datacontenttype="text/csv", data=[["a", 1]])
    assert new_event(type="t", source="s", datacontenttype="text/csv", data="a,1").data == "a,1"


@pytest.mark.parametrize(
    ("extensions", "problem"),
    [
        ({"Trace-Flag": "x"}, "attribute name 'Trace-Flag' is not valid"),
        ({"subject": "x"}, "subject is a CloudEvents attribute, not an extension"),
        ({"depth": 2.5}, "extension depth is 2.5"),
    ],
)
def test_a_published_event_with_a_bad_extension_is_refused_at_the_call(
    extensions: dict[str, Any], problem: str
) -> None:
    from hibana.events.cloudevent import EventError, new_event

    with pytest.raises(EventError, match=problem):
        new_event(type="t", source="s", extensions=extensions)


@pytest.mark.parametrize(
    ("attribute", "problem"),
    [
        ({"id": 5}, "id=5: a CloudEvents attribute is a string; pass one"),
        ({"subject": 7}, "subject=7: a CloudEvents attribute is a string; pass one"),
        (
            {"time": "yesterday"},
            "time='yesterday' is not an RFC 3339 timestamp (like 2026-12-04T11:30:00Z); "
            "leave it out for the time of publishing",
        ),
    ],
)
def test_a_published_event_its_subscribers_could_not_read_is_refused_at_the_call(
    attribute: dict[str, Any], problem: str
) -> None:
    """It was stored, and each subscription's delivery of it, unreadable, set aside."""
    from hibana.events.cloudevent import CloudEvent, EventError, new_event

    with pytest.raises(EventError) as info:
        new_event(type="t", source="s", **attribute)
    assert str(info.value) == problem
    sent = new_event(type="t", source="s", id="5", subject="7", time="2026-12-04T11:30:00Z")
    assert CloudEvent.from_json(sent.to_json()) == sent


def test_a_message_on_a_subscriptions_queue_that_is_no_event_is_a_dead_letter(
    host: Host, app_dir: Path
) -> None:
    """Put there by hand: retrying cannot help. (``hibana queue send`` refuses it now; a
    store written by an older hibana, or another program, can still hold one.)"""
    store = open_store(None, app_dir)
    try:
        asyncio.run(store.enqueue(NewMessage("event:everything", b"1")))
    finally:
        store.close()
    line = host.wait_for_log(msg="dead letter, not run")
    assert (line["function"], line["queue"], line["attempt"]) == (
        "everything",
        "event:everything",
        1,
    )
    assert line["error"] == "cannot be delivered: the event is not a JSON object"
    listed = run_cli("queue", "dlq", "event:everything", "--app", str(app_dir), "--json")
    (dead,) = json.loads(listed.stdout)
    assert dead["errors"][0]["error"] == line["error"]
    assert not delivered(app_dir, "everything")
    # the subscription serves on
    assert post_event(host, run_event()).status_code in (200, 202)
    wait_until(lambda: delivered(app_dir, "everything"), what="the next event")


def test_an_event_stored_by_rules_of_before_is_still_delivered() -> None:
    """What came in is checked then; read back from the store, an empty subject or a
    control character (allowed by an older hibana) does not make it undeliverable."""
    stored = CloudEventIn.from_json(
        b'{"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": "",'
        b' "dataschema": "", "note": "a\\u0007b"}'
    )
    assert (stored.subject, stored.extensions["note"]) == ("", "a\x07b")
