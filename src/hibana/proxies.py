"""Which address a request really came from, behind proxies we trust.

The client address is the right-most address in ``Forwarded`` (RFC 7239) or
``X-Forwarded-For`` that is not a trusted proxy: every proxy appends the address it
received the request from, so the entries left of the first untrusted one could have
been written by the client itself and are never believed. A proxy that writes one of the
two headers passes the other on as the client sent it, so two that disagree are neither
believed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from hibana.errors import AppError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Iterable[str], where: str) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "127.0.0.1"]`` as networks; ``where`` names the setting in errors."""
    if isinstance(entries, str):
        raise AppError(f"trusted_proxies in {where} is a string; pass a list: [{entries!r}]")
    if not isinstance(entries, Iterable):
        raise AppError(
            f"trusted_proxies in {where} is {entries!r:.60}, no list; pass a list of "
            "addresses or networks, like ['10.0.0.0/8'] (or leave it out to trust none)"
        )
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
        except ValueError:
            raise AppError(
                f"trusted_proxies entry {entry!r} in {where} is not an address or network "
                "like '10.0.0.0/8' or '127.0.0.1'"
            ) from None
    return tuple(networks)


def _address(token: str) -> Address | None:
    token = token.strip().strip('"')
    if token.startswith("["):  # [2001:db8::1]:4711
        token = token[1 : token.find("]")] if "]" in token else ""
    elif token.count(":") == 1:  # 192.0.2.1:4711
        token = token.split(":")[0]
    try:
        return ipaddress.ip_address(token)
    except ValueError:
        return None


def _in(address: Address, trusted: Sequence[Network]) -> bool:
    """Whether ``address`` is in one of the ``trusted`` networks. An IPv4 address as a
    dual-stack socket (--host ::) shows it, ``::ffff:10.0.0.2``, is in an IPv4 network
    too, which it is not to ``ipaddress``."""
    if any(address in net for net in trusted):
        return True
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped is not None and any(mapped in net for net in trusted)


def _forwarded_for(forwarded: Sequence[str]) -> list[str]:
    """The ``for=`` hops of ``Forwarded`` headers, first (client side) to last; repeated
    headers are one list, in order."""
    hops = []
    for header in forwarded:
        for element in header.split(","):
            for pair in element.split(";"):
                key, _, value = pair.partition("=")
                if key.strip().lower() == "for":
                    hops.append(value)
    return hops


def forwarded_proto(forwarded: Sequence[str], x_forwarded_proto: Sequence[str]) -> str | None:
    """The scheme the nearest proxy says the request came in on, or None. Only what that
    proxy can have written counts: the right-most element of ``Forwarded`` (a ``proto``
    in an element further left, or in one without it, may be the client's own) and the
    right-most ``X-Forwarded-Proto``. When both headers are there and disagree, one of them
    passed through from the client, and which cannot be told: None. Only ``http`` and
    ``https`` count."""
    said = []
    if forwarded:
        last = forwarded[-1].split(",")[-1]
        proto = ""
        for pair in last.split(";"):
            key, _, value = pair.partition("=")
            if key.strip().lower() == "proto":
                proto = value
        said.append(proto)
    if x_forwarded_proto:
        said.append(x_forwarded_proto[-1].split(",")[-1])
    protos = {p.strip().strip('"').lower() for p in said}
    if len(protos) != 1:
        return None
    (proto,) = protos
    return proto if proto in ("http", "https") else None


def is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    """Whether ``peer`` (the socket's other end) is one of the ``trusted`` proxies."""
    address = None if peer is None else _address(peer)
    return address is not None and _in(address, trusted)


def client_ip(
    peer: str | None,
    forwarded: Sequence[str],
    x_forwarded_for: Sequence[str],
    trusted: Sequence[Network],
) -> str | None:
    """The right-most address of the hops the headers record that is not a trusted proxy,
    when ``peer`` (the socket's other end) is one; otherwise ``peer`` itself. ``Forwarded``
    and ``X-Forwarded-For`` each record the hops; a proxy writes one of them (or both,
    alike), and passes the other on as the client sent it. So when both are there and
    lead to different clients, which the proxy wrote cannot be told, and neither is
    believed: the nearest proxy is as far as we know (as ``forwarded_proto`` does)."""
    current = None if peer is None else _address(peer)
    if current is None or not _in(current, trusted):
        return peer
    x_hops = [hop for header in x_forwarded_for for hop in header.split(",")]
    found = {_walk(current, hops, trusted) for hops in (_forwarded_for(forwarded), x_hops) if hops}
    return found.pop() if len(found) == 1 else str(current)


def _walk(current: Address, chain: list[str], trusted: Sequence[Network]) -> str:
    """The right-most address in ``chain`` that is not a trusted proxy, ``current`` (a
    trusted proxy) having received the request from the last of them."""
    for hop in reversed(chain):
        address = _address(hop)
        if address is None:
            # "unknown" or an obfuscated name: the last proxy we trust is as far as we know
            return str(current)
        current = address
        if not _in(address, trusted):
            return str(address)
    return str(current)  # every hop is a trusted proxy: the left-most is all we have
