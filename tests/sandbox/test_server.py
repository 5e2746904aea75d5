"""The server writes each response once, on a socket with TCP_NODELAY."""

from __future__ import annotations

import asyncio
import socket

import httpx

from crmhub.sandbox import Sandbox, SandboxServer
from crmhub.sandbox.asgi import bracket_params
from crmhub.sandbox.server import _OneWriteTransport


class _FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        self.aborted = True


def test_writes_in_one_loop_turn_leave_as_one() -> None:
    async def scenario() -> _FakeTransport:
        fake = _FakeTransport()
        wrapped = _OneWriteTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        wrapped.write(b"{}")
        wrapped.write(b"")
        await asyncio.sleep(0)
        return fake

    fake = asyncio.run(scenario())
    assert fake.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_drop_marker_aborts_instead_of_writing() -> None:
    async def scenario() -> _FakeTransport:
        fake = _FakeTransport()
        wrapped = _OneWriteTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        wrapped.write(b"HTTP/1.1 500 Internal Server Error\r\nx-crmhub-sandbox-drop: 1\r\n\r\n")
        await asyncio.sleep(0)
        return fake

    fake = asyncio.run(scenario())
    assert fake.writes == [] and fake.aborted


def test_nodelay_is_set_on_accepted_sockets(sandbox: Sandbox) -> None:
    with SandboxServer(sandbox) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/_sandbox/state").status_code == 200
        connections = list(server._server.server_state.connections)
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_bracket_params() -> None:
    query = [("created[gte]", "5"), ("expand[0]", "a"), ("expand[1]", "b"), ("types[]", "x"), ("limit", "3")]
    assert bracket_params(query) == {
        "created": {"gte": "5"},
        "expand": ["a", "b"],
        "types": ["x"],
        "limit": "3",
    }
