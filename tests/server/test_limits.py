"""Limits in front of the routes: the admin token before any body, admin body size, the body deadline."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.exceptions import StarletteDeprecationWarning
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmhub.server.app import create_app
from crmhub.server.limits import BodyDeadline
from crmhub.server.services import Services
from crmhub.settings import Settings
from sync.store import create_store_engine, upgrade

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 in its TestClient; this project pins httpx, which it still drives.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "admin-token-for-limits"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    engine: Engine = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(engine)
    services = Services(settings=Settings(), engine=engine, environ={"CRMHUB_ADMIN_TOKEN": TOKEN})
    yield create_app(services, scheduler=False, worker=False)
    engine.dispose()


def _scope(path: str, headers: dict[str, str]) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8484),
    }


def _call(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, bytes]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        await app(scope, receive, send)

    asyncio.run(run())
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def _body_never_read() -> Callable[[], Awaitable[Message]]:
    async def receive() -> Message:
        raise AssertionError("the body was read")

    return receive


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}"])
def test_an_admin_request_without_the_token_is_401_before_its_body_is_read(
    app: Any, authorization: str | None
) -> None:
    headers = {"content-type": "application/json", "content-length": str(400 * 1024 * 1024)}
    if authorization:
        headers["authorization"] = authorization
    status, body = _call(app, _scope("/admin/sync", headers), _body_never_read())
    assert status == 401
    assert "Authorization: Bearer" in json.loads(body)["detail"]


def test_an_admin_body_over_64_kib_is_413_declared_or_streamed(app: Any) -> None:
    auth = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    declared = auth | {"content-length": str(400 * 1024 * 1024)}
    assert _call(app, _scope("/admin/sync", declared), _body_never_read())[0] == 413
    chunk = b" " * 16 * 1024
    chunks = iter([chunk] * 8)

    async def streamed() -> Message:
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    assert _call(app, _scope("/admin/sync", auth), streamed)[0] == 413
    with TestClient(app) as client:
        answer = client.post("/admin/sync", content=b'{"sources": []}' + b" " * 70_000, headers=auth)
    assert answer.status_code == 413


def test_a_body_that_never_comes_is_408_after_the_deadline(app: Any) -> None:
    never = asyncio.Event()

    async def stalled() -> Message:
        await never.wait()
        return {"type": "http.disconnect"}

    fast = BodyDeadline(app, seconds=0.05)
    status, body = _call(fast, _scope("/hooks/stripe", {"content-length": "100"}), stalled)
    assert status == 408
    assert "not received within 0.05 s" in json.loads(body)["detail"]


def test_the_deadline_ends_with_the_body_and_is_the_apps_default(app: Any) -> None:
    seen: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        await asyncio.sleep(0.1)
        seen.append(await receive())

    messages: Iterator[Message] = iter([{"type": "http.request", "body": b"{}"}, {"type": "http.disconnect"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        raise AssertionError(message)

    async def run() -> None:
        await BodyDeadline(inner, seconds=0.05)(_scope("/", {}), receive, send)

    asyncio.run(run())
    assert [m["type"] for m in seen] == ["http.request", "http.disconnect"]
    assert Settings().server.body_timeout_seconds == 30
