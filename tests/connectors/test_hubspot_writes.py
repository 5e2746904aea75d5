"""Writing contacts' values: HubSpot's refusals come back as answers the push can sort out."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from connectors.config import ConnectorsConfig, HubSpotConfig
from connectors.exceptions import PermanentError
from connectors.factory import build_source
from connectors.hubspot import HubSpotSource
from connectors.hubspot.client import HubSpotApi
from tests.connectors.fakes import HUBSPOT_URL, FakeSleep

UPDATE = "/crm/v3/objects/contacts/batch/update"
INPUTS = [{"id": "101", "properties": {"crmhub_plan": "gold"}}, {"id": "283", "properties": {}}]


def _api(
    answer: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request], sleep: FakeSleep
) -> HubSpotApi:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    config = ConnectorsConfig(hubspot=HubSpotConfig(enabled=True, base_url=HUBSPOT_URL))
    http = httpx.Client(transport=httpx.MockTransport(handler), timeout=5)
    source = build_source("hubspot", config, "pat-1", http, sleep=sleep, clock=sleep.clock)
    assert isinstance(source, HubSpotSource)
    return source.api


def test_a_batch_refused_whole_is_answered_with_hubspots_error_body() -> None:
    seen: list[httpx.Request] = []
    body = {
        "status": "error",
        "message": "Could not get some contacts objects: 283",
        "category": "VALIDATION_ERROR",
        "context": {"ids": ["283"]},
    }
    api = _api(lambda request: httpx.Response(400, json=body), seen, FakeSleep())
    assert api.batch_update("contacts", INPUTS) == body
    assert [r.url.path for r in seen] == [UPDATE]  # a 400 is not retried
    assert json.loads(seen[0].content)["inputs"][0] == INPUTS[0]


def test_a_refusal_without_a_json_body_still_comes_back_as_an_error() -> None:
    seen: list[httpx.Request] = []
    api = _api(lambda request: httpx.Response(400, text="Bad Request"), seen, FakeSleep())
    assert api.batch_update("contacts", INPUTS) == {"status": "error", "message": "Bad Request"}


def test_a_207_comes_back_with_its_errors() -> None:
    seen: list[httpx.Request] = []
    body = {
        "status": "COMPLETE",
        "results": [{"id": "101", "properties": {"crmhub_plan": "gold"}}],
        "numErrors": 1,
        "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": ["283"]}}],
    }
    api = _api(lambda request: httpx.Response(207, json=body), seen, FakeSleep())
    assert api.batch_update("contacts", INPUTS) == body


def test_a_token_that_may_not_write_contacts_is_told_which_scope_it_lacks() -> None:
    seen: list[httpx.Request] = []
    body = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes",
        "category": "MISSING_SCOPES",
    }
    api = _api(lambda request: httpx.Response(403, json=body), seen, FakeSleep())
    with pytest.raises(PermanentError) as raised:
        api.batch_update("contacts", INPUTS)
    message = str(raised.value)
    assert message.startswith("hubspot: contacts batch update: refused (403) (This app hasn't")
    assert message.endswith("connectors.hubspot.api_key_env the crm.objects.contacts.write scope")
    assert "read access" not in message


def test_every_batch_update_takes_its_token_from_the_rate_limit() -> None:
    seen: list[httpx.Request] = []
    sleep = FakeSleep()
    api = _api(lambda request: httpx.Response(200, json={"status": "COMPLETE", "results": []}), seen, sleep)
    for _ in range(3):  # as a push halving a refused batch sends them
        api.batch_update("contacts", INPUTS)
    rate = HubSpotConfig().requests_per_second
    assert len(seen) == 3 and sleep.calls == pytest.approx([1 / rate, 1 / rate])
