"""A lean HTTP/1.1 keep-alive transport for httpx on asyncio streams: the webhook delivery hot path.

httpx's default transport (httpcore's pool on anyio) capped delivery at a few hundred requests/s on
a small machine; this one writes each request in one piece and parses the response by hand (about
4x cheaper than h11 here). It speaks what a webhook POST needs: HTTP/1.1 (and 1.0 answers), one
request at a time per connection, request bodies sent whole with their length.

A reused connection is retried once on a fresh one when nothing at all came back on it (a write
that failed, or end of stream / reset before the first response byte). That is the keep-alive race:
the peer closed the idle connection while the request was on its way, so it was almost certainly
not processed. When it was, the consumer sees a duplicate with the same `webhook-id`, which the
Standard Webhooks contract makes it discard. Nothing is retried once any response byte has arrived,
and a failure on a fresh connection is never retried here (the delivery queue retries later).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress

import certifi
import httpx

from webhooks.exceptions import UnsafeDestinationError

__all__ = ["Addresses", "PooledTransport"]

# Where (host, port) may be reached: the addresses to try, in order, each already checked. Raises
# OSError when the host does not resolve and UnsafeDestinationError when it may not be reached.
Addresses = Callable[[str, int], Awaitable[Sequence[str]]]
Origin = tuple[str, str, int]

READ_SIZE = 65_536
# Longest response head or chunk-size line accepted: a peer cannot make us buffer without end.
MAX_LINE_BYTES = 65_536
_DEFAULT_PORTS = {"http": 80, "https": 443}
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_EMPTY = httpx.ByteStream(b"")


class _StaleError(Exception):
    """A reused connection gave nothing back: the peer had closed it, the request may be sent again."""


class _Connection:
    """One TCP or TLS connection to an origin, with the bytes read past the last response."""

    __slots__ = ("buffer", "idle_since", "origin", "reader", "retriable", "writer")

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.buffer = b""
        # True while a failure may be retried elsewhere: reused, and nothing came back on it yet.
        self.retriable = False
        self.idle_since = 0.0

    def reusable(self) -> bool:
        """Open at both ends with nothing left over, so the next bytes are the next response."""
        return (
            not self.buffer
            and not self.reader.at_eof()
            and self.reader.exception() is None
            and not self.writer.is_closing()
        )

    async def receive(self) -> bytes:
        """Left-over bytes first, then what the socket has; b"" at end of stream."""
        if self.buffer:
            data, self.buffer = self.buffer, b""
            return data
        return await self.reader.read(READ_SIZE)


class _Head:
    """A parsed response head and how its body is framed."""

    __slots__ = ("chunked", "headers", "keep_alive", "length", "reason", "status", "version")

    def __init__(self, head: bytes) -> None:
        status_line, *lines = head.split(b"\r\n")
        self.version, _, rest = status_line.partition(b" ")
        code, _, self.reason = rest.partition(b" ")
        if self.version not in _VERSIONS or len(code) != 3 or not code.isdigit():
            raise ValueError(f"malformed status line {status_line[:100]!r}")
        self.status = int(code)
        self.headers: list[tuple[bytes, bytes]] = []
        lengths: set[bytes] = set()
        codings: list[bytes] = []
        options: list[bytes] = []
        for line in lines:
            name, colon, value = line.partition(b":")
            value = value.strip(b" \t")
            if not colon or not _TOKEN.fullmatch(name) or b"\r" in value or b"\n" in value:
                raise ValueError(f"malformed header line {line[:100]!r}")
            self.headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
            elif lower == b"transfer-encoding":
                codings.extend(v.strip().lower() for v in value.split(b","))
            elif lower == b"connection":
                options.extend(v.strip().lower() for v in value.split(b","))
        self.keep_alive = b"close" not in options and (
            self.version == b"HTTP/1.1" or b"keep-alive" in options
        )
        self.chunked = bool(codings) and codings[-1] == b"chunked"
        self.length: int | None = None
        if codings:
            # Transfer-Encoding wins over Content-Length; sent together they are a smuggling smell.
            self.keep_alive = self.keep_alive and self.chunked and not lengths
        elif lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise ValueError(f"invalid content-length {sorted(lengths)!r}")
            self.length = int(next(iter(lengths)))
        else:
            self.keep_alive = False  # the body runs to the end of the stream

    def bodiless(self, method: bytes) -> bool:
        """Responses to HEAD, 204 and 304 carry no body whatever their headers say."""
        return method == b"HEAD" or self.status in (204, 304)


class PooledTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with a bounded pool of kept-alive connections per origin, connecting where told."""

    def __init__(
        self,
        addresses: Addresses,
        *,
        max_connections: int = 10,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._addresses = addresses
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        # One slot per request from checkout to the end of its response: at most max_connections in use.
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` on a pooled or new connection; the response body streams from the socket."""
        origin = _origin(request)
        message = _message(request, await _content(request))
        await self._slots.acquire()
        try:
            return await self._round_trip(origin, message, request)
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        """Close every connection, idle or in use."""
        self._closed = True
        connections = list(self._open)
        self._idle.clear()
        for connection in connections:
            self._discard(connection, abort=True)
        for connection in connections:
            with suppress(OSError):
                await connection.writer.wait_closed()

    async def _round_trip(self, origin: Origin, message: bytes, request: httpx.Request) -> httpx.Response:
        connection = self._pooled(origin)
        if connection is not None:
            try:
                return await self._exchange(connection, message, request)
            except _StaleError:
                pass
        return await self._exchange(await self._connect(origin, request), message, request)

    def _pooled(self, origin: Origin) -> _Connection | None:
        """The most recently used idle connection to `origin` that is still good; stale ones are closed."""
        idle = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self._expiry and connection.reusable():
                return connection
            self._discard(connection)
        return None

    async def _connect(self, origin: Origin, request: httpx.Request) -> _Connection:
        # Requests in flight never exceed the slots; idle connections of other origins make room.
        while len(self._open) + self._connecting >= self._max and self._evict():
            pass
        self._connecting += 1
        try:
            reader, writer = await self._open_stream(origin, request)
        finally:
            self._connecting -= 1
        connection = _Connection(origin, reader, writer)
        self._open.add(connection)
        return connection

    def _evict(self) -> bool:
        """Close the oldest idle connection of any origin; False when none is idle."""
        for idle in self._idle.values():
            if idle:
                self._discard(idle.pop(0))
                return True
        return False

    async def _open_stream(
        self, origin: Origin, request: httpx.Request
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        scheme, host, port = origin
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            async with asyncio.timeout(timeout):
                try:
                    addresses = await self._addresses(host, port)
                except UnsafeDestinationError as exc:
                    raise httpx.ConnectError(str(exc), request=request) from exc
                except OSError as exc:
                    raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
                return await self._dial(addresses, host, port, scheme == "https", request)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from exc

    async def _dial(
        self, addresses: Sequence[str], host: str, port: int, tls: bool, request: httpx.Request
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to the first address that answers: exactly these addresses, never the name again."""
        error: OSError | None = None
        for address in addresses:
            try:
                if tls:
                    return await asyncio.open_connection(
                        address, port, ssl=self._tls(), server_hostname=host, limit=READ_SIZE
                    )
                return await asyncio.open_connection(address, port, limit=READ_SIZE)
            except OSError as exc:
                error = exc
        raise httpx.ConnectError(f"cannot connect to {host}:{port}: {error}", request=request) from error

    def _tls(self) -> ssl.SSLContext:
        # Made on first use: loading the CA bundle takes milliseconds, and most endpoints are one origin.
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=certifi.where())
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context

    async def _exchange(
        self, connection: _Connection, message: bytes, request: httpx.Request
    ) -> httpx.Response:
        """Write the request, read the response head; the connection is closed on any failure."""
        try:
            await self._write(connection, message, request)
            head = await self._read_head(connection, request)
            while 100 <= head.status < 200:
                if head.status == 101:
                    raise httpx.RemoteProtocolError("unexpected 101 Switching Protocols", request=request)
                head = await self._read_head(connection, request)
            response, complete = self._response(connection, head, request)
        except BaseException:
            self._discard(connection)
            raise
        if complete:
            self._release(connection, head.keep_alive)
        return response

    async def _write(self, connection: _Connection, message: bytes, request: httpx.Request) -> None:
        try:
            connection.writer.write(message)
            await connection.writer.drain()
        except OSError as exc:
            if connection.retriable:
                raise _StaleError from exc
            raise httpx.WriteError(f"cannot send the request: {exc!r}", request=request) from exc

    async def _read_head(self, connection: _Connection, request: httpx.Request) -> _Head:
        data, connection.buffer = connection.buffer, b""
        searched = 0
        while (end := data.find(b"\r\n\r\n", searched)) < 0:
            if len(data) > MAX_LINE_BYTES:
                raise httpx.RemoteProtocolError("response head too long", request=request)
            searched = max(0, len(data) - 3)
            try:
                chunk = await connection.reader.read(READ_SIZE)
            except OSError as exc:
                if connection.retriable:
                    raise _StaleError from exc
                raise httpx.ReadError(f"cannot read the response: {exc!r}", request=request) from exc
            if not chunk:
                if connection.retriable:
                    raise _StaleError
                raise httpx.RemoteProtocolError(
                    "server disconnected without sending a complete response", request=request
                )
            connection.retriable = False
            data += chunk
        connection.buffer = data[end + 4 :]
        try:
            return _Head(data[:end])
        except ValueError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc

    def _response(
        self, connection: _Connection, head: _Head, request: httpx.Request
    ) -> tuple[httpx.Response, bool]:
        """The response, and whether it is complete: its body streams unless empty or already read."""
        stream: httpx.AsyncByteStream
        complete = True
        if head.bodiless(request.method.encode("ascii")) or head.length == 0:
            stream = _EMPTY
        elif head.length is not None and len(connection.buffer) >= head.length:
            body, connection.buffer = connection.buffer[: head.length], connection.buffer[head.length :]
            stream = httpx.ByteStream(body)
        else:
            stream, complete = _Body(self, connection, head, request), False
        response = httpx.Response(
            head.status,
            headers=head.headers,
            stream=stream,
            extensions={"http_version": head.version, "reason_phrase": head.reason},
        )
        return response, complete

    def _release(self, connection: _Connection, keep_alive: bool) -> None:
        """The response is over: pool the connection when it can carry another request, free the slot."""
        if keep_alive and not self._closed and connection.reusable():
            connection.retriable = True
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            self._discard(connection)
        self._slots.release()

    def _discard(self, connection: _Connection, *, abort: bool = False) -> None:
        self._open.discard(connection)
        if abort:
            connection.writer.transport.abort()
        elif not connection.writer.is_closing():
            connection.writer.close()


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection as it is consumed; the connection is pooled at its end."""

    def __init__(
        self, transport: PooledTransport, connection: _Connection, head: _Head, request: httpx.Request
    ) -> None:
        self._transport = transport
        self._connection = connection
        self._head = head
        self._request = request
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives; then hand the connection back."""
        if self._head.chunked:
            parts = self._chunks()
        elif self._head.length is not None:
            parts = self._exactly(self._head.length)
        else:
            parts = self._to_close()
        whole = False
        try:
            async for part in parts:
                yield part
            whole = True
        except OSError as exc:
            raise httpx.ReadError(f"cannot read the response body: {exc!r}", request=self._request) from exc
        except ValueError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
        finally:
            # Only a body read to its end leaves the connection at a response boundary.
            self._finish(keep_alive=whole and self._head.keep_alive)

    async def aclose(self) -> None:
        """Closing before the end discards the connection: its unread rest would poison the next request."""
        self._finish(keep_alive=False)

    def _finish(self, *, keep_alive: bool) -> None:
        if not self._done:
            self._done = True
            self._transport._release(self._connection, keep_alive)

    async def _exactly(self, length: int) -> AsyncIterator[bytes]:
        while length:
            data = await self._connection.receive()
            if not data:
                raise ValueError("server disconnected before the end of the body")
            if len(data) > length:
                self._connection.buffer = data[length:]
                data = data[:length]
            length -= len(data)
            yield data

    async def _to_close(self) -> AsyncIterator[bytes]:
        while data := await self._connection.receive():
            yield data

    async def _chunks(self) -> AsyncIterator[bytes]:
        while size := _chunk_size(await self._line()):
            async for data in self._exactly(size):
                yield data
            if await self._line():
                raise ValueError("chunk data longer than its size")
        while await self._line():
            pass  # trailer fields: nothing here reads them

    async def _line(self) -> bytes:
        """One CRLF-terminated line of the chunked framing, without its CRLF."""
        data = b""
        while (end := data.find(b"\r\n")) < 0:
            if len(data) > MAX_LINE_BYTES:
                raise ValueError("chunk framing line too long")
            more = await self._connection.receive()
            if not more:
                raise ValueError("server disconnected in the middle of a chunked body")
            data += more
        self._connection.buffer = data[end + 2 :]
        return data[:end]


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(b" \t")
    if not _HEX.fullmatch(size):
        raise ValueError(f"invalid chunk size {line[:100]!r}")
    return int(size, 16)


def _origin(request: httpx.Request) -> Origin:
    scheme = request.url.scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
    return scheme, request.url.raw_host.decode("ascii"), request.url.port or _DEFAULT_PORTS[scheme]


async def _content(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:
        return await request.aread()


def _message(request: httpx.Request, body: bytes) -> bytes:
    """Request line, headers and body in one piece, so one write sends it all."""
    method = request.method.encode("ascii")
    parts = [method, b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    lines = 2  # the request line and the empty line that ends the head
    has_host = has_length = False
    for name, value in request.headers.raw:
        lower = name.lower()
        if lower == b"transfer-encoding":
            continue  # a streamed body was read whole above: its length frames it
        has_host = has_host or lower == b"host"
        has_length = has_length or lower == b"content-length"
        parts += (name, b": ", value, b"\r\n")
        lines += 1
    if not has_host:
        parts += (b"Host: ", request.url.netloc, b"\r\n")
        lines += 1
    if not has_length and (body or method in (b"POST", b"PUT", b"PATCH")):
        parts += (b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n")
        lines += 1
    parts.append(b"\r\n")
    head = b"".join(parts)
    # Every CR and LF must be a line end written above: one inside a field would forge headers.
    if head.count(b"\r") != lines or head.count(b"\n") != lines:
        raise httpx.LocalProtocolError("line break inside the request line or a header", request=request)
    return head + body
