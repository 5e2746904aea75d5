"""The delivery transport against real asyncio servers: keep-alive, framing, stale connections, TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from sync.store.tables import deliveries
from tests.webhooks.conftest import Clock, endpoint, seed
from webhooks import WebhooksConfig, build_senders, generate_secret
from webhooks.ssrf import AddressPolicy, guarded_transport
from webhooks.transport import PooledTransport
from webhooks.worker import DeliveryWorker

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
LOOPBACK = AddressPolicy(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),))

# What the server sends for the n-th request (0-based) with this head: bytes, or None to hang up.
Answer = Callable[[int, bytes], Awaitable[bytes | None]]


async def _ok(_n: int, _head: bytes) -> bytes:
    return OK


class Server:
    """A scripted HTTP/1.1 server on 127.0.0.1 that counts connections and requests."""

    def __init__(
        self, answer: Answer = _ok, *, close_after: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer = answer
        self.close_after = close_after
        self.tls = tls
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.closed = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line[15:]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")),
            0,
        )
        body = await reader.readexactly(length)
        n = len(self.heads)
        self.heads.append(head)
        self.bodies.append(body)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            answer = await self.answer(n, head)
        finally:
            self.in_flight -= 1
        if answer is None:
            return False
        writer.write(answer)
        await writer.drain()
        return not self.close_after


def _to(*addresses: str) -> Callable[[str, int], Awaitable[Sequence[str]]]:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return addresses

    return resolve


def _client(max_connections: int = 10, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=PooledTransport(_to("127.0.0.1"), max_connections=max_connections, **kwargs)
    )


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not condition():
            await asyncio.sleep(0.01)


def test_sequential_requests_share_one_kept_alive_connection() -> None:
    async def go() -> None:
        async with Server() as server, _client() as client:
            for _ in range(20):
                response = await client.post(server.url(), content=b"{}")
                assert (response.status_code, response.content) == (200, b"ok")
        assert (server.connections, len(server.heads)) == (1, 20)

    asyncio.run(go())


def test_the_request_is_framed_with_host_headers_and_content_length() -> None:
    async def go() -> None:
        async with Server() as server, _client() as client:
            await client.post(server.url("/hook?x=1"), content=b'{"a": 1}', headers={"webhook-id": "msg_1"})
            head = server.heads[0].decode()
            assert head.startswith("POST /hook?x=1 HTTP/1.1\r\n")
            assert f"Host: 127.0.0.1:{server.port}\r\n" in head
            assert "webhook-id: msg_1\r\n" in head and "Content-Length: 8\r\n" in head
            assert server.bodies == [b'{"a": 1}']

    asyncio.run(go())


def test_a_streamed_body_is_sent_whole_with_its_length() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    async def go() -> None:
        async with Server() as server, _client() as client:
            await client.post(server.url(), content=parts())
            assert b"Content-Length: 4\r\n" in server.heads[0]
            assert b"transfer-encoding" not in server.heads[0].lower()
            assert server.bodies == [b"abcd"]

    asyncio.run(go())


def test_a_line_break_in_a_header_is_refused_before_sending() -> None:
    async def go() -> None:
        async with Server() as server, _client() as client:
            with pytest.raises(httpx.LocalProtocolError):
                await client.post(server.url(), content=b"{}", headers={"x-a": "1\r\nx-forged: 1"})
            assert server.heads == []

    asyncio.run(go())


def test_connection_close_opens_a_new_connection_each_time() -> None:
    async def answer(_n: int, _head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def go() -> None:
        async with Server(answer) as server, _client() as client:
            for _ in range(3):
                assert (await client.post(server.url(), content=b"{}")).content == b"ok"
        assert server.connections == 3

    asyncio.run(go())


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
    ],
)
def test_an_http_1_0_answer_closes_unless_it_keeps_alive(answer: bytes, reused: bool) -> None:
    async def respond(_n: int, _head: bytes) -> bytes:
        return answer

    async def go() -> None:
        async with Server(respond) as server, _client() as client:
            for _ in range(2):
                assert (await client.post(server.url(), content=b"{}")).content == b"ok"
        assert server.connections == (1 if reused else 2)

    asyncio.run(go())


def test_a_chunked_body_is_decoded_and_the_connection_reused() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n"
    )

    async def answer(_n: int, _head: bytes) -> bytes:
        return chunked

    async def go() -> None:
        async with Server(answer) as server, _client() as client:
            for _ in range(2):
                assert (await client.post(server.url(), content=b"{}")).content == b"hello world"
        assert server.connections == 1

    asyncio.run(go())


def test_a_body_without_length_is_read_to_the_close() -> None:
    async def answer(_n: int, _head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"

    async def go() -> None:
        async with Server(answer, close_after=True) as server, _client() as client:
            for _ in range(2):
                assert (await client.post(server.url(), content=b"{}")).content == b"all of it"
        assert server.connections == 2

    asyncio.run(go())


def test_head_and_interim_answers_have_no_body() -> None:
    async def answer(n: int, head: bytes) -> bytes:
        if head.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        if n == 1:
            return b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
        return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"

    async def go() -> None:
        async with Server(answer) as server, _client() as client:
            head = await client.head(server.url())
            assert (head.status_code, head.content) == (200, b"")
            assert (await client.post(server.url(), content=b"{}")).content == b"ok"
            assert (await client.post(server.url(), content=b"{}")).status_code == 304
            assert (await client.post(server.url(), content=b"{}")).content == b""
        assert server.connections == 1

    asyncio.run(go())


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_a_malformed_head_is_a_remote_protocol_error(answer: bytes) -> None:
    async def respond(_n: int, _head: bytes) -> bytes:
        return answer

    async def go() -> None:
        async with Server(respond) as server, _client() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(server.url(), content=b"{}")

    asyncio.run(go())


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    ],
)
def test_a_malformed_chunked_body_is_a_remote_protocol_error_and_drops_the_connection(answer: bytes) -> None:
    async def respond(n: int, _head: bytes) -> bytes:
        return answer if n == 0 else OK

    async def go() -> None:
        async with Server(respond) as server, _client() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(server.url(), content=b"{}")
            assert (await client.post(server.url(), content=b"{}")).content == b"ok"
        assert server.connections == 2

    asyncio.run(go())


def test_a_body_cut_short_is_a_remote_protocol_error_and_not_retried() -> None:
    async def respond(_n: int, _head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    async def go() -> None:
        async with Server(respond, close_after=True) as server, _client() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(server.url(), content=b"{}")
        assert len(server.heads) == 1

    asyncio.run(go())


def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def go() -> None:
        async with Server(close_after=True) as server, _client() as client:
            assert (await client.post(server.url(), content=b"{}")).content == b"ok"
            await _until(lambda: server.closed == 1)
            await asyncio.sleep(0.05)  # the client's loop sees the end of stream
            assert (await client.post(server.url(), content=b"{}")).content == b"ok"
        assert (server.connections, len(server.heads)) == (2, 2)

    asyncio.run(go())


def test_a_reused_connection_closed_without_an_answer_is_retried_once_on_a_new_one() -> None:
    async def answer(n: int, _head: bytes) -> bytes | None:
        return None if n == 1 else OK  # the keep-alive race: it hangs up on the second request

    async def go() -> None:
        async with Server(answer) as server, _client() as client:
            await client.post(server.url(), content=b"{}", headers={"webhook-id": "msg_1"})
            await client.post(server.url(), content=b"{}", headers={"webhook-id": "msg_2"})
        assert server.connections == 2
        # The consumer saw msg_2 twice: the same webhook-id, so it keeps one.
        assert [h.count(b"msg_2") for h in server.heads] == [0, 1, 1]

    asyncio.run(go())


def test_a_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def answer(_n: int, _head: bytes) -> None:
        return None

    async def go() -> None:
        async with Server(answer) as server, _client() as client:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
                await client.post(server.url(), content=b"{}")
        assert len(server.heads) == 1

    asyncio.run(go())


def test_nothing_is_retried_once_answer_bytes_arrived() -> None:
    async def answer(n: int, _head: bytes) -> bytes | None:
        return b"HTTP/1.1 200" if n == 1 else OK

    async def go() -> None:
        async with Server(answer, close_after=False) as server, _client() as client:
            await client.post(server.url(), content=b"{}")
            server.close_after = True  # the half answer is followed by a hang-up
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(server.url(), content=b"{}")
        assert len(server.heads) == 2

    asyncio.run(go())


def test_closing_before_the_body_is_read_discards_the_connection() -> None:
    big = b"x" * 1_000_000

    async def answer(_n: int, _head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)

    async def go() -> None:
        async with Server(answer) as server, _client() as client:
            async with client.stream("POST", server.url(), content=b"{}") as response:
                async for chunk in response.aiter_bytes():
                    assert chunk
                    break  # what the sender does: an excerpt, then close
            async with client.stream("POST", server.url(), content=b"{}") as response:
                assert await response.aread() == big
            assert (await client.post(server.url(), content=b"{}")).content == big
        assert server.connections == 2

    asyncio.run(go())


def test_concurrent_requests_stay_within_the_pool_bound() -> None:
    async def answer(_n: int, _head: bytes) -> bytes:
        await asyncio.sleep(0.01)
        return OK

    async def go() -> None:
        async with Server(answer) as server, _client(max_connections=5) as client:
            responses = await asyncio.gather(*(client.post(server.url(), content=b"{}") for _ in range(60)))
        assert {r.content for r in responses} == {b"ok"}
        assert server.connections <= 5 and server.most_in_flight <= 5 and len(server.heads) == 60

    asyncio.run(go())


def test_a_full_pool_closes_an_idle_connection_of_another_origin() -> None:
    async def go() -> None:
        transport = PooledTransport(_to("127.0.0.1"), max_connections=1)
        async with Server() as first, Server() as second, httpx.AsyncClient(transport=transport) as client:
            await client.post(first.url(), content=b"{}")
            await client.post(second.url(), content=b"{}")
            await _until(lambda: first.closed == 1)
            assert second.closed == 0

    asyncio.run(go())


def test_aclose_closes_every_connection() -> None:
    async def go() -> None:
        async with Server() as server:
            async with _client() as client:
                await asyncio.gather(*(client.post(server.url(), content=b"{}") for _ in range(3)))
            await _until(lambda: server.closed == server.connections)

    asyncio.run(go())


def test_a_timed_out_exchange_frees_its_slot_and_drops_its_connection() -> None:
    async def answer(n: int, _head: bytes) -> bytes:
        if n == 0:
            await asyncio.sleep(5)
        return OK

    async def go() -> None:
        async with Server(answer) as server, _client(max_connections=1) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await client.post(server.url(), content=b"{}")
            async with asyncio.timeout(2):  # a leaked slot would wait here for ever
                assert (await client.post(server.url(), content=b"{}")).content == b"ok"
        assert server.connections == 2

    asyncio.run(go())


def test_the_connect_timeout_of_the_request_is_honoured() -> None:
    async def slow_dns(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(5)
        return ["127.0.0.1"]

    async def go() -> None:
        async with httpx.AsyncClient(transport=PooledTransport(slow_dns), timeout=0.1) as client:
            with pytest.raises(httpx.ConnectTimeout):
                await client.post("http://slow.test:9/hook", content=b"{}")

    asyncio.run(go())


def test_an_unreachable_port_is_a_connect_error() -> None:
    async def go() -> None:
        async with Server() as server:
            port = server.port
        async with _client() as client:
            with pytest.raises(httpx.ConnectError, match="cannot connect"):
                await client.post(f"http://127.0.0.1:{port}/hook", content=b"{}")

    asyncio.run(go())


# --- through the SSRF guard and the sender ------------------------------------------------------


def test_the_guard_refuses_loopback_unless_allow_listed() -> None:
    async def go() -> None:
        async with Server() as server:
            async with httpx.AsyncClient(transport=guarded_transport(AddressPolicy())) as client:
                with pytest.raises(httpx.ConnectError, match="loopback or private"):
                    await client.post(server.url(), content=b"{}")
            async with httpx.AsyncClient(transport=guarded_transport(LOOPBACK)) as client:
                assert (await client.post(server.url(), content=b"{}")).content == b"ok"
        assert len(server.heads) == 1

    asyncio.run(go())


@pytest.mark.parametrize(("allow", "status"), [([], "dead"), (["127.0.0.1/32"], "succeeded")])
def test_the_worker_delivers_through_the_guard_only_when_allow_listed(
    engine: Engine, allow: list[str], status: str
) -> None:
    seed(engine, 3)

    async def go() -> Server:
        async with Server() as server:
            local = endpoint("local", url=server.url(), allow_http=True, allow_networks=allow)
            config = WebhooksConfig(endpoints={"local": local})
            senders = build_senders(config, {"LOCAL_SECRET": generate_secret()})
            worker = DeliveryWorker(engine, config, senders)
            try:
                await worker.run(Clock())
            finally:
                await worker.aclose()
        return server

    server = asyncio.run(go())
    with engine.connect() as conn:
        assert set(conn.execute(select(deliveries.c.status)).scalars()) == {status}
    assert len(server.heads) == (3 if status == "succeeded" else 0)


def test_the_sender_times_out_a_slow_consumer_and_the_next_delivery_goes_through(engine: Engine) -> None:
    seed(engine, 2)

    async def answer(n: int, _head: bytes) -> bytes:
        if n == 0:
            await asyncio.sleep(5)
        return OK

    async def go() -> list[str | None]:
        async with Server(answer) as server:
            slow = endpoint(
                "slow",
                url=server.url(),
                allow_http=True,
                allow_networks=["127.0.0.1/32"],
                timeout_seconds=0.2,
                concurrency=1,
            )
            config = WebhooksConfig(endpoints={"slow": slow})
            worker = DeliveryWorker(engine, config, build_senders(config, {"SLOW_SECRET": generate_secret()}))
            try:
                await worker.run(Clock())
            finally:
                await worker.aclose()
        with engine.connect() as conn:
            return list(conn.execute(select(deliveries.c.status).order_by(deliveries.c.id)).scalars())

    assert asyncio.run(go()) == ["failed", "succeeded"]


# --- TLS ----------------------------------------------------------------------------------------


def _certificates(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for `hooks.test` signed by a throwaway CA, and the CA's PEM file."""
    x509 = pytest.importorskip("cryptography.x509", reason="cryptography makes the test certificates")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("hooks.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file, chain_file, key_file = tmp_path / "ca.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    chain_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain_file, key_file)
    return server, ca_file


def test_tls_verifies_the_certificate_for_the_url_host(tmp_path: Path) -> None:
    server_context, ca_file = _certificates(tmp_path)

    async def go() -> None:
        async with Server(tls=server_context) as server:
            trusting = _client(ssl_context=ssl.create_default_context(cafile=ca_file))
            async with trusting as client:
                for _ in range(3):
                    response = await client.post(server.url(host="hooks.test", scheme="https"), content=b"{}")
                    assert response.content == b"ok"
                with pytest.raises(httpx.ConnectError) as wrong_name:
                    await client.post(server.url(host="other.test", scheme="https"), content=b"{}")
                assert isinstance(wrong_name.value.__cause__, ssl.SSLCertVerificationError)
            assert (server.connections, len(server.heads)) == (1, 3)  # failed handshakes never get here
            async with _client() as default:  # the public CA bundle does not know the test CA
                with pytest.raises(httpx.ConnectError) as unknown:
                    await default.post(server.url(host="hooks.test", scheme="https"), content=b"{}")
                assert isinstance(unknown.value.__cause__, ssl.SSLCertVerificationError)

    asyncio.run(go())
