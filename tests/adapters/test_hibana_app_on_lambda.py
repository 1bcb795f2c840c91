"""A hibana App on AWS Lambda (hibana.aws.handler): deadlines, request ids and traces (X-Ray),
streams, and what its events carry (headers, charsets, base64, null values)."""

from __future__ import annotations

import asyncio
import base64
import json
from types import ModuleType

import pytest

import hibana.aws
from tests.adapters.payloads import (
    Ctx,
    MakeHandler,
    v1_event,
    v2_event,
)


def test_a_hibana_app_on_lambda_gets_deadline_request_id_and_trace(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.app)
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": trace}), Ctx())
    assert out["statusCode"] == 200 and out["body"] == "native"
    assert out["headers"]["x-invocation-id"] == Ctx.aws_request_id.replace("-", "")
    assert out["headers"]["traceparent"].startswith("00-5759e988bd862e3fe1be46a994272793-")
    # Lambda's remaining time (2.5 s) is the deadline, not the function's 60 s timeout
    left = json.loads(handle(v2_event("GET", "/remaining"), Ctx())["body"])["remaining"]
    assert 2.0 < left <= 2.5
    # the mounts inside the hibana app work on Lambda too
    flask = handle(v2_event("GET", "/flask/items/9", "tag=x"), Ctx())
    assert json.loads(flask["body"])["self_url"] == "/flask/items/9"


class ShortCtx(Ctx):
    """A Lambda invocation with a fifth of a second left."""

    def get_remaining_time_in_millis(self) -> int:
        return 200


def test_a_function_cut_off_by_lambdas_deadline_says_so_not_its_own_timeout(
    lambda_handler: MakeHandler, capfd: pytest.CaptureFixture[str]
) -> None:
    """Lambda's time left, not the function's 60 s timeout, ended it: both the 504 and the
    log line said "timed out after 60s"."""
    app = hibana.App()

    @app.http("/wait")
    async def wait(req: hibana.Request, ctx: hibana.Context) -> str:
        await asyncio.Event().wait()  # never set: only the deadline ends it
        return "never"

    out = lambda_handler(app)(v2_event("GET", "/wait"), ShortCtx())
    assert out["statusCode"] == 504
    assert json.loads(out["body"])["error"] == (
        "function 'wait' did not finish by its caller's deadline (on AWS Lambda, the time "
        "the invocation had left), which came before its timeout of 60s"
    )
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line]
    (line,) = [r for r in lines if r["msg"] == "invocation"]
    assert (line["outcome"], line["error"]) == (
        "timeout",
        "timed out at its caller's deadline, before its 60s timeout",
    )


def test_a_stream_that_breaks_off_on_lambda_fails_the_invocation(
    mounts: ModuleType, lambda_handler: MakeHandler, capfd: pytest.CaptureFixture[str]
) -> None:
    # Lambda buffers the body: half of one must not be returned as a 200; the invocation
    # fails instead, and API Gateway answers 502
    handle = lambda_handler(mounts.app)
    with pytest.raises(RuntimeError, match="cut short"):
        handle(v2_event("GET", "/api/events-broken"), Ctx())
    # and its log line (on stdout, for CloudWatch) says why
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line]
    (line,) = [r for r in lines if r["msg"] == "invocation"]
    assert (line["outcome"], line["error"]) == ("error", "RuntimeError: the feed went away")


def test_a_latin1_header_value_reaches_a_hibana_app_on_lambda(
    lambda_handler: MakeHandler,
) -> None:
    """Every header was decoded as UTF-8 to look for X-Ray's: ``café`` (Latin-1, as HTTP
    has it) raised UnicodeDecodeError and the invocation failed before the app ran."""
    app = hibana.App()

    @app.http("/name")
    def name(req: hibana.Request, ctx: hibana.Context) -> str:
        return req.headers.get("x-name") or ""

    out = lambda_handler(app)(v2_event("GET", "/name", headers={"x-name": "café"}), Ctx())
    assert (out["statusCode"], out["body"]) == (200, "café")


def test_enqueue_on_lambda_says_there_is_no_store_there(lambda_handler: MakeHandler) -> None:
    app = hibana.App()

    @app.http("/send")
    async def send(req: hibana.Request, ctx: hibana.Context) -> str:
        try:
            await ctx.enqueue("jobs", {})
        except hibana.QueueError as exc:
            return str(exc)
        return "sent"

    @app.queue("jobs")
    async def jobs(msg: hibana.Message, ctx: hibana.Context) -> None: ...

    said = lambda_handler(app)(v2_event("GET", "/send"), Ctx())["body"]
    assert "it runs outside hibana's host (hibana.aws.handler on Lambda has no store" in said


def test_a_stream_on_lambda_comes_back_whole(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """Starlette's StreamingResponse listens for a disconnect while it streams: Lambda's
    client is there until the answer, so none may come before it."""
    # FastAPI on its own, and mounted in the hibana app
    for handle, path in (
        (lambda_handler(mounts.api), "/events"),
        (lambda_handler(mounts.app), "/api/events"),
    ):
        out = handle(v2_event("GET", path), Ctx())
        assert out["statusCode"] == 200
        assert out["body"] == "data: tick 0\n\ndata: tick 1\n\ndata: tick 2\n\n"


def test_x_ray_root_without_a_parent_is_continued_on_lambda(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    handle = lambda_handler(mounts.app)
    root = "Root=1-65f1a2b3-4c5d6e7f8a9b0c1d2e3f4a5b;Sampled=1"  # what an ALB sends
    out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": root}), Ctx())
    assert out["headers"]["traceparent"].startswith("00-65f1a2b34c5d6e7f8a9b0c1d2e3f4a5b-")
    assert out["headers"]["traceparent"].endswith("-01")
    bad = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": "Root=1-zz-yy"}), Ctx())
    assert bad["statusCode"] == 200  # a Root that does not read: a new trace


def test_the_lambda_runtimes_x_ray_trace_is_continued_when_no_traceparent_is_given(
    mounts: ModuleType, lambda_handler: MakeHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime sets _X_AMZN_TRACE_ID before each invocation; it was never read, so a
    request without an X-Amzn-Trace-Id header (a direct invocation, a Function URL's test)
    started a trace of its own, apart from Lambda's."""
    handle = lambda_handler(mounts.app)
    runtime = "Root=1-6571c9a0-0123456789abcdef01234567;Parent=1a2b3c4d5e6f7a8b;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", runtime)
    out = handle(v2_event("GET", "/native"), Ctx())
    assert out["headers"]["traceparent"].startswith("00-6571c9a00123456789abcdef01234567-")
    # it is the trace of this very invocation, Lambda's segment its parent: before the
    # request's header, which names the caller Lambda continued from
    header = {"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}
    out = handle(v2_event("GET", "/native", headers=header), Ctx())
    assert out["headers"]["traceparent"].startswith("00-6571c9a00123456789abcdef01234567-")
    # a traceparent the request carries goes first
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    out = handle(v2_event("GET", "/native", headers={"traceparent": traceparent}), Ctx())
    assert out["headers"]["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    # and one that does not read leaves the request's header to go on from
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-zz-yy")
    out = handle(v2_event("GET", "/native", headers=header), Ctx())
    assert out["headers"]["traceparent"].startswith("00-5759e988bd862e3fe1be46a994272793-")


@pytest.mark.parametrize(
    "root",
    [
        "1-5759e98-8bd862e3fe1be46a994272793",  # 7 and 25 digits: 32 hex, cut wrong
        "1-5759e988b-d862e3fe1be46a994272793",  # 9 and 23
        "2-5759e988-bd862e3fe1be46a994272793",  # a version X-Ray does not have
        "-5759e988-bd862e3fe1be46a994272793",
    ],
)
def test_an_x_ray_root_not_of_its_documented_shape_starts_a_new_trace_on_lambda(
    root: str, mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A Root is ``1-`` and 8 and 24 hex digits: one cut elsewhere, or of another version,
    was read as the trace id its 32 digits make."""
    handle = lambda_handler(mounts.app)
    made = root.split("-", 1)[1].replace("-", "")
    for amzn in (f"Root={root}", f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"):
        out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": amzn}), Ctx())
        assert out["statusCode"] == 200
        trace_id = out["headers"]["traceparent"].split("-")[1]
        assert len(trace_id) == 32 and trace_id != made


def test_an_x_ray_parent_that_does_not_read_keeps_its_root_on_lambda(
    mounts: ModuleType, lambda_handler: MakeHandler
) -> None:
    """A Parent of 15 digits lost the whole trace: the Root, which reads, is the trace."""
    handle = lambda_handler(mounts.app)
    root = "Root=1-5759E988-BD862E3FE1BE46A994272793"  # hex in capitals reads too
    for parent in (";Parent=53995c3f42cd8ad", ";Parent=0000000000000000", ";Parent="):
        amzn = f"{root}{parent};Sampled=1"
        out = handle(v2_event("GET", "/native", headers={"x-amzn-trace-id": amzn}), Ctx())
        assert out["headers"]["traceparent"].startswith("00-5759e988bd862e3fe1be46a994272793-")


def test_text_in_another_charset_goes_base64_on_lambda(lambda_handler: MakeHandler) -> None:
    app = hibana.App()

    @app.http("/latin")
    def latin(req: hibana.Request, ctx: hibana.Context) -> hibana.Response:
        return hibana.Response(b"caf\xe9", content_type="text/plain; charset=iso-8859-1")

    out = lambda_handler(app)(v2_event("GET", "/latin"), Ctx())
    assert out["isBase64Encoded"] is True
    assert base64.b64decode(out["body"]) == b"caf\xe9"


def test_a_null_header_value_in_a_lambda_event_is_no_header(lambda_handler: MakeHandler) -> None:
    """It reached the function as the text "None" (and a null Host failed the request)."""
    app = hibana.App()

    @app.http("/seen")
    def seen(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
        return {"x-tenant": req.headers.getlist("x-tenant"), "host": req.url}

    handle = lambda_handler(app)
    v2 = v2_event("GET", "/seen")
    v2["headers"].update({"x-tenant": None, "host": None})
    out = handle(v2, Ctx())
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"])["x-tenant"] == []
    v1 = v1_event("GET", "/seen")
    v1["headers"]["x-tenant"] = None
    v1["multiValueHeaders"]["x-tenant"] = [None]
    out = handle(v1, Ctx())
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"])["x-tenant"] == []


def test_is_base64_encoded_as_a_string_and_null_query_values(lambda_handler: MakeHandler) -> None:
    """``"isBase64Encoded": "false"`` (a templated test event) decoded a plain body as base64;
    a null query value reached the function as the text "None"."""
    app = hibana.App()

    @app.http("/seen", methods=["POST"])
    def seen(req: hibana.Request, ctx: hibana.Context) -> dict[str, object]:
        return {"body": req.body.decode(), "tag": req.query.getlist("tag")}

    handle = lambda_handler(app)
    v1 = v1_event("POST", "/seen", body=b"plain text")
    v1["isBase64Encoded"] = "false"
    v1["queryStringParameters"] = {"tag": None}
    v1["multiValueQueryStringParameters"] = {"tag": [None]}
    out = handle(v1, Ctx())
    assert out["statusCode"] == 200, out
    assert json.loads(out["body"]) == {"body": "plain text", "tag": []}
    v2 = v2_event("POST", "/seen", body=base64.b64encode(b"sent as base64"))
    v2["isBase64Encoded"] = "true"
    out = handle(v2, Ctx())
    assert json.loads(out["body"])["body"] == "sent as base64"
