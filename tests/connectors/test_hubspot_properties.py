"""Creating HubSpot properties 100 per call, with whatever a batch did not create made one at a time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connectors.config import ConnectorsConfig, HubSpotConfig
from connectors.exceptions import PermanentError
from connectors.factory import build_source
from connectors.hubspot import HubSpotSource
from connectors.hubspot.client import HubSpotApi
from tests.connectors.fakes import HUBSPOT_URL, FakeSleep

BATCH = "/crm/v3/properties/contacts/batch/create"
SINGLE = "/crm/v3/properties/contacts"


def _body(name: str) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "string", "fieldType": "text", "groupName": "crmhub"}


def _api(answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request]) -> HubSpotApi:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    config = ConnectorsConfig(hubspot=HubSpotConfig(enabled=True, base_url=HUBSPOT_URL))
    http = httpx.Client(transport=httpx.MockTransport(handler), timeout=5)
    sleep = FakeSleep()
    source = build_source("hubspot", config, "pat-1", http, sleep=sleep, clock=sleep.clock)
    assert isinstance(source, HubSpotSource)
    return source.api


def _created(request: httpx.Request) -> dict[str, Any]:
    return {**json.loads(request.content), "createdAt": "2026-12-03T00:00:00Z"}


def _error(status: int, message: str, category: str) -> httpx.Response:
    return httpx.Response(status, json={"status": "error", "message": message, "category": category})


def test_a_batch_of_new_properties_is_one_call() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        inputs = json.loads(request.content)["inputs"]
        return httpx.Response(201, json={"status": "COMPLETE", "results": inputs})

    api = _api(answer, seen)
    assert api.create_properties("contacts", [_body("crmhub_a"), _body("crmhub_b")]) == [
        "crmhub_a",
        "crmhub_b",
    ]
    assert [r.url.path for r in seen] == [BATCH]
    sent = json.loads(seen[0].content)["inputs"]
    assert [(p["name"], p["type"], p["fieldType"], p["groupName"]) for p in sent] == [
        ("crmhub_a", "string", "text", "crmhub"),
        ("crmhub_b", "string", "text", "crmhub"),
    ]


def test_a_207_leaves_the_refused_to_single_creates_where_409_means_it_exists() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == BATCH:
            inputs = json.loads(request.content)["inputs"]
            error = {
                "status": "error",
                "category": "OBJECT_ALREADY_EXISTS",
                "context": {"name": ["crmhub_a"]},
            }
            return httpx.Response(207, json={"results": inputs[1:], "errors": [error], "numErrors": 1})
        return _error(409, "Property named 'crmhub_a' already exists.", "OBJECT_ALREADY_EXISTS")

    api = _api(answer, seen)
    assert api.create_properties("contacts", [_body("crmhub_a"), _body("crmhub_b")]) == ["crmhub_b"]
    assert [r.url.path for r in seen] == [BATCH, SINGLE]
    assert json.loads(seen[1].content)["name"] == "crmhub_a"


def test_a_whole_batch_refused_is_created_one_property_at_a_time() -> None:
    seen: list[httpx.Request] = []
    taken = {"crmhub_a"}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == BATCH:
            return _error(409, "Property named 'crmhub_a' already exists.", "OBJECT_ALREADY_EXISTS")
        name = json.loads(request.content)["name"]
        if name in taken:
            return _error(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        return httpx.Response(201, json=_created(request))

    api = _api(answer, seen)
    assert api.create_properties("contacts", [_body("crmhub_a"), _body("crmhub_b")]) == ["crmhub_b"]
    assert [r.url.path for r in seen] == [BATCH, SINGLE, SINGLE]


def test_a_property_hubspot_refuses_is_named_in_the_error() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return _error(400, "fieldType 'text' is not valid for type 'number'", "VALIDATION_ERROR")

    api = _api(answer, seen)
    with pytest.raises(PermanentError, match=r"crmhub_a.*not valid for type"):
        api.create_properties("contacts", [_body("crmhub_a"), _body("crmhub_b")])
    assert [r.url.path for r in seen] == [BATCH, SINGLE]


def test_a_wrong_token_stops_at_the_batch() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return _error(401, "Authentication credentials not found.", "INVALID_AUTHENTICATION")

    api = _api(answer, seen)
    with pytest.raises(PermanentError, match=r"hubspot: .*authentication failed \(401\).*api_key_env"):
        api.create_properties("contacts", [_body("crmhub_a")])
    assert [r.url.path for r in seen] == [BATCH]
