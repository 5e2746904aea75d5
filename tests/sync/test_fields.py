"""Field values as typed columns: newer records win, widenings, merges, and the modules that read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from connectors.hubspot.client import PropertyDefinition
from field_mapping.config import HubSpotPushConfig
from field_mapping.model import FieldDefinition, Origin
from field_mapping.types import FieldType
from sync.fields import (
    StoredField,
    create_field,
    load_fields,
    merge_values,
    read_values,
    save_definitions,
    save_values,
)
from sync.hubspot_push import push_to_hubspot
from sync.privacy import erase_contact
from sync.registry import list_fields
from sync.store.field_columns import field_columns, stamp
from sync.store.tables import contact_fields, contact_identities, contacts, field_definitions, field_sources

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SEATS = FieldDefinition(
    "seats", FieldType.INTEGER, "Seats", Origin("auto", "stripe", "customers", "metadata.seats")
)


def _contacts(conn: Connection, *ids: int) -> None:
    conn.execute(
        insert(contacts), [{"id": i, "created_at": T0, "updated_at": T0, "changed_at": T0} for i in ids]
    )


def _field(conn: Connection, name: str, ftype: FieldType) -> StoredField:
    return create_field(conn, name, ftype, now=T0, label=name, origin="rule", source="stripe")


def _sources(conn: Connection, contact_id: int) -> dict[str, list[str]]:
    fs = field_sources.c
    return dict(conn.execute(select(fs.sources).where(fs.contact_id == contact_id)).scalar_one())


def test_a_value_from_an_older_record_never_replaces_a_newer_one_whatever_its_source(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2)
        plan = _field(conn, "plan", FieldType.STRING)
        save_values(conn, [(1, plan, "gold", "stripe", T0)], fresh={1})
        save_values(conn, [(1, plan, "silver", "hubspot", T0 - timedelta(days=1))])
        assert read_values(conn, [1], {"plan": plan}) == {1: {"plan": "gold"}}
        assert _sources(conn, 1) == {str(plan.id): ["stripe", stamp(T0)]}
        save_values(conn, [(1, plan, "bronze", "hubspot", T0 + timedelta(hours=1))])
        # Within one batch too: the latest record wins, not the last row.
        save_values(
            conn,
            [(2, plan, "new", "stripe", T0 + timedelta(hours=2)), (2, plan, "old", "hubspot", T0)],
        )
        assert read_values(conn, [1, 2], {"plan": plan}) == {1: {"plan": "bronze"}, 2: {"plan": "new"}}
        assert _sources(conn, 1) == {str(plan.id): ["hubspot", stamp(T0 + timedelta(hours=1))]}
        assert _sources(conn, 2) == {str(plan.id): ["stripe", stamp(T0 + timedelta(hours=2))]}


def test_widening_integer_to_string_moves_the_values_to_a_text_column(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2)
        seats = save_definitions(conn, [SEATS], T0)["seats"]
        save_values(conn, [(1, seats, 3, "stripe", T0)], fresh={1})
        widened = save_definitions(conn, [replace(SEATS, type=FieldType.STRING)], T0)
        field = widened["seats"]
        assert field.id == seats.id and field.type is FieldType.STRING
        assert read_values(conn, [1, 2], widened) == {1: {"seats": "3"}}  # "3", not "3.0"
        assert field.column in field_columns(conn) and seats.column not in field_columns(conn)
        assert _sources(conn, 1) == {str(seats.id): ["stripe", stamp(T0)]}


def test_merging_keeps_the_newer_value_and_takes_the_missing_ones(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2, 3, 4)
        plan, seats = _field(conn, "plan", FieldType.STRING), _field(conn, "seats", FieldType.INTEGER)
        save_values(
            conn,
            [
                (1, plan, "gold", "stripe", T0 + timedelta(days=1)),  # newer than the merged contact's
                (2, plan, "silver", "hubspot", T0),
                (2, seats, 5, "hubspot", T0 + timedelta(days=1)),
                (4, seats, 7, "stripe", T0),
            ],
            fresh={1, 2, 4},
        )
        merge_values(conn, keep=1, other=2)
        merge_values(conn, keep=3, other=4)  # a kept contact that held nothing
        fields = load_fields(conn)
        assert read_values(conn, [1, 2, 3, 4], fields) == {
            1: {"plan": "gold", "seats": 5},
            3: {"seats": 7},
        }
        later = stamp(T0 + timedelta(days=1))
        assert _sources(conn, 1) == {str(plan.id): ["stripe", later], str(seats.id): ["hubspot", later]}
        assert _sources(conn, 3) == {str(seats.id): ["stripe", stamp(T0)]}
        held = conn.execute(select(contact_fields.c.contact_id).order_by(contact_fields.c.contact_id))
        assert held.scalars().all() == [1, 3]


def test_fill_rate_counts_the_values_each_field_column_holds_among_live_contacts(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2, 3, 4)
        plan = _field(conn, "plan", FieldType.STRING)
        _field(conn, "seats", FieldType.INTEGER)
        save_values(
            conn,
            [(1, plan, "gold", "stripe", T0), (2, plan, "gold", "stripe", T0), (3, plan, None, "stripe", T0)],
            fresh={1, 2, 3},
        )
        infos = {info.name: info for info in list_fields(conn)}
    assert (infos["plan"].filled, infos["plan"].fill_rate) == (2, 0.5)
    assert (infos["seats"].filled, infos["seats"].fill_rate) == (0, 0.0)


def test_erasing_forgets_enum_options_no_other_contact_holds(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2, 3, 4)
        plan = create_field(
            conn,
            "plan",
            FieldType.ENUM,
            now=T0,
            label="Plan",
            origin="auto",
            source="stripe",
            options=["gold", "silver"],
        )
        rows = [
            (1, plan, "gold", "stripe", T0),
            (2, plan, "silver", "stripe", T0),
            (3, plan, "silver", "stripe", T0),
        ]
        save_values(conn, rows, fresh={1, 2, 3})
        kept = erase_contact(conn, 2, now=T0)
        forgotten = erase_contact(conn, 1, now=T0)
        empty = erase_contact(conn, 4, now=T0)  # held no value at all
        options = conn.execute(select(field_definitions.c.options)).scalar_one()
        held = conn.execute(select(contact_fields.c.contact_id)).scalars().all()
    assert (kept["field_options"], kept["contact_fields"]) == (0, 1)
    assert (forgotten["field_options"], forgotten["contact_fields"]) == (1, 1)
    assert (empty["field_options"], empty["contact_fields"], empty["contacts"]) == (0, 0, 1)
    assert options == ["silver"] and held == [3]


class _HubSpot:
    """Records the values a push writes; every group and property is new."""

    def __init__(self) -> None:
        self.written: dict[str, dict[str, str]] = {}

    def create_property_group(self, object_type: str, body: Mapping[str, Any]) -> bool:
        return True

    def create_properties(self, object_type: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        return [body["name"] for body in bodies]

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        self.written.update({i["id"]: dict(i["properties"]) for i in inputs})
        return {}

    def properties(self, object_type: str) -> list[PropertyDefinition]:
        return []

    def update_property(self, object_type: str, name: str, body: Mapping[str, Any]) -> None:
        raise AssertionError("no property exists to retype")


def test_hubspot_gets_written_values_and_empties_for_cleared_ones_only(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2, 3)
        plan, vip = _field(conn, "plan", FieldType.STRING), _field(conn, "vip", FieldType.BOOLEAN)
        hubspot_ids = [
            {
                "contact_id": i,
                "kind": "hubspot_contact",
                "value": str(100 + i),
                "source": "hubspot",
                "first_seen_at": T0,
            }
            for i in (1, 2, 3)
        ]
        conn.execute(insert(contact_identities), hubspot_ids)
        # 1: a plan and a vip flag written empty; 2: a plan a later record cleared; 3: nothing ever written.
        save_values(
            conn,
            [(1, plan, "gold", "stripe", T0), (1, vip, None, "crmhub", T0), (2, plan, "gold", "stripe", T0)],
            fresh={1, 2},
        )
        save_values(conn, [(2, plan, None, "stripe", T0 + timedelta(hours=1))])
    hubspot = _HubSpot()
    push_to_hubspot(engine, hubspot, HubSpotPushConfig(push=True), now=T0)
    assert hubspot.written == {"101": {"crmhub_plan": "gold", "crmhub_vip": ""}, "102": {"crmhub_plan": ""}}
