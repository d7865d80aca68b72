"""Client IPs: X-Forwarded-For is believed only through proxies the operator trusts."""

from __future__ import annotations

import pytest

from rex.client_ip import ProxyTrust, parse_address, rate_limit_key
from rex.settings import Settings


def client(trusted: list[str], peer: str, *headers: str) -> str:
    return str(ProxyTrust(trusted).client_address(peer, list(headers)))


def test_without_trusted_proxies_the_socket_peer_is_the_client() -> None:
    assert client([], "127.0.0.1", "203.0.113.9") == "127.0.0.1"


def test_an_untrusted_peer_cannot_spoof_its_address() -> None:
    assert client(["10.0.0.1"], "198.51.100.2", "203.0.113.9") == "198.51.100.2"


def test_the_entry_a_trusted_proxy_appended_is_the_client() -> None:
    # The client wrote "203.0.113.9" itself; the proxy appended the address it really saw.
    assert client(["10.0.0.1"], "10.0.0.1", "203.0.113.9, 198.51.100.7") == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    trusted = ["10.0.0.0/8", "192.168.1.1"]
    assert client(trusted, "10.1.2.3", "198.51.100.7, 192.168.1.1, 10.9.9.9") == "198.51.100.7"


def test_several_headers_read_as_one_list() -> None:
    assert client(["10.0.0.1"], "10.0.0.1", "203.0.113.9", "198.51.100.7") == "198.51.100.7"


def test_only_trusted_hops_are_crossed_even_when_all_entries_are_trusted() -> None:
    assert client(["10.0.0.0/8"], "10.0.0.1", "10.0.0.2") == "10.0.0.2"


def test_garbage_stops_the_walk_at_the_last_trusted_hop() -> None:
    assert client(["10.0.0.0/8"], "10.0.0.1", "nonsense") == "10.0.0.1"


def test_ports_brackets_and_mapped_addresses() -> None:
    assert str(parse_address("198.51.100.7:4711")) == "198.51.100.7"
    assert str(parse_address("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_address("::ffff:198.51.100.7")) == "198.51.100.7"
    assert parse_address("unknown") is None
    assert client(["::1"], "::1", "[2001:db8::5]:1234") == "2001:db8::5"


def test_ipv6_clients_count_by_their_64() -> None:
    one = rate_limit_key(parse_address("2001:db8:1:2::1"))
    other = rate_limit_key(parse_address("2001:db8:1:2:ffff::9"))
    assert one == other == "2001:db8:1:2::/64"
    assert rate_limit_key(parse_address("198.51.100.7")) == "198.51.100.7"


def test_settings_refuse_a_proxy_that_is_not_an_address() -> None:
    with pytest.raises(ValueError, match="trusted proxies"):
        Settings(_env_file=None, trusted_proxies="10.0.0.0/8, proxy.internal")  # type: ignore[call-arg]
    settings = Settings(_env_file=None, trusted_proxies="10.0.0.0/8, 192.0.2.7")  # type: ignore[call-arg]
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.0.2.7"]
