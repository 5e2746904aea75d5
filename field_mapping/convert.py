"""Turning a raw payload value into the Python value of a field type, or saying it does not fit."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from field_mapping.normalize import normalize_email, normalize_phone
from field_mapping.transforms import InvalidValue, TransformError
from field_mapping.types import FieldType

__all__ = [
    "CONVERTERS",
    "EPOCH_RANGE",
    "Converter",
    "as_text",
    "epoch_to_datetime",
    "parse_datetime",
]

Converter = Callable[[Any, str], Any]

INT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATETIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")

# Seconds from 2000-01-01 to 2100-01-01: an integer outside this is not taken for a time.
EPOCH_RANGE = (946_684_800, 4_102_444_800)
_MS = 1000


class _Mismatch(TransformError):
    """The value is of another kind than the field's type."""


def _mismatch(value: Any, ftype: FieldType) -> _Mismatch:
    return _Mismatch(f"expected a {ftype.value} value, found {value!r}")


def epoch_to_datetime(value: int) -> datetime | None:
    """An epoch in seconds or milliseconds within 2000-2100 as aware UTC; None when out of range."""
    low, high = EPOCH_RANGE
    if low <= value < high:
        return datetime.fromtimestamp(value, tz=UTC)
    if low * _MS <= value < high * _MS:
        return datetime.fromtimestamp(value / _MS, tz=UTC)
    return None


def parse_datetime(text: str) -> datetime | None:
    """An ISO-8601 date-time (`Z`, offset or naive-as-UTC) as aware UTC; None when it is not one."""
    if DATETIME_TEXT.match(text) is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_text(value: Any) -> str:
    """Any scalar as the text a string field keeps (booleans as `true`/`false`, times in ISO-8601)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _boolean(value: Any, region: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    raise _mismatch(value, FieldType.BOOLEAN)


def _integer(value: Any, region: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and INT_TEXT.fullmatch(value):
        return int(value)
    if isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value):
        return int(value)
    raise _mismatch(value, FieldType.INTEGER)


def _decimal(value: Any, region: str) -> Decimal:
    if isinstance(value, Decimal) and value.is_finite():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float) and math.isfinite(value):
        # repr gives the shortest text that round-trips: 9.95 stays 9.95, not 9.949999...
        return Decimal(repr(value))
    if isinstance(value, str) and (DECIMAL_TEXT.fullmatch(value) or INT_TEXT.fullmatch(value)):
        return Decimal(value)
    raise _mismatch(value, FieldType.DECIMAL)


def _datetime(value: Any, region: str) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is not None:
            return parsed
        if INT_TEXT.fullmatch(value):
            value = int(value)
        elif DATE_TEXT.fullmatch(value):
            # A date in a date-time field is the start of that day, UTC.
            return datetime.combine(_date(value, region), datetime.min.time(), tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        stamp = epoch_to_datetime(value)
        if stamp is not None:
            return stamp
    raise _mismatch(value, FieldType.DATETIME)


def _date(value: Any, region: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and DATE_TEXT.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _mismatch(value, FieldType.DATE)


def _email(value: Any, region: str) -> str:
    if not isinstance(value, str):
        raise _mismatch(value, FieldType.EMAIL)
    address, valid = normalize_email(value)
    if not valid:
        raise InvalidValue(f"not a valid e-mail address: {value!r}", address)
    return address


def _phone(value: Any, region: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise _mismatch(value, FieldType.PHONE)
    number, valid = normalize_phone(str(value), region)
    if not valid:
        raise InvalidValue(f"not a valid phone number: {value!r}", number)
    return number


def _enum(value: Any, region: str) -> str:
    if isinstance(value, str):
        return value
    raise _mismatch(value, FieldType.ENUM)


def _string(value: Any, region: str) -> str:
    return as_text(value)


CONVERTERS: dict[FieldType, Converter] = {
    FieldType.BOOLEAN: _boolean,
    FieldType.INTEGER: _integer,
    FieldType.DECIMAL: _decimal,
    FieldType.DATETIME: _datetime,
    FieldType.DATE: _date,
    FieldType.EMAIL: _email,
    FieldType.PHONE: _phone,
    FieldType.ENUM: _enum,
    FieldType.STRING: _string,
}
