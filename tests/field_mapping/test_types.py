"""Field types: widening order, the storage registry, and the column round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_mapping.types import STORAGE, Column, Columns, FieldType, from_columns, to_columns, widen

T = FieldType


@pytest.mark.parametrize(
    ("current", "seen", "expected"),
    [
        (T.INTEGER, T.INTEGER, T.INTEGER),
        (T.INTEGER, T.DECIMAL, T.DECIMAL),
        (T.DECIMAL, T.INTEGER, T.DECIMAL),
        (T.DECIMAL, T.STRING, T.STRING),
        (T.BOOLEAN, T.INTEGER, T.STRING),
        (T.DATETIME, T.INTEGER, T.STRING),
        (T.DATE, T.DATETIME, T.DATETIME),  # both live in the time column
        (T.DATETIME, T.DATE, T.DATETIME),
        (T.DATE, T.INTEGER, T.STRING),
        (T.ENUM, T.STRING, T.STRING),
        (T.EMAIL, T.ENUM, T.STRING),
        (T.PHONE, T.INTEGER, T.STRING),
        (T.STRING, T.BOOLEAN, T.STRING),
    ],
)
def test_widen_table(current: FieldType, seen: FieldType, expected: FieldType) -> None:
    assert widen(current, seen) is expected


def _rank(ftype: FieldType) -> int:
    # How many types a field of this type can hold: string holds all, decimal holds integers too,
    # datetime holds dates.
    return {T.STRING: 3, T.DECIMAL: 2, T.DATETIME: 2}.get(ftype, 1)


@given(st.lists(st.sampled_from(list(FieldType)), min_size=1, max_size=30))
def test_widening_never_narrows(seen: list[FieldType]) -> None:
    current = seen[0]
    for ftype in seen[1:]:
        wider = widen(current, ftype)
        assert _rank(wider) >= _rank(current)
        assert widen(wider, current) is wider  # what the field held before still fits
        assert widen(wider, ftype) is wider  # and so does the new value
        current = wider


def test_every_type_has_a_column() -> None:
    assert set(STORAGE) == set(FieldType)
    assert STORAGE[T.DECIMAL] is Column.NUM
    assert STORAGE[T.DATE] is Column.TIME
    assert STORAGE[T.PHONE] is Column.TEXT


@pytest.mark.parametrize(
    ("ftype", "value", "columns"),
    [
        (T.BOOLEAN, True, Columns(value_bool=True)),
        (T.INTEGER, 42, Columns(value_num=42)),
        (T.DECIMAL, Decimal("20.00"), Columns(value_num=Decimal("20.00"))),
        (
            T.DATETIME,
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            Columns(value_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ),
        (T.DATE, date(1980, 5, 17), Columns(value_time=datetime(1980, 5, 17, tzinfo=UTC))),
        (T.EMAIL, "jane@example.com", Columns(value_text="jane@example.com")),
        (T.PHONE, "+14155552671", Columns(value_text="+14155552671")),
        (T.ENUM, "active", Columns(value_text="active")),
        (T.STRING, "hello", Columns(value_text="hello")),
        (T.STRING, None, Columns()),
    ],
)
def test_columns_round_trip(ftype: FieldType, value: Any, columns: Columns) -> None:
    assert to_columns(ftype, value) == columns
    assert from_columns(ftype, columns) == value


def test_columns_restore_the_kind_a_database_loses() -> None:
    assert from_columns(T.INTEGER, Columns(value_num=42.0)) == 42
    assert from_columns(T.DECIMAL, Columns(value_num=9.95)) == Decimal("9.95")
    naive = from_columns(T.DATETIME, Columns(value_time=datetime(2024, 1, 2)))
    assert naive == datetime(2024, 1, 2, tzinfo=UTC)
