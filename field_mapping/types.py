"""Field types, the order they widen in, and the one registry of how each type is stored."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "STORAGE",
    "Column",
    "Columns",
    "FieldType",
    "from_columns",
    "to_columns",
    "widen",
]


class FieldType(StrEnum):
    """The type of a custom field; the declaration order is the inference precedence."""

    BOOLEAN = "boolean"
    INTEGER = "integer"
    DECIMAL = "decimal"
    DATETIME = "datetime"
    DATE = "date"
    EMAIL = "email"
    PHONE = "phone"
    ENUM = "enum"
    STRING = "string"


class Column(StrEnum):
    """The typed value column of the store that holds a field's values."""

    TEXT = "value_text"
    NUM = "value_num"
    TIME = "value_time"
    BOOL = "value_bool"


STORAGE: dict[FieldType, Column] = {
    FieldType.BOOLEAN: Column.BOOL,
    FieldType.INTEGER: Column.NUM,
    FieldType.DECIMAL: Column.NUM,
    FieldType.DATETIME: Column.TIME,
    # A date is stored as midnight UTC so date and datetime rules share one indexed column.
    FieldType.DATE: Column.TIME,
    FieldType.EMAIL: Column.TEXT,
    FieldType.PHONE: Column.TEXT,
    FieldType.ENUM: Column.TEXT,
    FieldType.STRING: Column.TEXT,
}

# Types a value can widen into besides `string`, which every type widens into. Each pair shares a
# column (a date is midnight UTC in the time column), so widening moves no stored value.
_WIDER: dict[FieldType, FieldType] = {
    FieldType.INTEGER: FieldType.DECIMAL,
    FieldType.DATE: FieldType.DATETIME,
}


class Columns(NamedTuple):
    """One field value as the store's four value columns; exactly one is set (none for null)."""

    value_text: str | None = None
    value_num: int | float | Decimal | None = None
    value_time: datetime | None = None
    value_bool: bool | None = None


_EMPTY = Columns()


def widen(current: FieldType, seen: FieldType) -> FieldType:
    """The narrowest type holding both; never narrows `current` (integer -> decimal, date -> datetime)."""
    if current is seen:
        return current
    if _WIDER.get(current) is seen:
        return seen
    if _WIDER.get(seen) is current:
        return current
    return FieldType.STRING


def to_columns(ftype: FieldType, value: Any) -> Columns:
    """A typed value (as the mapper produces it for `ftype`) as the store's column tuple."""
    if value is None:
        return _EMPTY
    column = STORAGE[ftype]
    if column is Column.TEXT:
        return Columns(value_text=value)
    if column is Column.NUM:
        return Columns(value_num=value)
    if column is Column.BOOL:
        return Columns(value_bool=value)
    if ftype is FieldType.DATE:
        return Columns(value_time=datetime.combine(value, time(), tzinfo=UTC))
    return Columns(value_time=value)


def from_columns(ftype: FieldType, columns: Columns) -> Any:
    """The typed value back from the store's columns; None when the value is null."""
    column = STORAGE[ftype]
    if column is Column.TEXT:
        return columns.value_text
    if column is Column.BOOL:
        return columns.value_bool
    if column is Column.NUM:
        return _number(ftype, columns.value_num)
    stamp = columns.value_time
    if stamp is None:
        return None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC).date() if ftype is FieldType.DATE else stamp.astimezone(UTC)


def _number(ftype: FieldType, raw: int | float | Decimal | None) -> int | Decimal | None:
    # Databases may hand back a float or a Decimal for either kind; restore the field's own kind.
    if raw is None:
        return None
    if ftype is FieldType.INTEGER:
        return int(raw)
    return raw if isinstance(raw, Decimal) else Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
