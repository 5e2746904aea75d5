"""Converting raw values to field types: what a double holds exactly, and lists and objects as text."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from field_mapping import FieldDefinition, FieldMappingConfig, FieldType, Mapper, Origin
from field_mapping.convert import CONVERTERS, MAX_EXACT_INT, as_text
from field_mapping.registry import FieldRegistry
from field_mapping.transforms import TransformError
from field_mapping.types import Columns, from_columns
from tests.field_mapping.conftest import record

T = FieldType
AUTO = Origin("auto", "segmentio", "users", "traits.account_number")


def _convert(ftype: FieldType, raw: Any) -> Any:
    return CONVERTERS[ftype](raw, "US")


def _stored(ftype: FieldType, value: Any) -> Any:
    """`value` after the store's double-precision number column."""
    return from_columns(ftype, Columns(value_num=float(value)))


@pytest.mark.parametrize(
    "raw",
    [
        "12345678901234567",
        9_007_199_254_740_993,
        -9_007_199_254_740_993,
        "9007199254740993",
        "123456789012345678901234567890",
        Decimal("12345678901234567"),
        1e20,
    ],
)
def test_integer_a_double_cannot_hold_does_not_fit(raw: Any) -> None:
    with pytest.raises(TransformError):
        _convert(T.INTEGER, raw)


@pytest.mark.parametrize("raw", [MAX_EXACT_INT, -MAX_EXACT_INT, "9007199254740992", "42", 12.0])
def test_integer_up_to_2_53_fits(raw: Any) -> None:
    number = _convert(T.INTEGER, raw)
    assert _stored(T.INTEGER, number) == int(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "12345678901234.567",
        "1234567890123.4567",
        Decimal("0.1234567890123456"),
        "12345678901234567",
        9_007_199_254_740_993,
        Decimal("1E+20"),
        Decimal("1E-320"),
        Decimal("NaN"),
    ],
)
def test_decimal_of_more_than_15_digits_does_not_fit(raw: Any) -> None:
    with pytest.raises(TransformError):
        _convert(T.DECIMAL, raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1234567890123.45", Decimal("1234567890123.45")),
        ("12345678901234.500", Decimal("12345678901234.5")),  # trailing zeros are not significant
        (Decimal("20.00"), Decimal("20")),
        ("9007199254740992", Decimal(MAX_EXACT_INT)),
        ("0.000000000000001", Decimal("1E-15")),
        (9.95, Decimal("9.95")),
    ],
)
def test_decimal_that_fits_reads_back_exactly(raw: Any, expected: Decimal) -> None:
    assert _stored(T.DECIMAL, _convert(T.DECIMAL, raw)) == expected


@given(st.integers(min_value=-(2**60), max_value=2**60))
def test_every_integer_that_fits_survives_the_number_column(number: int) -> None:
    try:
        value = _convert(T.INTEGER, str(number))
    except TransformError:
        assert abs(number) > MAX_EXACT_INT
        return
    assert _stored(T.INTEGER, value) == number


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**16), max_value=10**16))
def test_every_decimal_that_fits_survives_the_number_column(number: Decimal) -> None:
    try:
        value = _convert(T.DECIMAL, str(number))
    except TransformError:
        return
    assert _stored(T.DECIMAL, value) == number


def test_automatic_integer_field_widens_to_string_for_a_number_too_long() -> None:
    registry = FieldRegistry()
    state = registry.add(FieldDefinition("account_number", T.INTEGER, "Account number", AUTO))
    widenings: list[Any] = []
    value = registry.accept(state, "12345678901234567", AUTO, [], widenings)
    assert (value.type, value.value) == (T.STRING, "12345678901234567")
    assert [(w.old, w.new) for w in widenings] == [(T.INTEGER, T.STRING)]


def test_automatic_decimal_field_widens_to_string_for_too_many_digits() -> None:
    registry = FieldRegistry()
    state = registry.add(FieldDefinition("balance", T.DECIMAL, "Balance", AUTO))
    value = registry.accept(state, "12345678901234.567", AUTO, [], [])
    assert (value.type, value.value) == (T.STRING, "12345678901234.567")


def test_rule_integer_field_never_stores_a_rounded_number() -> None:
    rule = {"source": "segmentio", "stream": "users", "path": "traits.n", "field": "n", "type": "integer"}
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": [rule]}))
    payload = {"type": "identify", "userId": "u_1", "traits": {"n": "12345678901234567"}}
    mapped = mapper.map_record(record("segmentio", "users", payload))
    value = mapped.values["n"].value
    assert not isinstance(value, int | float | Decimal)  # 12345678901234568 is not what was sent
    assert [p.field for p in mapped.problems] == ["n"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["a", "b"], "a;b"),
        ([1, True, 2.5], "1;true;2.5"),
        ({"city": "Köln", "a": None}, '{"a":null,"city":"Köln"}'),
        (OrderedDict([("z", 1), ("y", [1, 2])]), '{"y":[1,2],"z":1}'),
        ([{"b": 1, "a": 2}, {"c": Decimal("1.50")}], '[{"a":2,"b":1},{"c":"1.50"}]'),
        (["a", {"b": 1}], '["a",{"b":1}]'),
        ({"at": date(2024, 1, 2)}, '{"at":"2024-01-02"}'),
        ([], None),
    ],
)
def test_string_field_holds_lists_and_objects_as_text_never_repr(raw: Any, expected: str | None) -> None:
    assert _convert(T.STRING, raw) == expected


def test_as_text_of_objects_is_json() -> None:
    assert as_text({"b": [1, 2], "a": "x"}) == '{"a":"x","b":[1,2]}'
    assert as_text(("a", "b")) == "a;b"


@pytest.mark.parametrize("ftype", list(FieldType))
def test_a_filter_matching_nothing_is_no_value(ftype: FieldType) -> None:
    assert _convert(ftype, []) is None


def test_rules_store_lists_like_automatic_fields() -> None:
    rules = [
        {"source": "segmentio", "stream": "users", "path": "traits.tags", "field": "tags", "type": "string"},
        {
            "source": "segmentio",
            "stream": "users",
            "path": "traits.address",
            "field": "address",
            "type": "string",
        },
        {
            "source": "segmentio",
            "stream": "users",
            "path": "traits.tags[?@ == 'none']",
            "field": "none",
            "type": "string",
            "transforms": ["trim"],
        },
    ]
    mapper = Mapper(FieldMappingConfig.model_validate({"rules": rules}))
    traits = {"tags": ["a", "b"], "address": {"city": "Köln"}}
    mapped = mapper.map_record(record("segmentio", "users", {"userId": "u_1", "traits": traits}))
    assert mapped.values["tags"].value == "a;b"
    assert mapped.values["address"].value == '{"city":"Köln"}'
    assert mapped.values["none"].value is None
    assert not mapped.problems


def test_datetime_field_takes_dates_as_midnight_utc() -> None:
    assert _convert(T.DATETIME, date(1990, 1, 2)) == datetime(1990, 1, 2, tzinfo=UTC)
    assert _convert(T.DATETIME, "1990-01-02") == datetime(1990, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("never", [0, "0"])
def test_an_epoch_zero_in_a_datetime_field_is_no_value_and_widens_nothing(never: Any) -> None:
    registry = FieldRegistry()
    origin = Origin("auto", "segmentio", "users", "traits.trial_ends_at")
    state = registry.add(FieldDefinition("trial_ends_at", T.DATETIME, "Trial ends at", origin))
    widenings: list[Any] = []
    assert registry.accept(state, never, origin, [], widenings).value is None
    assert widenings == [] and state.type is T.DATETIME
    later = registry.accept(state, 1_700_000_001, origin, [], widenings)
    assert later.value == datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC)


def test_date_field_widens_to_datetime_not_string() -> None:
    registry = FieldRegistry()
    origin = Origin("auto", "segmentio", "users", "traits.birthday")
    state = registry.add(FieldDefinition("birthday", T.DATE, "Birthday", origin))
    widenings: list[Any] = []
    value = registry.accept(state, "1990-01-02T00:00:00Z", origin, [], widenings)
    assert (value.type, value.value) == (T.DATETIME, datetime(1990, 1, 2, tzinfo=UTC))
    assert [(w.old, w.new) for w in widenings] == [(T.DATE, T.DATETIME)]
    later = registry.accept(state, "1990-01-03", origin, [], widenings)
    assert (later.type, later.value) == (T.DATETIME, datetime(1990, 1, 3, tzinfo=UTC))
