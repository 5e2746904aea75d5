"""A merge keeps, per field, the value a sync would have kept had both contacts been one from the start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, delete, insert, select

from connectors import Batch, Record
from field_mapping.config import FieldMappingConfig, Wins
from field_mapping.mapper import Mapper
from field_mapping.types import FieldType
from sync.fields import StoredField, create_field, load_fields, merge_values, read_values, save_values
from sync.identity import merge
from sync.ingest import PageStore
from sync.runs import start_run
from sync.store.field_columns import stamp
from sync.store.tables import contact_fields, contacts, field_sources

T0 = datetime(2026, 11, 23, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
# The two sides of every merge below: HubSpot's older value and Stripe's newer one.
HUBSPOT = ("enterprise", "hubspot", T0)
STRIPE = ("pro", "stripe", LATER)


def _contacts(conn: Connection, *ids: int) -> None:
    conn.execute(
        insert(contacts), [{"id": i, "created_at": T0, "updated_at": T0, "changed_at": T0} for i in ids]
    )


def _field(conn: Connection, name: str, ftype: FieldType = FieldType.STRING) -> StoredField:
    return create_field(conn, name, ftype, now=T0, label=name, origin="rule", source=None)


def _sources(conn: Connection, contact_id: int) -> dict[str, list[str]]:
    fs = field_sources.c
    return dict(conn.execute(select(fs.sources).where(fs.contact_id == contact_id)).scalar_one())


@pytest.mark.parametrize(
    ("wins", "kept_holds", "expected"),
    [
        (None, HUBSPOT, STRIPE),  # the default: the newer record's, though the merged contact's
        (None, STRIPE, STRIPE),
        ("first", HUBSPOT, HUBSPOT),
        ("first", STRIPE, HUBSPOT),
        (("hubspot", "stripe"), STRIPE, HUBSPOT),  # the ranked source's, older and merged
        (("stripe", "hubspot"), HUBSPOT, STRIPE),
        (("typeform",), HUBSPOT, STRIPE),  # neither ranked: the newer
    ],
    ids=["latest-merged", "latest-kept", "first-kept", "first-merged", "rank-old", "rank-new", "unranked"],
)
def test_a_merge_keeps_the_value_the_fields_wins_prefers_with_its_provenance(
    engine: Engine,
    wins: Wins | None,
    kept_holds: tuple[str, str, datetime],
    expected: tuple[str, str, datetime],
) -> None:
    merged_holds = STRIPE if kept_holds is HUBSPOT else HUBSPOT
    with engine.begin() as conn:
        _contacts(conn, 1, 2)
        plan = _field(conn, "plan")
        save_values(conn, [(1, plan, *kept_holds), (2, plan, *merged_holds)], fresh={1, 2})
        merge_values(conn, keep=1, other=2, wins=None if wins is None else {"plan": wins})
        value, source, at = expected
        assert read_values(conn, [1, 2], {"plan": plan}) == {1: {"plan": value}}
        assert _sources(conn, 1) == {str(plan.id): [source, stamp(at)]}


@pytest.mark.parametrize("source", ["hubspot", "stripe"], ids=["same-source", "other-source"])
def test_on_a_tie_the_kept_contacts_value_stays(engine: Engine, source: str) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2)
        plan = _field(conn, "plan")
        values = [(1, plan, "enterprise", "hubspot", T0), (2, plan, "pro", source, T0)]
        save_values(conn, values, fresh={1, 2})
        merge_values(conn, keep=1, other=2)
        assert read_values(conn, [1], {"plan": plan}) == {1: {"plan": "enterprise"}}
        assert _sources(conn, 1) == {str(plan.id): ["hubspot", stamp(T0)]}


def test_a_value_without_provenance_is_replaced_only_when_the_kept_contact_has_none(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2, 3, 4)
        plan, seats = _field(conn, "plan"), _field(conn, "seats", FieldType.INTEGER)
        save_values(
            conn,
            [
                (1, plan, "enterprise", "hubspot", T0),
                (2, plan, "pro", "stripe", LATER),
                (3, seats, 5, "hubspot", T0),
                (4, seats, 7, "stripe", LATER),
            ],
            fresh={1, 2, 3, 4},
        )
        conn.execute(delete(field_sources).where(field_sources.c.contact_id.in_([1, 4])))
        merge_values(conn, keep=1, other=2)  # the kept value has no provenance: it stays
        merge_values(conn, keep=3, other=4)  # the merged one has none: the kept one's stays
        assert read_values(conn, [1, 3], load_fields(conn)) == {1: {"plan": "enterprise"}, 3: {"seats": 5}}


def test_a_field_only_the_merged_contact_holds_moves_over_with_its_provenance(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2)
        plan, seats = _field(conn, "plan"), _field(conn, "seats", FieldType.INTEGER)
        save_values(
            conn,
            [
                (1, plan, "pro", "stripe", LATER),
                (2, plan, "enterprise", "hubspot", T0),
                (1, seats, None, "stripe", LATER),  # a newer record cleared it
                (2, seats, 5, "hubspot", T0),
            ],
            fresh={1, 2},
        )
        merge_values(conn, keep=1, other=2, wins={"seats": "first"})
        assert read_values(conn, [1, 2], load_fields(conn)) == {1: {"plan": "pro", "seats": 5}}
        assert _sources(conn, 1) == {
            str(plan.id): ["stripe", stamp(LATER)],
            str(seats.id): ["hubspot", stamp(T0)],
        }
        assert conn.execute(select(contact_fields.c.contact_id)).scalars().all() == [1]


def test_merging_several_contacts_keeps_the_newest_of_all(engine: Engine) -> None:
    with engine.begin() as conn:
        _contacts(conn, 1, 2, 3)
        plan = _field(conn, "plan")
        values = [(1, plan, "free", "hubspot", T0), (2, plan, "pro", "stripe", LATER)]
        save_values(conn, [*values, (3, plan, "team", "hubspot", T0 + timedelta(minutes=1))], fresh={1, 2, 3})
        merge(conn, keep=1, others=[2, 3], reason="test", now=LATER, wins={})
        assert read_values(conn, [1], {"plan": plan}) == {1: {"plan": "pro"}}


def _record(source: str, at: datetime, plan: str, **identity: str) -> Record:
    """A HubSpot contact 7 or a Stripe customer cus_7 with `plan` and the e-mail given, if any."""
    if source == "hubspot":
        properties: dict[str, Any] = {"plan": plan} | identity
        return Record("hubspot", "contacts", "7", at, {"id": "7", "properties": properties})
    return Record("stripe", "customers", "cus_7", at, {"id": "cus_7", "metadata": {"plan": plan}} | identity)


@pytest.mark.parametrize(
    ("wins", "hubspot_at", "stripe_at"),
    [("latest", T0, LATER), (["stripe", "hubspot"], LATER, T0)],
    ids=["latest", "ranked"],
)
def test_a_page_linking_two_contacts_keeps_the_value_the_rules_prefer(
    engine: Engine, wins: Any, hubspot_at: datetime, stripe_at: datetime
) -> None:
    # HubSpot's contact comes first, so it is the one kept; Stripe's value is the one to keep.
    rules = [
        {"source": source, "stream": stream, "path": path, "field": "plan", "type": "string", "wins": wins}
        for source, stream, path in (
            ("hubspot", "contacts", "properties.plan"),
            ("stripe", "customers", "metadata.plan"),
        )
    ]
    store = PageStore(Mapper(FieldMappingConfig.model_validate({"rules": rules})))
    pages = [
        _record("hubspot", hubspot_at, "enterprise"),
        _record("stripe", stripe_at, "pro", email="ada@example.com"),
        # HubSpot's contact again, now with Stripe's e-mail: one person.
        _record("hubspot", hubspot_at, "enterprise", email="ada@example.com"),
    ]
    for record in pages:
        with engine.begin() as conn:
            run_id = start_run(conn, source=record.source, trigger="test", now=LATER)
            store(conn, Batch(record.source, record.stream, [record]), run_id=run_id, now=LATER)
    with engine.connect() as conn:
        [contact] = conn.execute(select(contacts.c.id)).scalars().all()
        plan = load_fields(conn)["plan"]
        assert read_values(conn, [contact], {"plan": plan}) == {contact: {"plan": "pro"}}
        assert _sources(conn, contact)[str(plan.id)] == ["stripe", stamp(stripe_at)]
