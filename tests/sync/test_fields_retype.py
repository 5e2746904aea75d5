"""A field's type change converts its stored values; those that do not fit are cleared and reported."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select

from field_mapping.model import FieldDefinition, Origin
from field_mapping.types import FieldType
from sync.field_moves import stored_text
from sync.fields import load_fields, read_values, save_definitions, save_values, stored_value
from sync.store.field_columns import field_columns, fields_table, stamp
from sync.store.tables import contacts, field_sources

T = FieldType
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ORIGIN = Origin("rule", "stripe", "customers", "metadata.age", 0)


def _define(ftype: FieldType) -> FieldDefinition:
    return FieldDefinition("age", ftype, "Age", ORIGIN)


def _hold(conn: Connection, ftype: FieldType, values: list[Any]) -> None:
    """Contacts 1, 2, ... holding `values` of a field `age` of type `ftype`."""
    ids = list(range(1, len(values) + 1))
    conn.execute(
        insert(contacts), [{"id": i, "created_at": T0, "updated_at": T0, "changed_at": T0} for i in ids]
    )
    age = save_definitions(conn, [_define(ftype)], T0)["age"]
    rows = [(i, age, stored_value(ftype, v), "stripe", T0) for i, v in zip(ids, values, strict=True)]
    save_values(conn, rows, fresh=set(ids))


def _retype(conn: Connection, ftype: FieldType) -> tuple[dict[int, Any], list[str]]:
    """Change `age` to `ftype`; its values by contact and the warnings."""
    warnings: list[str] = []
    fields = save_definitions(conn, [_define(ftype)], T0, warnings=warnings)
    values = read_values(conn, range(1, 10), fields)
    return {contact: held["age"] for contact, held in values.items() if "age" in held}, warnings


def test_a_string_field_retyped_to_integer_takes_the_numbers_and_reports_the_rest(engine: Engine) -> None:
    with engine.begin() as conn:
        _hold(conn, T.STRING, ["42", "unknown", "", "7"])
        before = load_fields(conn)["age"]
        values, [warning] = _retype(conn, T.INTEGER)
        after = load_fields(conn)["age"]
        columns = field_columns(conn)
        sources = dict(
            conn.execute(select(field_sources.c.contact_id, field_sources.c.sources)).tuples().all()
        )
    assert values == {1: 42, 4: 7}  # every read works: no text in the number column
    assert after.type is T.INTEGER and after.column in columns and before.column not in columns
    assert "age" in warning and "1 stored value" in warning and "contact 2: 'unknown'" in warning
    # The provenance stays, as for a value a record sent that does not fit: an older record cannot
    # put a value back.
    assert sources[2] == {str(after.id): ["stripe", stamp(T0)]}


@pytest.mark.parametrize(
    ("old", "new", "held", "kept"),
    [
        (T.DECIMAL, T.INTEGER, [Decimal("2"), Decimal("2.5")], {1: 2}),
        (
            T.DATETIME,
            T.DATE,
            [datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 2, 3, tzinfo=UTC)],
            {1: date(2026, 1, 2)},
        ),
        (T.INTEGER, T.DATETIME, [1_767_225_600, 12], {1: datetime(2026, 1, 1, tzinfo=UTC)}),
        (T.STRING, T.BOOLEAN, ["true", "yes"], {1: True}),
        (T.STRING, T.DATE, ["2026-01-02", "last week"], {1: date(2026, 1, 2)}),
        (
            T.STRING,
            T.DATETIME,
            ["2026-01-02T03:04:05Z", "soon"],
            {1: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
        ),
        (T.BOOLEAN, T.INTEGER, [True, False], {}),
    ],
)
def test_a_type_change_keeps_what_fits_the_new_type_and_reports_what_does_not(
    engine: Engine, old: FieldType, new: FieldType, held: list[Any], kept: dict[int, Any]
) -> None:
    with engine.begin() as conn:
        _hold(conn, old, held)
        values, [warning] = _retype(conn, new)
    assert values == kept
    assert f"{len(held) - len(kept)} stored value" in warning


@pytest.mark.parametrize(
    ("ftype", "value", "text"),
    [
        (T.BOOLEAN, True, "true"),
        (T.BOOLEAN, False, "false"),
        (T.INTEGER, 3, "3"),
        (T.DECIMAL, Decimal("9.95"), "9.95"),
        (T.DECIMAL, Decimal("1.50"), "1.5"),
        (T.DECIMAL, Decimal("12"), "12"),
        (T.DECIMAL, Decimal("-0.125"), "-0.125"),
        (T.DECIMAL, Decimal("1E+16"), "10000000000000000"),
        (T.DECIMAL, Decimal("123456789.25"), "123456789.25"),
        (T.DATETIME, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05+00:00"),
        (T.DATETIME, datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "2026-01-02T03:04:05.678000+00:00"),
        (T.DATE, date(2026, 1, 2), "2026-01-02"),
    ],
)
def test_a_widening_to_text_moves_each_value_in_the_form_a_new_value_gets(
    engine: Engine, ftype: FieldType, value: Any, text: str
) -> None:
    with engine.begin() as conn:
        _hold(conn, ftype, [value])
        values, warnings = _retype(conn, T.STRING)
        field = load_fields(conn)["age"]
        table = fields_table([field.column])
        stored = conn.execute(select(table.c[field.column])).scalar_one()
    assert values == {1: text} and stored == text and warnings == []
    assert stored_text(ftype, value) == text  # what a value typed before an in-page widening gets


def test_a_retype_over_more_contacts_than_one_chunk_converts_them_all(engine: Engine) -> None:
    with engine.begin() as conn:
        _hold(conn, T.STRING, [str(n) if n % 100 else "n/a" for n in range(1, 1201)])
        warnings: list[str] = []
        fields = save_definitions(conn, [_define(T.INTEGER)], T0, warnings=warnings)
        values = read_values(conn, range(1, 1201), fields)
    assert sum("age" in held for held in values.values()) == 1188 and values[1199] == {"age": 1199}
    assert "12 stored values" in warnings[0] and "and 9 more" in warnings[0]
