"""A minimal ASGI request/response layer: the look-alikes answer thousands of pages a second through it."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

# The server protocol in `server.py` sees this header in the response head and drops the connection instead.
DROP_HEADER = b"x-crmhub-sandbox-drop"

_SEGMENT = re.compile(r"\{(\w+)\}")


@dataclass
class Request:
    """What a handler needs of an HTTP request."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    root_url: str
    path_params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter `name`."""
        for key, value in self.query:
            if key == name:
                return value
        return default

    def args(self, name: str) -> list[str]:
        """Every value of a repeated query parameter."""
        return [value for key, value in self.query if key == name]

    def json(self) -> Any:
        """The body parsed as JSON; `ValueError` when it is not JSON."""
        return json.loads(self.body or b"null")


@dataclass
class Response:
    """A complete response; the body is bytes already, so sending it is one write."""

    status: int
    body: bytes = b""
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    drop: bool = False


Handler = Callable[[Request], "Response | Awaitable[Response]"]


def json_response(status: int, value: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    """A JSON response of `value`."""
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), headers=headers or [])


def bracket_params(query: list[tuple[str, str]]) -> dict[str, Any]:
    """Form-bracket parameters (`created[gte]=1`, `expand[0]=x`, `types[]=y`) as nested values."""
    out: dict[str, Any] = {}
    for key, value in query:
        name, _, rest = key.partition("[")
        if not rest:
            out[name] = value
            continue
        parts = [name, *rest.rstrip("]").split("][")]
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            following = None if last else parts[i + 1]
            child_is_list = following is not None and (following == "" or following.isdigit())
            if isinstance(node, list):
                if last:
                    node.append(value)
                else:
                    node.append([] if child_is_list else {})
                    node = node[-1]
                continue
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if child_is_list else {})
    return out


class Router:
    """Method + path-pattern dispatch to handlers."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Route `method pattern` (with `{name}` segments) to `handler`."""
        regex = re.compile("^" + _SEGMENT.sub(r"(?P<\1>[^/]+)", pattern) + "$")
        self._routes.append((method, regex, handler))

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """The handler for a request, its path parameters, and whether the path exists at all."""
        path_known = False
        for route_method, regex, handler in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            path_known = True
            if route_method == method:
                return handler, found.groupdict(), True
        return None, {}, path_known


async def read_request(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]) -> Request:
    """Build a `Request` from an ASGI HTTP scope, reading the whole body."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    server = scope.get("server") or ("127.0.0.1", 80)
    host = headers.get("host") or f"{server[0]}:{server[1]}"
    return Request(
        method=scope["method"],
        path=scope["path"],
        query=parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True),
        headers=headers,
        body=b"".join(chunks),
        root_url=f"{scope.get('scheme', 'http')}://{host}",
    )


async def send_response(send: Callable[[dict[str, Any]], Awaitable[None]], response: Response) -> None:
    """Send `response` as one start and one body message."""
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
    ]
    headers.extend(response.headers)
    if response.drop:
        headers.append((DROP_HEADER, b"1"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
