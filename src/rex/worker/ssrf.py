"""Which destinations Rex may send webhooks to (server-side request forgery guard).

Two layers use this module:

* ``validate_endpoint_url`` runs when an endpoint is created or updated. It
  refuses bad URLs and literal IP hosts that the policy refuses, in every
  spelling a browser or libc accepts (``2130706433``, ``0x7f.1``, ``127.1``,
  ``[::ffff:127.0.0.1]``...). It never resolves names: DNS can change between
  creation and delivery.
* The transport calls ``DestinationPolicy.refusal_reason`` at connect time on
  every address it is about to dial, which is the check that actually matters.

The address tables are written out here instead of relying on
``ipaddress``'s ``is_private``/``is_global``, whose meaning changed between
Python patch releases.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Sequence
from typing import TypeAlias

from yarl import URL

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

__all__ = [
    "MAX_URL_LENGTH",
    "DestinationPolicy",
    "DestinationRefused",
    "parse_ip_host",
    "validate_endpoint_url",
]


class DestinationRefused(OSError):
    """A connection was not attempted because the policy refuses the address.

    It is an ``OSError`` so that connection machinery (aiohttp's connector,
    aiohappyeyeballs) treats it like any other failed connect: it cleans up
    and never dials.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


# Addresses of cloud instance-metadata services; refused with their own message
# because they hand out credentials.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack...
        "169.254.170.2",  # AWS ECS task metadata / credentials
        "169.254.170.23",  # AWS EKS pod identity agent
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public-range address)
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity agent over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
    )
)


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), what) for net, what in pairs)


# First match wins, so the narrower ranges come first.
_V4_REFUSED = _nets(
    ("255.255.255.255/32", "the broadcast address"),
    ("0.0.0.0/32", "the unspecified address"),
    ("0.0.0.0/8", "a 'this network' address"),  # Linux connects 0.x to this host
    ("127.0.0.0/8", "a loopback address"),
    ("10.0.0.0/8", "a private address"),
    ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
    ("169.254.0.0/16", "a link-local address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("192.0.0.0/24", "a reserved (IETF protocol) address"),
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("192.88.99.0/24", "a reserved (6to4 relay) address"),
)

_V6_REFUSED = _nets(
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("ff00::/8", "a multicast address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local (private) address"),
    ("fc00::/7", "a private (unique local) address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("2001::/23", "a reserved (IETF protocol) address"),  # Teredo, benchmarking...
    ("100::/64", "a reserved (discard-only) address"),
)

_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")


def _v4_category(ip: ipaddress.IPv4Address) -> str | None:
    if ip in _METADATA:
        return "a cloud metadata address"
    for net, what in _V4_REFUSED:
        if ip in net:
            return what
    return None


def _show(ip: ipaddress.IPv6Address) -> str:
    """``::ffff:127.0.0.1`` rather than Python 3.11's ``::ffff:7f00:1``."""
    if ip.ipv4_mapped is None:
        return str(ip)
    return f"::ffff:{ip.ipv4_mapped}" + (f"%{ip.scope_id}" if ip.scope_id else "")


def _low_32_bits(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _v6_reason(ip: ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is refused, as a full sentence, or None."""
    plain = ipaddress.IPv6Address(int(ip))  # without a %zone, for the table lookups
    shown = _show(ip)
    if plain in _METADATA:
        return f"{shown} is a cloud metadata address"

    # Forms that carry an IPv4 address are refused when that address is. A
    # mapped address is dialled as the IPv4 address itself, and NAT64 and 6to4
    # relay to it, so a public IPv4 address makes those public too; the
    # deprecated IPv4-compatible form never is (it falls under "reserved").
    embedded: tuple[str, ipaddress.IPv4Address, bool] | None = None
    if plain.ipv4_mapped is not None:
        embedded = ("an IPv4-mapped form", plain.ipv4_mapped, True)
    elif plain in _IPV4_COMPATIBLE and int(plain) > 1:  # not :: or ::1
        embedded = ("an IPv4-compatible form", _low_32_bits(plain), False)
    elif plain in _NAT64:
        embedded = ("a NAT64 form", _low_32_bits(plain), True)
    elif plain.sixtofour is not None:
        embedded = ("a 6to4 form", plain.sixtofour, True)
    if embedded is not None:
        form, v4, reaches_v4 = embedded
        category = _v4_category(v4)
        if category is not None:
            return f"{shown} is {form} of {v4}, {category}"
        if reaches_v4:
            return None

    for net, what in _V6_REFUSED:
        if plain in net:
            return f"{shown} is {what}"
    if plain not in _GLOBAL_UNICAST:
        return f"{shown} is a reserved address"
    return None


class DestinationPolicy:
    """Decides which IP addresses webhooks may be delivered to.

    By default only public unicast addresses are allowed. ``allow_private``
    allows everything (local development); ``allowed_networks`` (CIDRs such as
    ``"10.1.0.0/16"`` or ``"::1/128"``, or single addresses) opens specific
    ranges.
    """

    __slots__ = ("allow_private", "allowed_networks")

    def __init__(self, allow_private: bool = False, allowed_networks: Sequence[str] = ()) -> None:
        if isinstance(allowed_networks, str):
            raise TypeError("allowed_networks must be a sequence of CIDR strings, not a string")
        networks: list[IPNetwork] = []
        for cidr in allowed_networks:
            try:
                networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{cidr!r} is not a valid IP network (CIDR)") from None
        self.allow_private = allow_private
        self.allowed_networks: tuple[IPNetwork, ...] = tuple(networks)

    def __repr__(self) -> str:
        nets = [str(n) for n in self.allowed_networks]
        return f"DestinationPolicy(allow_private={self.allow_private!r}, allowed_networks={nets!r})"

    def refusal_reason(self, address: str | IPAddress) -> str | None:
        """Return why ``address`` is refused (e.g. "127.0.0.1 is a loopback
        address"), or None when it is allowed.

        A string may use any form ``parse_ip_host`` accepts; a string that is
        not an IP address raises ``ValueError``.
        """
        if isinstance(address, str):
            parsed = parse_ip_host(address)
            if parsed is None:
                raise ValueError(f"{address!r} is not an IP address")
            address = parsed
        if self.allow_private or self._is_allowed(address):
            return None
        if isinstance(address, ipaddress.IPv4Address):
            category = _v4_category(address)
            return None if category is None else f"{address} is {category}"
        return _v6_reason(address)

    def _is_allowed(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            plain = ipaddress.IPv6Address(int(ip))
            candidates.append(plain)
            if plain.ipv4_mapped is not None:
                candidates.append(plain.ipv4_mapped)
        return any(
            c.version == net.version and c in net
            for c in candidates
            for net in self.allowed_networks
        )


_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def _ipv4_number(part: str) -> int | None:
    if not part.isascii() or _IPV4_PART.fullmatch(part) is None:
        return None
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8)
    return int(part)


def _ipv4_parts(host: str) -> list[str]:
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot: "127.0.0.1."
    return parts


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse the IPv4 forms of the WHATWG URL standard and inet_aton(3):
    one to four parts, each decimal, octal (leading 0) or hex (0x)."""
    parts = _ipv4_parts(host)
    if len(parts) > 4:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    value = 0
    for i, n in enumerate(numbers):
        if n is None:
            return None
        if i < len(numbers) - 1:
            if n > 255:
                return None
            value |= n << (8 * (3 - i))
        elif n >= 256 ** (5 - len(numbers)):
            return None
        else:
            value |= n
    return ipaddress.IPv4Address(value)


def _ends_in_a_number(host: str) -> bool:
    """WHATWG's "ends in a number": such a host must be an IPv4 address."""
    last = _ipv4_parts(host)[-1]
    return (last.isascii() and last.isdigit()) or re.fullmatch(
        r"0[xX][0-9a-fA-F]*", last
    ) is not None


def _normalize_host(host: str) -> str:
    # Browsers and IDNA turn full-width digits and dots (U+FF11 "1", U+FF0E ".")
    # into ASCII; so do we before deciding whether a host is an address.
    host = unicodedata.normalize("NFKC", host.strip()).lower()
    return host.replace("\u3002", ".").replace("\uff0e", ".").replace("\uff61", ".")


def parse_ip_host(host: str) -> IPAddress | None:
    """Return the IP address a URL host denotes, or None when it is a name.

    Recognizes dotted quads and the legacy forms browsers and libc accept
    (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``, a trailing dot),
    IPv6 with or without brackets, and a ``%25``-encoded zone
    (``[fe80::1%25eth0]``).
    """
    host = _normalize_host(host)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        host = urllib.parse.unquote(host)  # "%25eth0" -> "%eth0"
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    return _parse_ipv4(host)


def validate_endpoint_url(url: str, policy: DestinationPolicy) -> str | None:
    """Return why ``url`` cannot be a webhook endpoint, or None if it can.

    Requires an absolute ``http``/``https`` URL with a host and without
    credentials. Literal IP hosts (in any spelling) are checked against
    ``policy``; names are not resolved here, because what they resolve to is
    checked at connect time.
    """
    if not url:
        return "URL is required"
    if len(url) > MAX_URL_LENGTH:
        return f"URL is longer than {MAX_URL_LENGTH} characters"
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
        return "URL must not contain spaces or control characters"
    scheme, colon, rest = url.partition(":")
    if not colon or not rest.startswith("//"):
        return "URL must start with http:// or https://"
    if scheme.lower() not in ("http", "https"):
        return f"URL scheme must be http or https, not {scheme.lower()!r}"
    try:
        parsed = URL(url)
        port = parsed.port
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError as exc:
        return f"URL is not valid: {exc}"
    if "@" in netloc or parsed.user is not None:
        return "URL must not contain a user name or password (user:password@host)"
    host = parsed.raw_host
    if not host:
        return "URL must include a host"
    if port is not None and not 1 <= port <= 65535:
        return "URL port must be between 1 and 65535"
    ip = parse_ip_host(host)
    if ip is None:
        if ":" in host or _ends_in_a_number(_normalize_host(host)):
            return f"URL host {host} is not a valid IP address"
        return None
    return policy.refusal_reason(ip)
