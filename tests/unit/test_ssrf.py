"""The destination policy and URL validation. Nothing here touches the network:
addresses are only classified, never connected to or resolved."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rex.worker.ssrf import (
    DestinationPolicy,
    DestinationRefused,
    parse_ip_host,
    validate_endpoint_url,
)

STRICT = DestinationPolicy()

REFUSED = [
    # (address, words the reason must contain)
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fd00::1", "private"),
    ("fc00::1", "private"),
    ("fec0::1", "site-local"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network"),
    ("::", "unspecified"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("100::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("4000::1", "reserved"),  # outside 2000::/3
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped form of 10.0.0.1, a private"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254, a cloud metadata"),
    ("::ffff:0.0.0.0", "IPv4-mapped form of 0.0.0.0"),
    ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1"),
    ("::8.8.8.8", "reserved"),  # deprecated IPv4-compatible form
    ("64:ff9b::10.0.0.1", "NAT64 form of 10.0.0.1"),
    ("64:ff9b::169.254.169.254", "NAT64 form of 169.254.169.254, a cloud metadata"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:7f00:1::1", "6to4 form of 127.0.0.1"),
    ("2002:a9fe:a9fe::", "6to4 form of 169.254.169.254"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.32.0.1",  # just above 172.16/12
    "2606:4700::1",
    "2a00:1450:4001::1",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "words"), REFUSED)
def test_refused_addresses_say_why(address: str, words: str) -> None:
    reason = STRICT.refusal_reason(address)
    assert reason is not None
    assert words in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert STRICT.refusal_reason(address) is None
    assert STRICT.refusal_reason(ipaddress.ip_address(address)) is None


def test_reason_reads_as_a_sentence() -> None:
    assert STRICT.refusal_reason("127.0.0.1") == "127.0.0.1 is a loopback address"
    assert STRICT.refusal_reason("[::1]") == "::1 is a loopback address"
    assert STRICT.refusal_reason("169.254.169.254") == "169.254.169.254 is a cloud metadata address"
    assert (
        STRICT.refusal_reason("::ffff:10.0.0.1")
        == "::ffff:10.0.0.1 is an IPv4-mapped form of 10.0.0.1, a private address"
    )


def test_accepts_address_objects() -> None:
    assert (
        STRICT.refusal_reason(ipaddress.IPv4Address("10.1.2.3")) == "10.1.2.3 is a private address"
    )
    assert STRICT.refusal_reason(ipaddress.IPv6Address("::1")) == "::1 is a loopback address"


@pytest.mark.parametrize("encoded", ["2130706433", "0177.0.0.1", "0x7f000001", "127.1", "0x7f.1"])
def test_legacy_encodings_of_loopback_are_refused(encoded: str) -> None:
    assert parse_ip_host(encoded) == ipaddress.IPv4Address("127.0.0.1")
    assert STRICT.refusal_reason(encoded) == "127.0.0.1 is a loopback address"


def test_a_name_is_not_an_address() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        STRICT.refusal_reason("localhost")


# -- parse_ip_host -------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing dot
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0X7F.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1.1", "10.1.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),  # full-width digits
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[fe80::1%25eth0]", "fe80::1%eth0"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
    ],
)
def test_parse_ip_host(host: str, expected: str) -> None:
    assert parse_ip_host(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "localhost",
        "1.2.3.4.5",
        "256.0.0.1",
        "1.2.3.256",
        "09.0.0.1",
        "0x1g",
        "",
        "[::1",
        "1.2.3.4x",
        "::g",
        "[not-ipv6]",
        "127.0.0.1..",
    ],
)
def test_parse_ip_host_rejects_names_and_invalid_forms(host: str) -> None:
    assert parse_ip_host(host) is None


octet = st.integers(0, 255)


def _legacy_form(draw: st.DrawFn, value: int) -> str:
    """One of the spellings inet_aton(3) accepts for ``value``."""
    parts_count = draw(st.integers(1, 4))
    octets = list(value.to_bytes(4, "big"))
    head, tail_bytes = octets[: parts_count - 1], octets[parts_count - 1 :]
    parts = [*head, int.from_bytes(bytes(tail_bytes), "big")]
    spelled = []
    for part in parts:
        style = draw(st.sampled_from(["dec", "oct", "hex"]))
        if style == "dec":
            spelled.append(str(part))
        elif style == "oct":
            spelled.append("0" + format(part, "o"))
        else:
            spelled.append(draw(st.sampled_from(["0x", "0X"])) + format(part, "x"))
    return ".".join(spelled)


@st.composite
def legacy_ipv4(draw: st.DrawFn) -> tuple[int, str]:
    value = draw(st.integers(0, 2**32 - 1))
    return value, _legacy_form(draw, value)


@given(legacy_ipv4())
def test_parse_ip_host_agrees_with_libc(case: tuple[int, str]) -> None:
    value, spelled = case
    # inet_aton is a pure parser (no lookup): it is what the C library dials.
    assert socket.inet_aton(spelled) == value.to_bytes(4, "big")
    assert parse_ip_host(spelled) == ipaddress.IPv4Address(value)


REFUSED_V4_NETWORKS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
]


@st.composite
def refused_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = ipaddress.IPv4Network(draw(st.sampled_from(REFUSED_V4_NETWORKS)))
    offset = draw(st.integers(0, net.num_addresses - 1))
    return net[offset]


@given(refused_v4())
def test_every_address_of_refused_ranges_is_refused_in_every_form(
    ip: ipaddress.IPv4Address,
) -> None:
    assert STRICT.refusal_reason(ip) is not None
    assert STRICT.refusal_reason(str(int(ip))) is not None
    assert STRICT.refusal_reason(hex(int(ip))) is not None
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert STRICT.refusal_reason(mapped) is not None
    assert STRICT.refusal_reason(f"[{mapped}]") is not None
    assert STRICT.refusal_reason(f"64:ff9b::{ip}") is not None


@given(st.integers(0, 2**32 - 1))
def test_mapped_form_is_refused_exactly_when_the_ipv4_address_is(value: int) -> None:
    ip = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert (STRICT.refusal_reason(ip) is None) == (STRICT.refusal_reason(mapped) is None)


@given(st.ip_addresses())
def test_allow_private_allows_everything(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert DestinationPolicy(allow_private=True).refusal_reason(ip) is None


@given(st.ip_addresses(v=4))
def test_public_ipv4_agrees_with_ipaddress_is_global(ip: ipaddress.IPv4Address) -> None:
    # Our table is stricter than "is_global" (documentation, benchmarking and
    # metadata ranges), never looser.
    if STRICT.refusal_reason(ip) is None:
        assert ip.is_global


# -- overrides -------------------------------------------------------------------


def test_allowed_networks_open_specific_ranges() -> None:
    policy = DestinationPolicy(allowed_networks=["10.1.0.0/16", "::1/128", "192.168.5.7"])
    assert policy.refusal_reason("10.1.2.3") is None
    assert policy.refusal_reason("10.2.0.1") == "10.2.0.1 is a private address"
    assert policy.refusal_reason("::1") is None
    assert policy.refusal_reason("[::1]") is None
    assert policy.refusal_reason("192.168.5.7") is None
    assert policy.refusal_reason("192.168.5.8") is not None
    assert policy.refusal_reason("127.0.0.1") is not None
    assert policy.refusal_reason("::ffff:10.1.0.9") is None  # the IPv4 address itself is allowed


def test_allowed_networks_of_one_family_do_not_open_the_other() -> None:
    policy = DestinationPolicy(allowed_networks=["::/0"])
    assert policy.refusal_reason("127.0.0.1") is not None
    assert policy.refusal_reason("::1") is None
    assert DestinationPolicy(allowed_networks=["0.0.0.0/0"]).refusal_reason("fd00::1") is not None


def test_allowed_networks_are_validated() -> None:
    with pytest.raises(ValueError, match="not a valid IP network"):
        DestinationPolicy(allowed_networks=["10.0.0.0/33"])
    with pytest.raises(TypeError):
        DestinationPolicy(allowed_networks="10.0.0.0/8")
    assert "10.0.0.0/8" in repr(DestinationPolicy(allowed_networks=["10.1.2.3/8"]))


def test_allow_private_allows_metadata_too() -> None:
    policy = DestinationPolicy(allow_private=True)
    for address, _ in REFUSED:
        assert policy.refusal_reason(address) is None


def test_destination_refused_carries_its_reason() -> None:
    exc = DestinationRefused("127.0.0.1 is a loopback address")
    assert exc.reason == str(exc) == "127.0.0.1 is a loopback address"
    assert isinstance(exc, OSError)  # so connection machinery treats it as a failed connect


# -- validate_endpoint_url ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks/rex",
        "http://example.com",
        "HTTPS://Example.COM:8443/path?q=1#frag",
        "https://hooks.example.co.uk/a/b",
        "http://localhost:8080/hook",  # names are checked at connect time, not here
        "http://internal.corp/hook",
        "https://8.8.8.8/hook",
        "https://[2606:4700::1]/hook",
        "https://xn--bcher-kva.example/",
        "https://bücher.example/",
    ],
)
def test_valid_urls(url: str) -> None:
    assert validate_endpoint_url(url, STRICT) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "URL is required"),
        ("ftp://example.com/file", "scheme must be http or https, not 'ftp'"),
        ("file:///etc/passwd", "scheme must be http or https, not 'file'"),
        ("gopher://example.com/", "scheme must be http or https"),
        ("javascript:alert(1)", "must start with http:// or https://"),
        ("example.com/hook", "must start with http:// or https://"),
        ("//example.com/hook", "must start with http:// or https://"),
        ("http:example.com", "must start with http:// or https://"),
        ("http://", "must include a host"),
        ("http:///path", "must include a host"),
        ("http://user:pass@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("http://@example.com/", "user name or password"),
        ("http://exa mple.com/", "spaces or control characters"),
        ("http://example.com/\n", "spaces or control characters"),
        (" http://example.com/", "spaces or control characters"),
        ("http://example.com:0/", "port must be between 1 and 65535"),
        ("http://example.com:99999/", "not valid"),
        ("http://[::1/", "not valid"),
        ("http://example.com\\@127.0.0.1/", "not valid"),
        ("http://1.2.3.256/", "not a valid IP address"),
        ("http://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("http://127.0.0.1.:80/hook", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://0.0.0.0/", "0.0.0.0 is the unspecified address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped form of 10.0.0.1"),
        ("http://[fd00::1]/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://224.0.0.1/", "multicast"),
        ("http://2130706433/", "127.0.0.1 is a loopback address"),
        ("http://0177.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://0x7f000001/", "127.0.0.1 is a loopback address"),
        ("http://127.1/", "127.0.0.1 is a loopback address"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "127.0.0.1 is a loopback address"),
        ("http://" + "a" * 2048 + ".com/", "longer than 2048"),
    ],
)
def test_invalid_urls(url: str, message: str) -> None:
    problem = validate_endpoint_url(url, STRICT)
    assert problem is not None
    assert message in problem


def test_private_literals_are_accepted_when_the_policy_allows_them() -> None:
    assert (
        validate_endpoint_url("http://127.0.0.1:8000/hook", DestinationPolicy(allow_private=True))
        is None
    )
    local = DestinationPolicy(allowed_networks=["127.0.0.0/8"])
    assert validate_endpoint_url("http://127.0.0.1:8000/hook", local) is None
    assert validate_endpoint_url("http://10.0.0.1/", local) == "10.0.0.1 is a private address"
    # The policy never makes a bad URL good.
    assert (
        validate_endpoint_url("ftp://127.0.0.1/", DestinationPolicy(allow_private=True)) is not None
    )


@given(st.text(max_size=300))
def test_validate_never_raises(text: str) -> None:
    result = validate_endpoint_url(text, STRICT)
    assert result is None or isinstance(result, str)


@given(st.from_regex(r"https?://[a-z0-9.:\[\]@%/-]{0,40}", fullmatch=True))
def test_validate_never_raises_on_url_like_text(text: str) -> None:
    result = validate_endpoint_url(text, STRICT)
    assert result is None or isinstance(result, str)
