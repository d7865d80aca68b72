"""Who is on the other end: the socket peer, or what trusted proxies say in X-Forwarded-For.

``X-Forwarded-For`` is written by whoever sends the request, so only the entries appended by
proxies the operator trusts (``REX_TRUSTED_PROXIES``) mean anything. Each proxy appends the
address it received the request from; walking the list from the right and stopping at the
first address that is not a trusted proxy gives the real client, whatever a client wrote on
the left to impersonate someone else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: str) -> IPNetwork:
    """``"10.0.0.0/8"`` or ``"192.0.2.7"`` (a single address); raises ``ValueError``."""
    return ipaddress.ip_network(value.strip(), strict=False)


def parse_address(value: str) -> IPAddress | None:
    """An address from a header entry (``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:80``)."""
    text = value.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ProxyTrust:
    """The operator's trusted proxies, and the client address they vouch for."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(parse_network(entry) for entry in trusted)

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> IPAddress | None:
        """The client's address, given the socket peer and every ``X-Forwarded-For`` header."""
        current = parse_address(peer) if peer else None
        if current is None or not self.networks:
            return current
        hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
        while hops and self.trusts(current):
            previous = parse_address(hops.pop())
            if previous is None:
                # Garbage where a trusted proxy should have written an address: believe no
                # further, the last trusted hop is the best we know.
                break
            current = previous
        return current


def rate_limit_key(address: IPAddress | None) -> str:
    """The bucket a client counts against: its IPv4 address, or its IPv6 /64.

    One IPv6 subscriber usually holds a whole /64, so counting single IPv6 addresses would let
    one machine rotate through billions of them.
    """
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
