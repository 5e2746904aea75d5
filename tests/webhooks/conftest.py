"""Shared pieces for the webhook tests: a store with transitions, a clock, recording consumers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, delete, insert, update

from sync.store.tables import contact_identities, contacts, memberships, outbox, segments, transitions
from webhooks import EndpointConfig, WebhooksConfig, build_senders, generate_secret
from webhooks.worker import DeliveryWorker

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "webhook.schema.json").read_text())


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def add_segment(conn: Connection, key: str = "vip", now: datetime = T0) -> int:
    """Insert a segment and return its id."""
    return conn.execute(
        insert(segments)
        .values(key=key, name=key.upper(), rule={}, rule_version="v1", created_at=now, updated_at=now)
        .returning(segments.c.id)
    ).scalar_one()


def add_contact(conn: Connection, email: str | None = None, now: datetime = T0) -> int:
    """Insert a contact (with an e-mail identity when given) and return its id."""
    cid = conn.execute(
        insert(contacts).values(created_at=now, updated_at=now, changed_at=now).returning(contacts.c.id)
    ).scalar_one()
    if email:
        conn.execute(
            insert(contact_identities).values(
                contact_id=cid, kind="email", value=email, source="test", first_seen_at=now
            )
        )
    return cid


def add_transition(
    conn: Connection, segment_id: int, contact_id: int, kind: str = "entered", now: datetime = T0
) -> int:
    """A transition and its outbox row, as the segment engine writes them (same transaction)."""
    seq = conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(transition_seq=contacts.c.transition_seq + 1)
        .returning(contacts.c.transition_seq)
    ).scalar_one()
    tid = conn.execute(
        insert(transitions)
        .values(
            segment_id=segment_id,
            contact_id=contact_id,
            kind=kind,
            occurred_at=now,
            reason="rule",
            rule_version="v1",
            contact_seq=seq,
        )
        .returning(transitions.c.id)
    ).scalar_one()
    conn.execute(insert(outbox).values(transition_id=tid, created_at=now))
    # The membership follows, as the segment engine keeps it (a replay checks an entry still holds).
    member = (memberships.c.segment_id == segment_id) & (memberships.c.contact_id == contact_id)
    conn.execute(delete(memberships).where(member))
    if kind == "entered":
        conn.execute(insert(memberships).values(segment_id=segment_id, contact_id=contact_id, entered_at=now))
    return tid


def seed(engine: Engine, n: int, *, key: str = "vip", now: datetime = T0) -> list[int]:
    """`n` contacts entering segment `key`; returns the transition ids."""
    with engine.begin() as conn:
        sid = add_segment(conn, key, now)
        return [
            add_transition(conn, sid, add_contact(conn, f"c{i}@example.com", now), now=now) for i in range(n)
        ]


@dataclass
class Consumer:
    """A webhook consumer behind httpx.MockTransport; `answer` decides each response."""

    answer: Callable[[httpx.Request], httpx.Response | Any] = lambda _r: httpx.Response(204)
    received: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        result = self.answer(request)
        if hasattr(result, "__await__"):
            result = await result
        assert isinstance(result, httpx.Response)
        return result

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.received]

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


def endpoint(name: str = "sms", **overrides: Any) -> EndpointConfig:
    """A webhook endpoint whose secret lives in ${NAME}_SECRET."""
    values: dict[str, Any] = {
        "url": f"https://hooks.example/{name}",
        "secret_envs": [f"{name.upper()}_SECRET"],
    }
    return EndpointConfig(**(values | overrides))


def make_config(*endpoints: tuple[str, EndpointConfig], **overrides: Any) -> WebhooksConfig:
    return WebhooksConfig(endpoints=dict(endpoints), **overrides)


def secrets_for(config: WebhooksConfig) -> dict[str, str]:
    """A fresh secret for every environment variable the config names."""
    return {env: generate_secret() for env in config.secret_envs().values()}


def make_worker(
    engine: Engine,
    config: WebhooksConfig,
    consumers: dict[str, Consumer],
    environ: dict[str, str],
    **kwargs: Any,
) -> DeliveryWorker:
    """A worker whose endpoints are served by `consumers` (one MockTransport per endpoint host)."""

    async def route(request: httpx.Request) -> httpx.Response:
        return await consumers[request.url.path.strip("/")](request)

    senders = build_senders(config, environ, transport=httpx.MockTransport(route))
    return DeliveryWorker(engine, config, senders, **kwargs)


@dataclass
class Received:
    """One request a LocalServer got."""

    path: str
    headers: dict[str, str]
    body: bytes


class LocalServer:
    """A real HTTP server on 127.0.0.1 in a thread, for clients that httpx mocks cannot reach."""

    def __init__(self, status: int = 204) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.status = status
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                server.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                payload = b'{"success": true}' if server.status < 300 else b'{"code": "x", "message": "down"}'
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def matches_schema(value: Any, schema: dict[str, Any] | None = None, path: str = "$") -> None:
    """Assert `value` is valid by `schema` (docs/webhook.schema.json unless told), in the parts it uses."""
    schema = SCHEMA if schema is None else schema
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        py: dict[str, type | tuple[type, ...]] = {
            "object": dict,
            "array": list,
            "string": str,
            "integer": int,
            "null": type(None),
            "boolean": bool,
            "number": (int, float),
        }
        assert any(
            isinstance(value, py[k]) and not (k == "integer" and isinstance(value, bool)) for k in allowed
        ), path
    if "enum" in schema:
        assert value in schema["enum"], path
    if isinstance(value, list):
        for i, item in enumerate(value):
            matches_schema(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}.{key} missing"
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", {})
        if extra is False:
            assert set(value) <= set(props), f"{path}: unexpected {set(value) - set(props)}"
        for key, item in value.items():
            matches_schema(item, props.get(key, extra or {}), f"{path}.{key}")
    if "minimum" in schema:
        assert value >= schema["minimum"], path
