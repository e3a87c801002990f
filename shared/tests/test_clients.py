"""The client's address: X-Forwarded-For is believed only from trusted proxies, right-most first."""

import ipaddress

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from shared.clients import IPNetwork, TrustedProxies, client_address, client_key

PROXIES: list[IPNetwork] = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:cafe::/48")]


def request(peer: str, *forwarded_for: str) -> web.BaseRequest:
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded_for)
    return make_mocked_request("POST", "/auth/login", headers=headers).clone(remote=peer)


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_address(request("203.0.113.9", "198.51.100.1"), []) == "203.0.113.9"


def test_the_header_of_an_untrusted_peer_is_ignored() -> None:
    assert client_address(request("203.0.113.9", "198.51.100.1"), PROXIES) == "203.0.113.9"


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client() -> None:
    assert client_address(request("10.1.2.3", "198.51.100.1"), PROXIES) == "198.51.100.1"


def test_addresses_a_client_wrote_itself_left_of_the_proxys_are_ignored() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the address it saw.
    assert client_address(request("10.1.2.3", "1.2.3.4, 198.51.100.1"), PROXIES) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_address() -> None:
    chain = request("10.0.0.1", "1.2.3.4, 198.51.100.1, 10.9.9.9", "10.8.8.8")
    assert client_address(chain, PROXIES) == "198.51.100.1"


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert client_address(request("10.0.0.1", "10.2.2.2, 10.3.3.3"), PROXIES) == "10.2.2.2"


def test_a_trusted_proxy_without_the_header_is_itself_the_client() -> None:
    assert client_address(request("10.0.0.1"), PROXIES) == "10.0.0.1"


def test_garbage_in_the_header_stops_at_the_trusted_hop_to_its_right() -> None:
    assert client_address(request("10.0.0.1", "198.51.100.1, not-an-ip, 10.4.4.4"), PROXIES) == "10.4.4.4"
    assert client_address(request("10.0.0.1", "unknown"), PROXIES) == "10.0.0.1"


def test_ipv6_clients_and_proxies_are_written_canonically() -> None:
    assert client_address(request("2001:db8:cafe::1", "2001:DB8:0:0::7"), PROXIES) == "2001:db8::7"
    assert client_address(request("2001:db8:cafe::1", "[2001:db8::8]"), PROXIES) == "2001:db8::8"


def test_an_ipv4_client_on_a_dual_stack_socket_is_its_ipv4_address() -> None:
    assert client_address(request("::ffff:203.0.113.9"), []) == "203.0.113.9"
    assert client_address(request("::ffff:10.0.0.1", "198.51.100.1"), PROXIES) == "198.51.100.1"


def test_a_peer_without_an_ip_address_is_one_unknown_client() -> None:
    # A Unix socket's peer name is empty.
    assert client_address(request("", "198.51.100.1"), PROXIES) == "unknown"


def test_an_ipv6_client_is_counted_as_its_64_and_an_ipv4_client_as_its_address() -> None:
    # One home (or device) holds a whole /64: stepping through it must not make fresh clients.
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:DB8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("unknown") == "unknown"


class ProxySettings(BaseSettings):
    trusted_proxies: TrustedProxies = []


def test_the_setting_takes_comma_separated_cidrs_and_bare_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7 2001:db8::/32")
    assert [str(n) for n in ProxySettings().trusted_proxies] == [
        "10.0.0.0/8",
        "192.168.1.7/32",
        "2001:db8::/32",
    ]
    monkeypatch.setenv("TRUSTED_PROXIES", "")
    assert ProxySettings().trusted_proxies == []


def test_the_setting_refuses_a_cidr_with_host_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1/8")
    with pytest.raises(ValidationError):
        ProxySettings()
