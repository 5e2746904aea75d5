"""The OpenAPI document describes the outbound webhooks as docs/webhook.schema.json does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from crmhub.server.app import create_app
from crmhub.server.openapi import SegmentWebhook
from crmhub.server.services import Services
from crmhub.settings import Settings
from sync.store import create_store_engine
from webhooks.payload import TransitionInfo, payload

PUBLISHED = json.loads(
    (Path(__file__).parents[2] / "docs" / "webhook.schema.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    engine = create_store_engine("sqlite://")
    app: FastAPI = create_app(Services(settings=Settings(), engine=engine), scheduler=False, worker=False)
    try:
        return app.openapi()
    finally:
        engine.dispose()


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def _required_keys(document: dict[str, Any], schema: dict[str, Any], at: str = "") -> dict[str, set[str]]:
    """Every object's required keys, by path, following $refs within the document."""
    schema = _resolve(document, schema)
    found = {at: set(schema.get("required", []))}
    for name, sub in schema.get("properties", {}).items():
        sub = _resolve(document, sub)
        if sub.get("type") == "object" or "properties" in sub:
            found |= _required_keys(document, sub, f"{at}.{name}")
    return found


def test_both_outbound_webhooks_are_in_the_document_with_their_headers(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    assert set(document["webhooks"]) == {"segment.entered", "segment.left"}
    for name, item in document["webhooks"].items():
        operation = item["post"]
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert all(h["required"] and h["description"] for h in headers.values())
        assert "v1," in headers["webhook-signature"]["description"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/SegmentWebhook"}, name
        assert "204" in operation["responses"] and "410" in operation["responses"]


def test_the_body_model_requires_what_the_published_schema_requires(document: dict[str, Any]) -> None:
    ours = _required_keys(document, document["components"]["schemas"]["SegmentWebhook"])
    theirs = _required_keys({"components": {"schemas": {}}}, PUBLISHED)
    assert ours == theirs
    event_type = document["components"]["schemas"]["SegmentWebhook"]["properties"]["type"]
    assert sorted(event_type["enum"]) == sorted(PUBLISHED["properties"]["type"]["enum"])


def test_the_body_model_accepts_what_the_sender_builds(document: dict[str, Any]) -> None:
    info = TransitionInfo(
        7, 42, "left", datetime(2026, 11, 23, 12, tzinfo=UTC), "rule", "3f2a", None, 3, "vip", "VIP"
    )
    body = payload(info, {"email": "ada@example.com", "plan": None, "score": 12.5})
    parsed = SegmentWebhook.model_validate(body)
    assert parsed.type == "segment.left" and parsed.data.contact.id == 42
    assert parsed.model_dump(mode="json", exclude_unset=True)["data"]["contact"]["email"] == "ada@example.com"


def test_the_body_model_accepts_a_body_with_cut_fields() -> None:
    info = TransitionInfo(
        7, 42, "entered", datetime(2026, 11, 23, 12, tzinfo=UTC), "rule", "3f2a", None, 3, "vip", "VIP"
    )
    body = payload(info, {f"note_{n}": "東" * 500 for n in range(20)})  # 30 kB of text before fitting
    assert body["data"]["contact"]["truncated_fields"]
    parsed = SegmentWebhook.model_validate(body)
    assert parsed.data.contact.truncated_fields == body["data"]["contact"]["truncated_fields"]
