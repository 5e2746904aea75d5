"""SSRF guard at connect time: resolve the host, refuse internal addresses, connect to what was checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from webhooks.exceptions import UnsafeDestinationError
from webhooks.transport import PooledTransport

__all__ = ["AddressPolicy", "RefusedAddressError", "allowed_addresses", "guarded_transport", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_net = ipaddress.ip_network

# Cloud metadata services: refused even when private networks are allowed.
_METADATA = (_net("169.254.169.254/32"), _net("fd00:ec2::254/128"), _net("100.100.100.200/32"))
# What `allow_private_network` opens: loopback, RFC 1918, CGNAT and unique-local addresses.
_PRIVATE = (
    _net("127.0.0.0/8"),
    _net("10.0.0.0/8"),
    _net("172.16.0.0/12"),
    _net("192.168.0.0/16"),
    _net("100.64.0.0/10"),
    _net("::1/128"),
    _net("fc00::/7"),
)
# Everything else that is not the public internet. `is_global` alone misses multicast, NAT64 and 6to4.
_REFUSED = (
    _net("0.0.0.0/8"),
    _net("169.254.0.0/16"),
    _net("192.0.0.0/24"),
    _net("192.0.2.0/24"),
    _net("192.88.99.0/24"),
    _net("198.18.0.0/15"),
    _net("198.51.100.0/24"),
    _net("203.0.113.0/24"),
    _net("224.0.0.0/4"),
    _net("240.0.0.0/4"),
    _net("::/128"),
    _net("64:ff9b::/96"),
    _net("64:ff9b:1::/48"),
    _net("100::/64"),
    _net("2001::/23"),
    _net("2001:db8::/32"),
    _net("2002::/16"),
    _net("3fff::/20"),
    _net("5f00::/16"),
    _net("fe80::/10"),
    _net("fec0::/10"),
    _net("ff00::/8"),
)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses an endpoint may reach: public ones, plus what its config allows."""

    allow_private_network: bool = False
    allow_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)


def _within(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def refusal(address: str | IPAddress, policy: AddressPolicy) -> str | None:
    """Why `address` may not be connected to under `policy`, or None when it may."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        # ::ffff:a.b.c.d is the IPv4 host a.b.c.d: judge it as that.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    if _within(ip, policy.allow_networks):
        return None
    if _within(ip, _METADATA):
        return f"{ip} is a cloud metadata address"
    if _within(ip, _PRIVATE):
        return None if policy.allow_private_network else f"{ip} is a loopback or private address"
    if _within(ip, _REFUSED) or not ip.is_global:
        return f"{ip} is a reserved, link-local, multicast or translated address"
    return None


class RefusedAddressError(UnsafeDestinationError):
    """Every address the host resolved to was refused by the SSRF guard."""


async def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def allowed_addresses(
    host: str, port: int, policy: AddressPolicy, resolver: Resolver = _system_resolver
) -> list[str]:
    """Resolve `host` once and keep the addresses `policy` allows, in resolver order; refuse if none."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await resolver(host, port)]
    reasons = [r for r in (refusal(a, policy) for a in addresses) if r]
    allowed = [str(a) for a in addresses if refusal(a, policy) is None]
    if not allowed:
        raise RefusedAddressError(f"refused to connect to {host}: {'; '.join(reasons) or 'no address'}")
    return allowed


def guarded_transport(
    policy: AddressPolicy, *, max_connections: int = 10, resolver: Resolver | None = None
) -> PooledTransport:
    """An httpx transport whose every connection passes the SSRF guard (connecting to a checked address)."""
    return PooledTransport(
        partial(allowed_addresses, policy=policy, resolver=resolver or _system_resolver),
        max_connections=max_connections,
    )
