"""What a request no function takes is answered: 404, 405 and ``OPTIONS *``."""

from __future__ import annotations

from pathlib import Path

from tests.hosts import Host
from tests.http_wire import Connection


def test_a_404_quotes_a_long_path_cut_short(basic_host: Host) -> None:
    """GET /items/<5,000 digits> was answered a body of 5,042 bytes, the path whole, and
    logged so too: now its first 200 characters, and how long it was."""
    path = "/items/" + "1" * 5000
    with basic_host.client() as client:
        r = client.get(path)
    said = f"no function serves GET {path[:200]}… (5007 characters)"
    assert (r.status_code, r.json()) == (404, {"error": said})
    line = basic_host.wait_for_log(msg="no function", status=404)
    assert line["error"] == said


APP = """
import hibana

app = hibana.App()


@app.http("/str")
def text(req, ctx):
    return "text"


@app.http("/items", methods=["POST"])
def create(req, ctx):
    return "made"
"""


def test_options_star_claims_options_only_if_a_route_answers_it(tmp_path: Path) -> None:
    """``OPTIONS *`` (the server in general, RFC 9110 9.3.7) said ``allow: GET, HEAD, POST,
    OPTIONS`` while every OPTIONS to a path was a 405: now it names what the routes take,
    as each 405 names its route's (RFC 9110 15.5.6)."""
    (tmp_path / "function_app.py").write_text(APP)
    host = Host(tmp_path, "--workers", "1").wait_ready()
    try:
        with Connection(host) as conn:
            conn.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
            star = conn.response()
            assert (star.status, star.read()) == (200, b"")
            conn.send(b"OPTIONS /str HTTP/1.1\r\nHost: x\r\n\r\n")
            route = conn.response()
            route.read()
        assert star.getheader("allow") == "GET, HEAD, POST"
        assert (route.status, route.getheader("allow")) == (405, "GET, HEAD")
    finally:
        host.stop()
