"""req.client_ip behind proxies: never the address a client can write itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import hibana
from hibana.proxies import parse_networks
from tests.hosts import Host, started

TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1"], "test")


def request(peer: str | None, headers: list[tuple[str, str]], trusted: Any = TRUSTED) -> str | None:
    return make(peer, headers, trusted).client_ip


def make(
    peer: str | None, headers: list[tuple[str, str]], trusted: Any = TRUSTED
) -> hibana.Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": (peer, 5000) if peer else None,
        "scheme": "http",
    }
    return hibana.Request(scope, b"", {}, trusted)


def test_without_trusted_proxies_the_socket_peer_is_the_client() -> None:
    assert request("203.0.113.9", [("X-Forwarded-For", "1.2.3.4")], trusted=()) == "203.0.113.9"


def test_untrusted_peer_cannot_spoof_by_sending_the_header() -> None:
    assert request("203.0.113.9", [("X-Forwarded-For", "1.2.3.4")]) == "203.0.113.9"


def test_right_most_untrusted_hop_wins_not_the_left_most() -> None:
    # the client wrote "6.6.6.6" itself; our proxy 10.0.0.2 appended the real address
    chain = [("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.0.0.5")]
    assert request("10.0.0.2", chain) == "198.51.100.7"


def test_repeated_x_forwarded_for_headers_are_one_chain() -> None:
    headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")]
    assert request("127.0.0.1", headers) == "198.51.100.7"


def test_forwarded_header_with_ports_quotes_and_ipv6() -> None:
    headers = [
        ("Forwarded", 'for=6.6.6.6, for="[2001:db8::17]:4711";proto=https, for=10.1.2.3:80'),
    ]
    assert request("10.0.0.2", headers) == "2001:db8::17"


def test_forwarded_and_x_forwarded_for_that_agree_are_believed() -> None:
    headers = [
        ("X-Forwarded-For", "6.6.6.6, 198.51.100.7"),
        ("Forwarded", "for=198.51.100.7"),
    ]
    assert request("10.0.0.2", headers) == "198.51.100.7"
    # a Forwarded that names no address says nothing against X-Forwarded-For
    headers = [("Forwarded", "proto=https"), ("X-Forwarded-For", "198.51.100.7")]
    assert request("10.0.0.2", headers) == "198.51.100.7"


@pytest.mark.parametrize(
    "headers",
    [
        # nginx, an AWS ALB: the proxy appends X-Forwarded-For, passes Forwarded on
        [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")],
        # a proxy that writes Forwarded passes on the client's X-Forwarded-For
        [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=198.51.100.7")],
    ],
)
def test_forwarded_and_x_forwarded_for_that_disagree_give_the_proxy(
    headers: list[tuple[str, str]],
) -> None:
    # which of the two the client wrote cannot be told: the proxy is as far as we know
    assert request("10.0.0.2", headers) == "10.0.0.2"


def test_all_hops_trusted_gives_the_left_most() -> None:
    assert request("10.0.0.2", [("X-Forwarded-For", "10.9.9.9, 10.0.0.1")]) == "10.9.9.9"


def test_unknown_hop_stops_at_the_last_trusted_proxy() -> None:
    headers = [("Forwarded", "for=unknown, for=10.0.0.7")]
    assert request("10.0.0.2", headers) == "10.0.0.7"


def test_no_forwarding_header_from_a_trusted_proxy_gives_the_proxy() -> None:
    assert request("10.0.0.2", []) == "10.0.0.2"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["10.0.0.0/33"], "trusted_proxies entry '10.0.0.0/33' in x.py:1 is not an address"),
        ("10.0.0.0/8", "trusted_proxies in x.py:1 is a string; pass a list"),
        # it raised TypeError: 'NoneType' object is not iterable
        (None, r"trusted_proxies in x.py:1 is None, no list; pass a list of addresses"),
    ],
)
def test_bad_trusted_proxies_are_clear_errors(entries: Any, message: str) -> None:
    with pytest.raises(hibana.AppError, match=message):
        parse_networks(entries, "x.py:1")


@pytest.fixture(scope="module")
def proxied() -> Iterator[Host]:
    yield from started("behind_proxy", "--workers", "1")


def test_through_the_host_spoofing_is_ignored(proxied: Host) -> None:
    with proxied.client() as client:
        direct = client.get("/ip").json()
        spoofed = client.get(
            "/ip", headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")]
        ).json()
    # the peer is 127.0.0.1, a trusted proxy: it appended 198.51.100.7; 6.6.6.6 is ignored
    assert direct["client_ip"] == "127.0.0.1"
    assert spoofed["client_ip"] == "198.51.100.7"
    assert spoofed["peer"][0] == "127.0.0.1"


def test_through_the_host_a_forwarded_header_cannot_spoof_past_x_forwarded_for(
    proxied: Host,
) -> None:
    # the proxy (127.0.0.1) appended X-Forwarded-For; the client wrote Forwarded itself
    headers = [("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")]
    with proxied.client() as client:
        assert client.get("/ip", headers=headers).json()["client_ip"] == "127.0.0.1"


def test_an_ipv4_address_a_dual_stack_socket_shows_is_in_either_network() -> None:
    chain = [("X-Forwarded-For", "198.51.100.7, ::ffff:10.0.0.5")]
    assert request("::ffff:10.0.0.2", chain) == "198.51.100.7"
    mapped = parse_networks(["::ffff:10.0.0.0/104"], "test")  # as one may have written it
    assert request("::ffff:10.0.0.2", chain, mapped) == "198.51.100.7"


def test_through_a_dual_stack_host_an_ipv4_proxy_is_trusted() -> None:
    """Bound to ``::``, the host sees an IPv4 peer as ``::ffff:127.0.0.1``, which
    ``127.0.0.1/32`` did not hold: the proxy's headers were ignored, and the client was
    the proxy, on plain http."""
    for host in started("behind_proxy", "--workers", "1", "--host", "::"):
        ipv4 = host.url.replace("[::]", "127.0.0.1")
        headers = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
        with httpx.Client(base_url=ipv4, timeout=30) as client:
            ip = client.get("/ip", headers=headers).json()
            url = client.get("/url", headers=headers).json()
        assert ip == {"client_ip": "198.51.100.7", "peer": ["::ffff:127.0.0.1", ip["peer"][1]]}
        assert url["scheme"] == "https"


@pytest.mark.parametrize(
    ("peer", "headers", "scheme"),
    [
        ("127.0.0.1", [("X-Forwarded-Proto", "https")], "https"),
        ("203.0.113.9", [("X-Forwarded-Proto", "https")], "http"),  # not a proxy we trust
        ("127.0.0.1", [("X-Forwarded-Proto", "http, https")], "https"),  # the nearest's
        ("127.0.0.1", [("Forwarded", 'for=1.2.3.4;proto="https"')], "https"),
        # only the nearest proxy's element counts: a proto further left is the client's
        ("127.0.0.1", [("Forwarded", "proto=https, for=198.51.100.7")], "http"),
        ("127.0.0.1", [("Forwarded", "proto=https"), ("Forwarded", "for=1.2.3.4")], "http"),
        # the two headers disagree: one came from the client, and which cannot be told
        ("127.0.0.1", [("Forwarded", "proto=https"), ("X-Forwarded-Proto", "http")], "http"),
        ("127.0.0.1", [("Forwarded", "for=1.2.3.4"), ("X-Forwarded-Proto", "https")], "http"),
        ("127.0.0.1", [("Forwarded", "proto=https"), ("X-Forwarded-Proto", "https")], "https"),
        ("127.0.0.1", [("X-Forwarded-Proto", "gopher")], "http"),  # not a scheme of ours
        ("127.0.0.1", [], "http"),
    ],
)
def test_the_scheme_a_trusted_proxy_forwards(
    peer: str, headers: list[tuple[str, str]], scheme: str
) -> None:
    assert make(peer, headers).scheme == scheme
    assert make(peer, headers, trusted=()).scheme == "http"


def test_through_the_host_urls_and_mounted_apps_follow_the_proxy(proxied: Host) -> None:
    forwarded = {
        "Host": "app.example.com",
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Proto": "https",
    }
    with proxied.client() as client:
        own = client.get("/url", headers=forwarded).json()
        flask = client.get("/flask/info", headers=forwarded).json()
        fastapi = client.get("/api/info", headers=forwarded).json()
        direct = client.get("/flask/info").json()
    assert own == {"url": "https://app.example.com/url", "scheme": "https"}
    assert flask == {
        "url": "https://app.example.com/flask/info",
        "remote_addr": "203.0.113.9",
        "scheme": "https",
    }
    assert fastapi == {"url": "https://app.example.com/api/info", "client": "203.0.113.9"}
    assert (direct["scheme"], direct["remote_addr"]) == ("http", "127.0.0.1")
