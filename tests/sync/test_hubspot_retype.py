"""A pushed field whose type widened gets its HubSpot property retyped before values are written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, update

from connectors.hubspot.client import PropertyDefinition
from field_mapping.config import HubSpotPushConfig
from field_mapping.types import FieldType
from sync.fields import create_field
from sync.hubspot_push import push_to_hubspot
from sync.store.tables import field_definitions

T0 = datetime(2026, 11, 23, tzinfo=UTC)


class _HubSpot:
    """HubSpot holding `crmhub_seats` as a number property; records retypes."""

    def __init__(self) -> None:
        self.retyped: list[tuple[str, dict[str, Any]]] = []

    def create_property_group(self, object_type: str, body: Mapping[str, Any]) -> bool:
        return False

    def create_properties(self, object_type: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        return []

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        return {}

    def properties(self, object_type: str) -> list[PropertyDefinition]:
        return [
            PropertyDefinition("crmhub_seats", "Seats", "number", "number"),
            PropertyDefinition("crmhub_plan", "Plan", "string", "text"),
        ]

    def update_property(self, object_type: str, name: str, body: Mapping[str, Any]) -> None:
        self.retyped.append((name, dict(body)))


def test_a_widened_fields_property_takes_its_new_type_and_the_others_are_left(engine: Engine) -> None:
    with engine.begin() as conn:
        for name, ftype in (("seats", FieldType.STRING), ("plan", FieldType.STRING)):
            create_field(conn, name, ftype, now=T0, label=name, origin="automatic", source="stripe")
            conn.execute(
                update(field_definitions)
                .where(field_definitions.c.name == name)
                .values(hubspot_property=f"crmhub_{name}")
            )
    hubspot = _HubSpot()
    report = push_to_hubspot(engine, hubspot, HubSpotPushConfig(push=True), now=T0)
    assert [(name, body["type"], body["fieldType"]) for name, body in hubspot.retyped] == [
        ("crmhub_seats", "string", "text")
    ]
    assert report.properties_retyped == ["crmhub_seats"]


class _Unlisted(_HubSpot):
    """HubSpot that did not list `crmhub_seats` (number) before its create answered 409."""

    def __init__(self) -> None:
        super().__init__()
        self.create_tried = False

    def create_properties(self, object_type: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        self.create_tried = True
        return [body["name"] for body in bodies if body["name"] != "crmhub_seats"]

    def properties(self, object_type: str) -> list[PropertyDefinition]:
        return super().properties(object_type)[:1] if self.create_tried else []


def test_a_property_that_existed_with_another_type_is_retyped_by_the_push_that_met_it(engine: Engine) -> None:
    with engine.begin() as conn:
        create_field(
            conn, "seats", FieldType.STRING, now=T0, label="seats", origin="automatic", source="stripe"
        )
    hubspot = _Unlisted()
    report = push_to_hubspot(engine, hubspot, HubSpotPushConfig(push=True), now=T0)
    # Its type is read after the create, so this push's values meet a text property, not the next's.
    assert report.properties_created == [] and report.properties_retyped == ["crmhub_seats"]
    assert [(name, body["type"]) for name, body in hubspot.retyped] == [("crmhub_seats", "string")]
