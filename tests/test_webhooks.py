"""Webhooks signed the way GitHub, Slack and Standard Webhooks document it; slack_sdk's
own SignatureVerifier must agree with hibana on every request."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from slack_sdk.signature import SignatureVerifier

from tests.hosts import Host, copy_app, read_jsonl, run_cli, started
from tests.test_queues import wait_until

GH_SECRET = "gh-webhook-secret-123"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
STD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-0123456789").decode()
API_TOKEN = "tok-5e3cr3t-v4lue-99"


def set_secret(app_dir: Path, name: str, value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hibana", "secrets", "set", name, "--app", str(app_dir)],
        input=value,
        capture_output=True,
        text=True,
        timeout=60,
    )


#: Every secret the webhooks test app names.
SECRETS = {
    "gh-secret": GH_SECRET,
    "slack-secret": SLACK_SECRET,
    "std-secret": STD_SECRET,
    "api-token": API_TOKEN,
}


def set_all(app_dir: Path) -> None:
    """Set every secret the webhooks test app names."""
    for name, value in SECRETS.items():
        done = set_secret(app_dir, name, value)
        assert done.returncode == 0, done.stderr


def delivered(app_dir: Path, fn: str | None = None) -> list[dict[str, Any]]:
    return read_jsonl(app_dir / "delivered.jsonl", fn=fn)


@pytest.fixture(scope="module")
def webhook_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Path]]:
    root = tmp_path_factory.mktemp("wh")
    app_dir = copy_app("webhooks", root)
    env_before = os.environ.get("HIBANA_SECRET_KEY_FILE")
    os.environ["HIBANA_SECRET_KEY_FILE"] = str(root / "key")
    try:
        set_all(app_dir)
        for host in started(app_dir, "--workers", "1"):
            yield host, app_dir
    finally:
        if env_before is None:
            os.environ.pop("HIBANA_SECRET_KEY_FILE", None)
        else:
            os.environ["HIBANA_SECRET_KEY_FILE"] = env_before


# -- GitHub ---------------------------------------------------------------------------------
def github_post(
    host: Host,
    event: str,
    delivery: str,
    payload: dict[str, Any],
    secret: str = GH_SECRET,
    tamper: bool = False,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if tamper:
        body = body.replace(b"}", b', "evil": 1}', 1)
    return httpx.post(
        host.url + "/webhooks/github",
        content=body,
        headers={
            "content-type": "application/json",
            "x-github-event": event,
            "x-github-delivery": delivery,
            "x-hub-signature-256": sig,
            "user-agent": "GitHub-Hookshot/abc123",
        },
    )


WORKFLOW_RUN = {
    "action": "completed",
    "workflow_run": {
        "id": 30433642,
        "name": "CI",
        "conclusion": "success",
        "head_branch": "main",
        "run_attempt": 1,
    },
    "repository": {
        "id": 1296269,
        "full_name": "octo-org/hello-world",
        "html_url": "https://github.com/octo-org/hello-world",
    },
    "sender": {"login": "octocat", "type": "User"},
}
PULL_REQUEST = {
    "action": "opened",
    "number": 2,
    "pull_request": {"id": 279147437, "number": 2, "state": "open", "title": "Update README"},
    "repository": {"id": 1296269, "full_name": "octo-org/hello-world"},
    "sender": {"login": "octocat"},
}


def test_github_deliveries_become_events_once(webhook_app: tuple[Host, Path]) -> None:
    host, app_dir = webhook_app
    r = github_post(host, "workflow_run", "72d3162e-cc78-11e3-81ab-4c9367dc0958", WORKFLOW_RUN)
    assert r.status_code == 202, r.text
    assert r.json() == {
        "accepted": True,
        "duplicate": False,
        "id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    # GitHub's redelivery keeps the delivery id: dropped
    again = github_post(host, "workflow_run", "72d3162e-cc78-11e3-81ab-4c9367dc0958", WORKFLOW_RUN)
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert github_post(host, "pull_request", "pr-delivery-1", PULL_REQUEST).status_code == 202
    wait_until(lambda: len(delivered(app_dir, "github")) >= 2)
    time.sleep(0.3)
    got = {d["id"]: d for d in delivered(app_dir, "github")}
    assert len(delivered(app_dir, "github")) == 2
    run = got["72d3162e-cc78-11e3-81ab-4c9367dc0958"]
    assert run["type"] == "com.github.workflow_run"
    assert run["subject"] == "repo/octo-org/hello-world"
    assert run["source"] == "https://github.com/octo-org/hello-world"
    assert run["action"] == "completed"
    assert got["pr-delivery-1"]["type"] == "com.github.pull_request"


def test_github_ping_is_answered_and_not_published(webhook_app: tuple[Host, Path]) -> None:
    host, app_dir = webhook_app
    r = github_post(host, "ping", "ping-1", {"zen": "Design for failure.", "hook_id": 1})
    assert r.status_code == 200 and r.json() == {"ok": True, "zen": "Design for failure."}
    assert all(d["id"] != "ping-1" for d in delivered(app_dir))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"secret": "wrong"}, "X-Hub-Signature-256 does not match the body"),
        ({"tamper": True}, "X-Hub-Signature-256 does not match the body"),
    ],
)
def test_github_bad_signatures_are_401_and_publish_nothing(
    webhook_app: tuple[Host, Path], kwargs: dict[str, Any], reason: str
) -> None:
    host, app_dir = webhook_app
    delivery = f"bad-{reason[:5]}-{kwargs}"
    r = github_post(host, "push", delivery, {"ref": "refs/heads/main"}, **kwargs)
    assert r.status_code == 401 and r.json() == {"error": reason}
    host.wait_for_log(msg="webhook rejected", reason=reason)
    time.sleep(0.2)
    assert all(d["id"] != delivery for d in delivered(app_dir))


@pytest.mark.parametrize(
    ("path", "header", "value"),
    [
        ("/webhooks/github", "x-hub-signature-256", "sha256=\u00e9" + "0" * 63),
        ("/webhooks/slack/commands", "x-slack-signature", "v0=\u00e9" + "0" * 63),
        ("/webhooks/std", "webhook-signature", "v1,\u00e9AAAA"),
    ],
)
def test_a_signature_with_a_character_outside_ascii_is_401(
    webhook_app: tuple[Host, Path], path: str, header: str, value: str
) -> None:
    host, _ = webhook_app
    headers = {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "non-ascii",
        "x-slack-request-timestamp": str(int(time.time())),
        "webhook-id": "msg_non_ascii",
        "webhook-timestamp": str(int(time.time())),
        header: value,
    }
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]  # UTF-8 on the wire
    r = httpx.post(host.url + path, content=b"{}", headers=raw)
    assert r.status_code == 401, r.text
    assert r.json()["error"].endswith("match the body") or "matches the body" in r.json()["error"]


def test_a_delivery_too_large_to_keep_is_413_naming_the_limit(
    webhook_app: tuple[Host, Path],
) -> None:
    """GitHub sends up to 25 MB; an event is kept up to 256 KiB. The sender is told, and
    its delivery log says why (it was a 500 with an id only)."""
    host, app_dir = webhook_app
    push = {"ref": "refs/heads/main", "commits": [{"message": "x" * 300_000}]}
    r = github_post(host, "push", "too-large-1", push)
    assert r.status_code == 413, r.text
    assert r.json()["error"].startswith("event 'too-large-1' is ")
    assert r.json()["error"].endswith("bytes of JSON, over the limit of 262144")
    host.wait_for_log(msg="webhook rejected", status=413)
    assert all(d["id"] != "too-large-1" for d in delivered(app_dir))


def test_github_without_a_signature_is_401(webhook_app: tuple[Host, Path]) -> None:
    host, _ = webhook_app
    r = httpx.post(
        host.url + "/webhooks/github",
        content=b"{}",
        headers={"x-github-event": "push", "x-github-delivery": "x"},
    )
    assert r.status_code == 401 and r.json() == {"error": "X-Hub-Signature-256 is missing"}


def test_a_webhook_topic_takes_no_event_posted_to_the_events_endpoint(
    webhook_app: tuple[Host, Path],
) -> None:
    """Anyone who reached the port could post ce-type com.github.push to
    /runtime/events/github, and on_github ran it as if GitHub had signed it."""
    host, app_dir = webhook_app
    forged = CloudEvent(
        {"type": "com.github.push", "source": "https://github.com/octo-org/x", "id": "forged"},
        {"ref": "refs/heads/main"},
    )
    for topic, path, (headers, body) in [
        ("github", "/webhooks/github", to_binary(forged)),
        (
            "slack",
            "/webhooks/slack/commands or POST /webhooks/slack/async or POST "
            "/webhooks/slack/blocking",
            to_structured(forged),
        ),
        ("std", "/webhooks/std", to_binary(forged)),
    ]:
        r = httpx.post(f"{host.url}/runtime/events/{topic}", headers=headers, content=body)
        assert r.status_code == 403, r.text
        assert r.json()["error"].startswith(
            f"topic {topic!r} is fed by the verified webhook only (POST {path}): "
        )
        host.wait_for_log(msg="event refused", topic=topic, status=403)
        # nor does the abuse-protection handshake let a sender think it may deliver there
        asked = httpx.options(
            f"{host.url}/runtime/events/{topic}", headers={"WebHook-Request-Origin": "x.example"}
        )
        assert asked.status_code == 403 and "webhook-allowed-origin" not in asked.headers
    # what the webhook verified still flows, and so does what an operator with the store sends
    assert github_post(host, "push", "signed-push-1", {"ref": "refs/heads/main"}).status_code == 202
    sent = run_cli(
        "events", "publish", "github", "--type", "com.acme.replay", "--source", "ops",
        "--id", "from-the-shell", "--app", str(app_dir),
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    wait_until(
        lambda: {"signed-push-1", "from-the-shell"} <= {d["id"] for d in delivered(app_dir)},
        what="the webhook's and the shell's events",
    )
    assert all(d["id"] != "forged" for d in delivered(app_dir))


# -- Slack ----------------------------------------------------------------------------------
class _Replies(http.server.BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        _Replies.got.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def response_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/commands/reply"
    server.shutdown()


FORM = "application/x-www-form-urlencoded"


def slack_post(
    host: Host,
    body: bytes,
    content_type: str,
    ts: int | str | None = None,
    secret: str = SLACK_SECRET,
    extra: dict[str, str] | None = None,
    path: str = "/webhooks/slack/commands",
) -> tuple[httpx.Response, bool]:
    """Signs like Slack (with slack_sdk), posts, and says whether slack_sdk would accept.
    ``ts``: the timestamp header, now if not given (a string is sent as it is)."""
    timestamp = str(ts if ts is not None else int(time.time()))
    sig = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert sig is not None
    headers = {
        "content-type": content_type,
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": sig,
        **(extra or {}),
    }
    r = httpx.post(host.url + path, content=body, headers=headers)
    try:
        sdk_ok = SignatureVerifier(SLACK_SECRET).is_valid(
            body=body, timestamp=timestamp, signature=sig
        )
    except (ValueError, OverflowError):  # a timestamp it cannot read ("nan", 400 digits)
        sdk_ok = False
    return r, sdk_ok


def command(text: str, response_url: str, trigger: str) -> bytes:
    return urllib.parse.urlencode(
        {
            "token": "gIkuvaNzQIHg97ATvDxqgjtO",
            "team_id": "T0001",
            "team_domain": "example",
            "channel_id": "C2147483705",
            "user_id": "U2147483697",
            "user_name": "Steve",
            "command": "/weather",
            "text": text,
            "response_url": response_url,
            "trigger_id": trigger,
            "api_app_id": "A123456",
        }
    ).encode()


def test_slack_command_is_acknowledged_then_answered_through_response_url(
    webhook_app: tuple[Host, Path], response_url: str
) -> None:
    host, app_dir = webhook_app
    r, sdk_ok = slack_post(
        host,
        command("94070", response_url, "13345224609.738474920.8088930838d88f008e0"),
        FORM,
    )
    assert sdk_ok and r.status_code == 200, r.text
    assert r.json() == {"response_type": "ephemeral", "text": "Working on 94070"}
    wait_until(
        lambda: any(x == {"text": "Done: 94070"} for x in _Replies.got),
        what="the reply through response_url",
    )
    (seen,) = [
        d
        for d in delivered(app_dir, "slack")
        if d["type"] == "com.slack.command"
        and d["id"] == "13345224609.738474920.8088930838d88f008e0"
    ]
    assert seen["subject"] == "/weather"


def test_an_async_ack_is_awaited_for_the_reply(
    webhook_app: tuple[Host, Path], response_url: str
) -> None:
    host, _ = webhook_app
    body = command("94070", response_url, "trig-async-ack")
    r, sdk_ok = slack_post(host, body, FORM, path="/webhooks/slack/async")
    assert sdk_ok and r.status_code == 200, r.text
    assert r.json() == {"response_type": "ephemeral", "text": "Async on 94070"}


def test_a_sync_ack_runs_off_the_workers_loop(
    webhook_app: tuple[Host, Path], response_url: str
) -> None:
    # on the loop, it held up every request of the worker: the one it waited for too
    host, app_dir = webhook_app
    body = command("x", response_url, "trig-blocking-ack")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        replied = pool.submit(slack_post, host, body, FORM, path="/webhooks/slack/blocking")
        wait_until(lambda: (app_dir / "ack-waiting").exists(), what="the ack to wait")
        assert httpx.post(host.url + "/ack-flag", timeout=10).text == "set"
        r, sdk_ok = replied.result()
    assert sdk_ok and r.status_code == 200, r.text
    assert r.json() == {"text": "flag seen"}


@pytest.mark.parametrize(
    ("case", "status"),
    [("valid", 200), ("tampered", 401), ("stale", 401), ("wrong-secret", 401)],
)
def test_slack_verification_agrees_with_slack_sdk(
    webhook_app: tuple[Host, Path], response_url: str, case: str, status: int
) -> None:
    host, _ = webhook_app
    body = command("x", response_url, f"trig-{case}")
    timestamp = int(time.time()) - (600 if case == "stale" else 0)
    secret = "not-the-secret" if case == "wrong-secret" else SLACK_SECRET
    sig = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert sig is not None
    sent = body + (b"&text=evil" if case == "tampered" else b"")
    r = httpx.post(
        host.url + "/webhooks/slack/commands",
        content=sent,
        headers={
            "content-type": FORM,
            "x-slack-request-timestamp": str(timestamp),
            "x-slack-signature": sig,
        },
    )
    sdk_ok = SignatureVerifier(SLACK_SECRET).is_valid(
        body=sent, timestamp=str(timestamp), signature=sig
    )
    assert r.status_code == status, r.text
    assert sdk_ok == (status == 200)
    if case == "stale":
        assert r.json()["error"].startswith("X-Slack-Request-Timestamp is 60")
        assert r.json()["error"].endswith("s ago, more than 300s from now: a replay?")


def test_a_slash_command_with_no_text_keeps_its_empty_text(
    webhook_app: tuple[Host, Path], response_url: str
) -> None:
    """Slack sends ``text=`` for a bare ``/weather``: its payload has ``text`` always."""
    host, app_dir = webhook_app
    r, sdk_ok = slack_post(host, command("", response_url, "trig-empty"), FORM)
    assert sdk_ok and r.status_code == 200, r.text
    assert r.json() == {"response_type": "ephemeral", "text": "Working on "}
    wait_until(lambda: [d for d in delivered(app_dir, "slack") if d["id"] == "trig-empty"])


@pytest.mark.parametrize(
    ("timestamp", "why"),
    [
        ("nan", "is not a whole number of seconds since the epoch"),
        ("1e9", "is not a whole number of seconds since the epoch"),
        ("+400", "s ahead of this host's clock, more than 300s from now"),
        # too large for a float (now - it overflowed), or for int() to read
        ("9" * 400, "is 400 digits long, far ahead of this host's clock, more than 300s"),
        ("9" * 5000, "is 5000 digits long, far ahead of this host's clock, more than 300s"),
    ],
    ids=["nan", "1e9", "ahead", "400-digits", "5000-digits"],
)
def test_a_slack_timestamp_that_is_not_now_in_whole_seconds_is_401(
    webhook_app: tuple[Host, Path], timestamp: str, why: str
) -> None:
    host, _ = webhook_app
    if timestamp.startswith("+"):
        timestamp = str(int(time.time()) + int(timestamp))
    body = command("x", "http://127.0.0.1:9/", f"trig-ts-{timestamp}")
    r, sdk_ok = slack_post(host, body, FORM, ts=timestamp)
    assert not sdk_ok
    assert r.status_code == 401, r.text
    assert why in r.json()["error"]


def test_slack_url_verification(webhook_app: tuple[Host, Path]) -> None:
    host, _ = webhook_app
    body = json.dumps(
        {
            "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
            "type": "url_verification",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        }
    ).encode()
    r, _ = slack_post(host, body, "application/json")
    assert r.status_code == 200
    assert r.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_slack_ssl_check_and_app_rate_limited_are_acknowledged(
    webhook_app: tuple[Host, Path],
) -> None:
    """Both were 400 ('neither a slash command...', 'a Slack event without event_id'):
    Slack asks for a 200 to its ssl_check, and app_rate_limited is a notice, not an event."""
    host, _ = webhook_app
    ssl_check = urllib.parse.urlencode({"ssl_check": "1", "token": "gIkuvaNzQIHg97ATvDxqgjtO"})
    r, sdk_ok = slack_post(host, ssl_check.encode(), FORM)
    assert sdk_ok and r.status_code == 200, r.text
    notice = {
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "type": "app_rate_limited",
        "team_id": "T123456",
        "minute_rate_limited": 1518467820,
        "api_app_id": "A123456",
    }
    r, sdk_ok = slack_post(host, json.dumps(notice).encode(), "application/json")
    assert sdk_ok and r.status_code == 200, r.text
    line = host.wait_for_log(
        msg="slack app rate-limited", invocation_id=r.headers["x-invocation-id"]
    )
    assert line["level"] == "warning"
    assert (line["team_id"], line["minute_rate_limited"]) == ("T123456", 1518467820)
    # a forged one is refused like any other unsigned delivery
    r, sdk_ok = slack_post(host, json.dumps(notice).encode(), "application/json", secret="no")
    assert not sdk_ok and r.status_code == 401


def test_slack_retries_of_an_event_are_processed_once(webhook_app: tuple[Host, Path]) -> None:
    host, app_dir = webhook_app
    body = json.dumps(
        {
            "token": "z",
            "team_id": "T061EG9R6",
            "api_app_id": "A0MDYCDME",
            "type": "event_callback",
            "event_id": "Ev0PV52K21",
            "event_time": 1,
            "event": {
                "type": "app_mention",
                "text": "<@U0LAN0Z89> hi",
                "channel": "C0LAN2Q65",
                "ts": "1515449522.000016",
            },
        }
    ).encode()
    first, _ = slack_post(host, body, "application/json")
    retry, _ = slack_post(
        host,
        body,
        "application/json",
        extra={"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"},
    )
    assert first.status_code == retry.status_code == 200
    wait_until(lambda: [d for d in delivered(app_dir, "slack") if d["id"] == "Ev0PV52K21"])
    time.sleep(0.3)
    seen = [d for d in delivered(app_dir, "slack") if d["id"] == "Ev0PV52K21"]
    assert len(seen) == 1 and seen[0]["type"] == "com.slack.event.app_mention"


@pytest.mark.parametrize(
    ("content_type", "payload", "error"),
    [
        (
            "application/json",
            {"type": "event_callback", "event_id": "Ev-shape", "event": "app_mention"},
            'the Slack event\'s event is "app_mention", not a JSON object',
        ),
        (
            FORM,
            {"type": "block_actions", "trigger_id": "t-shape", "team": "T9TK3CUKW"},
            'the Slack interactive payload\'s team is "T9TK3CUKW", not a JSON object',
        ),
        (
            FORM,
            {"type": "block_actions", "actions": "approve"},
            'the Slack interactive payload\'s actions is "approve", not a JSON array',
        ),
        (
            FORM,
            {"type": "block_actions", "actions": ["approve"]},
            'the Slack interactive payload\'s first action is "approve", not a JSON object',
        ),
    ],
    ids=["event", "team", "actions", "action"],
)
def test_a_signed_slack_delivery_of_another_shape_is_a_400_naming_it(
    webhook_app: tuple[Host, Path], content_type: str, payload: dict[str, Any], error: str
) -> None:
    host, _ = webhook_app
    if content_type == FORM:
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    else:
        body = json.dumps(payload).encode()
    r, sdk_ok = slack_post(host, body, content_type)
    assert sdk_ok
    assert (r.status_code, r.json()) == (400, {"error": error})


def test_slack_interactive_payload(webhook_app: tuple[Host, Path]) -> None:
    host, app_dir = webhook_app
    payload = {
        "type": "block_actions",
        "trigger_id": "12466734323.1395872398",
        "team": {"id": "T9TK3CUKW"},
        "user": {"id": "UA8RXUSPL"},
        "actions": [{"action_id": "approve", "action_ts": "1548426417.840180"}],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    r, sdk_ok = slack_post(host, body, FORM)
    assert sdk_ok and r.status_code == 200
    wait_until(
        lambda: [
            d
            for d in delivered(app_dir, "slack")
            if d["type"] == "com.slack.interactive.block_actions"
        ]
    )


# -- Standard Webhooks ------------------------------------------------------------------------
def test_standard_webhooks(webhook_app: tuple[Host, Path]) -> None:
    host, app_dir = webhook_app
    body = json.dumps(
        {"type": "invoice.paid", "timestamp": "2026-11-23T12:00:00Z", "data": {"invoice": "in_1"}}
    ).encode()
    msg_id, ts = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", str(int(time.time()))
    key = base64.b64decode(STD_SECRET.removeprefix("whsec_"))
    good = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": f"v1,bm90LXRoaXMtb25l v1,{good}",
        "content-type": "application/json",
    }
    r = httpx.post(host.url + "/webhooks/std", content=body, headers=headers)
    assert r.status_code == 202, r.text
    wait_until(lambda: delivered(app_dir, "std"))
    (seen,) = delivered(app_dir, "std")
    assert (seen["id"], seen["type"], seen["data"]) == (msg_id, "invoice.paid", {"invoice": "in_1"})
    bad = httpx.post(
        host.url + "/webhooks/std",
        content=body + b" ",
        headers={**headers, "webhook-id": "msg_other"},
    )
    assert bad.status_code == 401
    assert bad.json() == {"error": "webhook-signature has no v1 signature that matches the body"}


def std_post(host: Host, msg_id: str, body: bytes) -> httpx.Response:
    """Posts ``body`` signed as a Standard Webhooks sender signs it."""
    ts = str(int(time.time()))
    key = base64.b64decode(STD_SECRET.removeprefix("whsec_"))
    sig = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{sig}"}
    return httpx.post(host.url + "/webhooks/std", content=body, headers=headers)


def test_an_emoji_written_as_its_surrogate_pair_is_taken(webhook_app: tuple[Host, Path]) -> None:
    # Python's json.dumps writes one so (ensure_ascii)
    host, app_dir = webhook_app
    body = json.dumps({"type": "chat.said", "data": {"text": "hi \U0001f600"}}).encode()
    assert b"\\ud83d\\ude00" in body
    assert std_post(host, "msg_emoji", body).status_code == 202
    wait_until(lambda: [d for d in delivered(app_dir, "std") if d["id"] == "msg_emoji"])
    (seen,) = [d for d in delivered(app_dir, "std") if d["id"] == "msg_emoji"]
    assert seen["data"] == {"text": "hi \U0001f600"}


@pytest.mark.parametrize(
    ("constant", "why"),
    [
        ("NaN", "NaN is no JSON number"),
        ("Infinity", "Infinity is no JSON number"),
        ("-Infinity", "-Infinity is no JSON number"),
        ("1e400", "1e400 is past the range of a number"),  # read as infinity
        (
            '"\\ud83d cut"',  # an emoji cut in half, as a sender slicing UTF-16 leaves it
            "'\\ud83d' is half of a UTF-16 surrogate pair, not a character",
        ),
    ],
    ids=["nan", "infinity", "-infinity", "1e400", "lone-surrogate"],
)
def test_a_standard_webhook_holding_what_no_event_can_is_a_400_naming_it(
    webhook_app: tuple[Host, Path], constant: str, why: str
) -> None:
    # Python's json.dumps writes a float('nan') so; no JSON holds it, nor could the event
    host, _ = webhook_app
    body = b'{"type": "sensor.read", "data": {"value": %s}}' % constant.encode()
    r = std_post(host, f"msg_{len(constant)}_{constant[:3]}", body)
    assert (r.status_code, r.json()) == (
        400,
        {"error": f"the body is not JSON: {why}"},
    )
