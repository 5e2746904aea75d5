"""SSRF guard at connect time: resolve the host, refuse internal addresses, connect to what was checked."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpcore
import httpx

__all__ = ["AddressPolicy", "RefusedAddressError", "guarded_transport", "refusal"]

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


class RefusedAddressError(httpcore.ConnectError):
    """Every address the host resolved to was refused by the SSRF guard."""


async def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, then connects to a checked address (no DNS rebinding window)."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first resolved address the policy allows."""
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [
                    ipaddress.ip_address(a.split("%", 1)[0]) for a in await self._resolver(host, port)
                ]
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        reasons = [r for r in (refusal(a, self._policy) for a in addresses) if r]
        allowed = [a for a in addresses if refusal(a, self._policy) is None]
        if not allowed:
            raise RefusedAddressError(f"refused to connect to {host}: {'; '.join(reasons) or 'no address'}")
        error: Exception | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        """Unix sockets are never a webhook destination."""
        raise RefusedAddressError("refused to connect to a unix socket")

    async def sleep(self, seconds: float) -> None:
        """Delegate to anyio."""
        await self._inner.sleep(seconds)


def guarded_transport(
    policy: AddressPolicy, *, max_connections: int = 10, resolver: Resolver | None = None
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection passes the SSRF guard."""
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=max_connections))
    # httpx does not take a network backend; swap in a pool that uses ours, keeping httpx's error mapping.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
        network_backend=_GuardedBackend(policy, resolver or _system_resolver),
    )
    return transport
