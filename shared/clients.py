"""Who is on the other end of a request: the client's IP address, also behind reverse proxies.

Behind a proxy every request comes from the proxy, so a limit per ``request.remote`` would throttle
all clients at once. The proxy names the client in X-Forwarded-For, but anyone can send that header:
it is believed only when the direct peer is a proxy the operator trusts (TRUSTED_PROXIES), and then
only up to the first address that is not itself a trusted proxy (the right-most untrusted address),
because everything to the left of it was written by the client.
"""

import ipaddress
from collections.abc import Sequence
from typing import Annotated, Any

from aiohttp import hdrs, web
from pydantic import BeforeValidator, IPvAnyNetwork
from pydantic_settings import NoDecode

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN_CLIENT = "unknown"


def _split_networks(value: Any) -> Any:
    # An environment variable holds "10.0.0.0/8, 192.168.1.7"; a list passes through as it is.
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


# A settings field type: TRUSTED_PROXIES="10.0.0.0/8, 172.16.0.0/12, 192.168.1.7" (a bare address is
# a /32 or /128). Host bits set in a CIDR are refused, so a typo cannot silently trust a wider range.
TrustedProxies = Annotated[list[IPvAnyNetwork], NoDecode, BeforeValidator(_split_networks)]


def client_address(request: web.BaseRequest, trusted: Sequence[IPNetwork]) -> str:
    """The client's IP address in canonical text ("192.0.2.7", "2001:db8::1").

    The direct peer, unless it is in ``trusted``: then X-Forwarded-For (all its headers, joined in
    order) is walked from the right, past trusted proxies, to the first untrusted address. An entry
    that is not an IP address stops the walk at the trusted hop to its right. When every hop is
    trusted, the left-most one is the client. A peer without an IP address (a Unix socket) is
    ``"unknown"``: one client for all such requests.
    """
    peer = _parse(request.remote or "")
    if peer is None:
        return UNKNOWN_CLIENT
    if not _trusted(peer, trusted):
        return str(peer)
    hops = [hop for header in request.headers.getall(hdrs.X_FORWARDED_FOR, []) for hop in header.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)


def client_key(address: str) -> str:
    """``address`` as the client that limits count on: an IPv4 address as it is, an IPv6 address as
    its /64 ("2001:db8:1:2::/64"), which one home or device usually holds whole, so that stepping
    through its 2^64 addresses does not make fresh clients. A mapped IPv4 address is its IPv4
    address; text that is no IP address (``"unknown"``) is kept as it is."""
    parsed = _parse(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _parse(text: str) -> IPAddress | None:
    text = text.strip().removeprefix("[").removesuffix("]")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d: one client, one text.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)
