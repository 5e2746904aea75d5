"""The SSRF guard: a table of addresses, and refusal at connect time after resolving the host."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import httpx
import pytest

from webhooks import AddressPolicy, guarded_transport, refusal

STRICT = AddressPolicy()
LOCAL = AddressPolicy(allow_private_network=True)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT
        "169.254.169.254",  # metadata
        "169.254.1.1",  # link-local
        "0.0.0.0",
        "224.0.0.1",  # multicast (is_global is True on 3.11)
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "198.18.0.1",  # benchmarking
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address (is_global is True on 3.11)
        "64:ff9b::808:808",
        "2002:a9fe:a9fe::1",  # 6to4 (is_global is True on 3.11)
        "2001:db8::1",
        "fd00:ec2::254",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refusal(address, STRICT) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address, STRICT) is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("::1", True),
        ("169.254.169.254", False),  # metadata stays refused when private networks are allowed
        ("224.0.0.1", False),
        ("fe80::1", False),
    ],
)
def test_allow_private_network_opens_only_private_ranges(address: str, allowed: bool) -> None:
    assert (refusal(address, LOCAL) is None) is allowed


def test_an_explicit_allow_list_opens_exactly_its_networks() -> None:
    policy = AddressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    assert refusal("127.0.0.1", policy) is None
    assert refusal("127.0.0.2", policy) is not None


def _resolver(answer: Sequence[str]):
    async def resolve(host: str, port: int) -> Sequence[str]:
        return answer

    return resolve


def test_a_name_resolving_to_metadata_is_refused_before_connecting() -> None:
    asyncio.run(_metadata_refused())


async def _metadata_refused() -> None:
    transport = guarded_transport(STRICT, resolver=_resolver(["169.254.169.254"]))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="cloud metadata"):
            await client.post("http://rebind.example/hook", content=b"{}")


def test_one_refused_address_among_several_is_skipped() -> None:
    assert asyncio.run(_skip_refused()) == 204


async def _skip_refused() -> int:
    server = await asyncio.start_server(_answer_204, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    policy = AddressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    transport = guarded_transport(policy, resolver=_resolver(["10.0.0.1", "127.0.0.1"]))
    async with server, httpx.AsyncClient(transport=transport) as client:
        response = await client.post(f"http://consumer.test:{port}/hook", content=b"{}")
    return response.status_code


def test_a_literal_private_ip_is_refused_without_the_allow_list() -> None:
    asyncio.run(_literal_refused())


async def _literal_refused() -> None:
    async with httpx.AsyncClient(transport=guarded_transport(STRICT)) as client:
        with pytest.raises(httpx.ConnectError, match="loopback or private"):
            await client.post("http://127.0.0.1:9/hook", content=b"{}")


async def _answer_204(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(2)
    writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()
