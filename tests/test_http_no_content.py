"""A 204 or 304 answer has no content (RFC 9110 15.3.5, 15.4.5): what a function gives
with one is not sent, nor its Content-Type, and the developer is told once."""

from __future__ import annotations

from tests.hosts import Host


def test_a_204_or_304_sends_no_content_type_and_says_once_that_the_body_was_dropped(
    basic_host: Host,
) -> None:
    """``Response("x", status=204)`` went out with ``content-type: text/plain`` and no
    word that "x" was dropped; a 304's text/plain would replace, in a cache, the type of
    the response it revalidates."""
    with basic_host.client() as client:  # one connection: one worker
        no_content = client.get("/answer/204")
        again = client.get("/answer/204")
        not_modified = client.get(
            "/answer/304", params={"h": ['ETag:"v1"', "Cache-Control:max-age=60"]}
        )
    for r in (no_content, again):
        assert (r.status_code, r.content) == (204, b"")
        assert "content-type" not in r.headers and "content-length" not in r.headers
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert "content-type" not in not_modified.headers
    assert not_modified.headers["etag"] == '"v1"'  # what a cache updates its copy with
    assert not_modified.headers["cache-control"] == "max-age=60"
    line = basic_host.wait_for_log(
        msg="invocation", invocation_id=not_modified.headers["x-invocation-id"]
    )
    assert line["status"] == 304
    (told,) = [
        x for x in basic_host.logs() if x["level"] == "warning" and x.get("function") == "answer"
    ]
    assert told["invocation_id"] == no_content.headers["x-invocation-id"]
    assert "gave a body with status 204, which has no content" in told["msg"]
    assert "give status 200 to send them" in told["msg"]
