"""Storing pages: a value never reaches a column that cannot hold it, and widened values read alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from connectors import Batch, Record
from field_mapping.config import FieldMappingConfig
from field_mapping.mapper import Mapper
from field_mapping.model import FieldValue, MappedRecord
from field_mapping.types import FieldType
from sync.engine import BatchResult
from sync.fields import load_definitions, load_fields
from sync.ingest import PageStore
from sync.runs import start_run
from sync.store.field_columns import fields_table
from sync.store.tables import contact_identities, records

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _customer(n: int, at: datetime = NOW, **metadata: Any) -> Record:
    payload = {
        "id": f"cus_{n}",
        "object": "customer",
        "email": f"person{n}@example.com",
        "metadata": metadata,
    }
    return Record("stripe", "customers", f"cus_{n}", at, payload)


def _contact(n: int) -> Record:
    props = {"email": f"person{n}@example.com", "amount": "12.5", "renewal": "2026-01-02", "vip": "true"}
    return Record("hubspot", "contacts", str(n), NOW, {"id": str(n), "properties": props})


def _store(engine: Engine, store: PageStore, page: list[Record]) -> BatchResult:
    with engine.begin() as conn:
        run_id = start_run(conn, source=page[0].source, trigger="test", now=NOW)
        return store(conn, Batch(page[0].source, page[0].stream, page), run_id=run_id, now=NOW)


def _held(conn: Connection, name: str) -> dict[str, Any]:
    """The stored values of field `name`, by the e-mail of the contact holding them."""
    field = load_fields(conn)[name]
    table = fields_table([field.column])
    ci = contact_identities.c
    rows = conn.execute(
        select(ci.value, table.c[field.column])
        .join(table, table.c.contact_id == ci.contact_id)
        .where(ci.kind == "email", table.c[field.column].is_not(None))
    )
    return dict(rows.tuples().all())


def _rule_store(ftype: str, transforms: list[str] | None = None) -> PageStore:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "metadata.age",
        "field": "age",
        "type": ftype,
        "transforms": transforms or [],
    }
    return PageStore(
        Mapper(FieldMappingConfig.model_validate({"rules": [rule], "auto": {"stripe": {"enabled": False}}}))
    )


@pytest.mark.parametrize(
    ("ftype", "transforms", "good", "bad"),
    [
        ("integer", [], "40", "forty"),
        ("boolean", [], "true", "yes"),
        ("datetime", [], "2026-01-02T03:04:05Z", "last week"),
        ("date", [], "2026-01-02", "last week"),
        ("datetime", ["unix_to_datetime"], "1767225600", "2026-01-02T03:04:05Z"),
    ],
)
def test_a_rule_value_that_does_not_fit_is_left_out_reported_and_kept_in_the_raw_record(
    engine: Engine, ftype: str, transforms: list[str], good: str, bad: str
) -> None:
    store = _rule_store(ftype, transforms)
    _store(engine, store, [_customer(1, NOW - timedelta(days=1), age=good), _customer(2, age=good)])
    result = _store(engine, store, [_customer(1, age=bad), _customer(3, age=bad)])
    [warning] = result.widenings
    assert warning.startswith("age: 2 values") and f"{bad!r} in stripe.customers cus_1" in warning
    assert f"{bad!r} in stripe.customers cus_3" in warning
    with engine.connect() as conn:
        held = _held(conn, "age")
        payload = conn.execute(select(records.c.payload).where(records.c.external_id == "cus_1")).scalar_one()
    # The newer record's value does not fit: the field holds no value rather than the stale one.
    assert set(held) == {"person2@example.com"}
    assert payload["metadata"]["age"] == bad


def _widened(engine: Engine, pages: list[list[Record]]) -> dict[str, Any]:
    store = PageStore(Mapper(FieldMappingConfig()))
    for page in pages:
        _store(engine, store, page)
    with engine.connect() as conn:
        assert load_fields(conn)["stripe_customer_metadata_since"].type is FieldType.STRING
        return _held(conn, "stripe_customer_metadata_since")


@pytest.mark.parametrize(
    ("first", "text"),
    [
        ("true", "true"),
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00"),
        ("2026-01-02", "2026-01-02"),
        ("1.50", "1.5"),
        ("12", "12"),
    ],
)
@pytest.mark.parametrize("together", [True, False], ids=["one page", "two pages"])
def test_a_value_typed_before_its_field_widened_to_text_reads_the_same_in_one_page_or_across_pages(
    engine: Engine, first: str, text: str, together: bool
) -> None:
    one, two = _customer(1, since=first), _customer(2, since="not a value of that type")
    held = _widened(engine, [[one, two]] if together else [[one], [two]])
    assert held == {"person1@example.com": text, "person2@example.com": "not a value of that type"}


def test_typed_hubspot_properties_sent_empty_clear_the_value_and_widen_nothing(engine: Engine) -> None:
    declared = {
        "hubspot.contacts": {"amount": FieldType.DECIMAL, "renewal": FieldType.DATE, "vip": FieldType.BOOLEAN}
    }
    store = PageStore(Mapper(FieldMappingConfig(), declared=declared))
    _store(engine, store, [_contact(1), _contact(2)])
    cleared = _contact(1)
    later = Record("hubspot", "contacts", "1", NOW + timedelta(hours=1), cleared.payload)
    later.payload["properties"].update(amount="", renewal="", vip="")
    result = _store(engine, store, [later])
    assert result.widenings == []
    with engine.connect() as conn:
        types = {name: f.type for name, f in load_fields(conn).items()}
        held = {name: set(_held(conn, name)) for name in ("hubspot_amount", "hubspot_renewal", "hubspot_vip")}
    assert (types["hubspot_amount"], types["hubspot_renewal"], types["hubspot_vip"]) == (
        FieldType.DECIMAL,
        FieldType.DATE,
        FieldType.BOOLEAN,
    )
    # "" is the source clearing the property: like a null, it clears the stored value.
    assert held == {name: {"person2@example.com"} for name in held}


class _TextForNumbers(Mapper):
    """A mapper that hands the store text for an integer rule, as the mapper once did."""

    def map_record(self, record: Record) -> MappedRecord:
        mapped = super().map_record(record)
        values = dict(mapped.values)
        values["age"] = FieldValue("age", "forty", FieldType.STRING, values["age"].origin)
        return replace(mapped, values=values)


def test_a_value_its_field_column_cannot_hold_is_left_out_and_never_aborts_the_page(engine: Engine) -> None:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "metadata.age",
        "field": "age",
        "type": "integer",
    }
    store = PageStore(_TextForNumbers(FieldMappingConfig.model_validate({"rules": [rule]})))
    result = _store(engine, store, [_customer(1, age="40")])
    assert result.widenings == [
        "age: 1 value not fitting its type integer (or its rule's transforms) left out of the field "
        "('forty' in stripe.customers cus_1); the raw records keep them: fix the values at the source, "
        "or change the rule"
    ]
    with engine.connect() as conn:
        assert _held(conn, "age") == {}


def test_an_enum_reaches_its_distinct_limit_across_runs_as_in_one_run(engine: Engine) -> None:
    """New options are saved on any page, so small incremental runs count them like one big run."""
    config = FieldMappingConfig.model_validate({"auto": {"stripe": {"enum_max_distinct": 5}}})
    for run in range(3):
        with engine.connect() as conn:
            mapper = Mapper(config, known=load_definitions(conn))  # each run starts from the store
        store = PageStore(mapper)
        _store(engine, store, [_customer(0, tier="tier_0")])  # a run's first page: nothing new
        _store(engine, store, [_customer(n, tier=f"tier_{n}") for n in range(run * 3 + 1, run * 3 + 4)])
    with engine.connect() as conn:
        tier = load_fields(conn)["stripe_customer_metadata_tier"]
    assert tier.type is FieldType.STRING  # 10 distinct values over 3 runs, the limit 5
