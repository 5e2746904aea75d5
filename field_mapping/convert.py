"""Turning a raw payload value into the Python value of a field type, or saying it does not fit."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from field_mapping.normalize import dialable, normalize_email, normalize_phone
from field_mapping.transforms import InvalidValue, TransformError
from field_mapping.types import FieldType

__all__ = [
    "CONVERTERS",
    "EPOCH_RANGE",
    "MAX_EXACT_INT",
    "Converter",
    "as_text",
    "epoch_to_datetime",
    "exact_decimal",
    "exact_int",
    "exact_int_text",
    "parse_datetime",
]

Converter = Callable[[Any, str], Any]

INT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)")
DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATETIME_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")

# Seconds from 2000-01-01 to 2100-01-01: an integer outside this is not taken for a time.
EPOCH_RANGE = (946_684_800, 4_102_444_800)
_MS = 1000

# The number column is a double: integers beyond 2**53 and decimals of more than 15 significant
# digits would read back rounded, so they are not numbers here (they infer, and widen, to string).
MAX_EXACT_INT = 2**53
_MAX_INT_DIGITS = len(str(MAX_EXACT_INT))
_MAX_DIGITS = 15
# Smaller decimals are below a double's normal range (about 1e-308).
_MAX_ADJUSTED = 300
_SCALARS = (str, int, float, bool, Decimal, date)


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


def exact_int(value: int) -> bool:
    """True when a double holds the integer `value` exactly (|value| <= 2**53)."""
    return -MAX_EXACT_INT <= value <= MAX_EXACT_INT


def exact_int_text(text: str) -> int | None:
    """The integer an INT_TEXT string spells when a double holds it exactly, else None."""
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return None  # too long to fit, and int() of thousands of digits raises
    number = int(text)
    return number if exact_int(number) else None


def exact_decimal(value: Decimal) -> bool:
    """True when a double reads back as `value`: an integer within 2**53, or 15 significant digits."""
    if not value.is_finite():
        return False
    if value.is_zero():
        return True
    adjusted = value.adjusted()
    if adjusted >= _MAX_INT_DIGITS or adjusted < -_MAX_ADJUSTED:
        return False  # beyond 2**53 (so an integer), or too small for a double
    if value == value.to_integral_value():
        return exact_int(int(value))
    digits = value.as_tuple().digits
    return len(digits) <= _MAX_DIGITS or len("".join(map(str, digits)).rstrip("0")) <= _MAX_DIGITS


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
    """Any value as the text a string field keeps: scalars, `a;b` lists of scalars, JSON objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        # Like automatic fields (HubSpot's multi-value convention); anything deeper is JSON.
        if all(isinstance(item, _SCALARS) for item in value):
            return ";".join(as_text(item) for item in value)
        return _json(value)
    if isinstance(value, Mapping):
        return _json(value)
    return str(value)


def _json(value: Any) -> str:
    # Sorted keys: the same object gives the same text, so a re-sync changes nothing.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    return as_text(value)


def _empty(value: Any) -> bool:
    """True for an empty list: a rule's JMESPath filter that matched nothing, so no value."""
    return isinstance(value, list | tuple) and not value


def _boolean(value: Any, region: str) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    if _empty(value):
        return None
    raise _mismatch(value, FieldType.BOOLEAN)


def _integer(value: Any, region: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        if exact_int(value):
            return value
    elif isinstance(value, str):
        number = exact_int_text(value) if INT_TEXT.fullmatch(value) else None
        if number is not None:
            return number
    elif isinstance(value, float | Decimal):
        # The magnitude first: int() of a Decimal like 1E+999999 would take long.
        if math.isfinite(value) and abs(float(value)) <= MAX_EXACT_INT and value == int(value):
            return int(value)
    elif _empty(value):
        return None
    raise _mismatch(value, FieldType.INTEGER)


def _decimal(value: Any, region: str) -> Decimal | None:
    number: Decimal
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int) and not isinstance(value, bool):
        if exact_int(value):
            return Decimal(value)
        raise _mismatch(value, FieldType.DECIMAL)
    elif isinstance(value, float) and math.isfinite(value):
        # repr gives the shortest text that round-trips: 9.95 stays 9.95, not 9.949999...
        return Decimal(repr(value))
    elif isinstance(value, str) and (DECIMAL_TEXT.fullmatch(value) or INT_TEXT.fullmatch(value)):
        number = Decimal(value)
    elif _empty(value):
        return None
    else:
        raise _mismatch(value, FieldType.DECIMAL)
    if not exact_decimal(number):
        raise _mismatch(value, FieldType.DECIMAL)
    return number


def _datetime(value: Any, region: str) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        # A date in a date-time field (a date field widened) is the start of that day, UTC.
        return datetime.combine(value, datetime.min.time(), tzinfo=UTC)
    stamp: datetime | None = None
    if isinstance(value, str):
        stamp = parse_datetime(value)
        if stamp is None and INT_TEXT.fullmatch(value):
            number = exact_int_text(value)
            if number == 0:
                return None  # as below
            stamp = None if number is None else epoch_to_datetime(number)
        elif stamp is None:
            day = _iso_date(value)
            stamp = None if day is None else datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    elif isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            # Epoch 0 is how many systems write "never" (a trial_ends_at with no trial): no value,
            # rather than a reason to widen a date-time field to text for good.
            return None
        stamp = epoch_to_datetime(value)
    elif _empty(value):
        return None
    if stamp is None:
        raise _mismatch(value, FieldType.DATETIME)
    return stamp


def _date(value: Any, region: str) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    day = _iso_date(value) if isinstance(value, str) else None
    if day is not None:
        return day
    if _empty(value):
        return None
    raise _mismatch(value, FieldType.DATE)


def _iso_date(text: str) -> date | None:
    if DATE_TEXT.fullmatch(text) is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _email(value: Any, region: str) -> str | None:
    if not isinstance(value, str):
        if _empty(value):
            return None
        raise _mismatch(value, FieldType.EMAIL)
    address, valid = normalize_email(value)
    if not valid:
        raise InvalidValue(f"not a valid e-mail address: {value!r}", address)
    return address


def _phone(value: Any, region: str) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        if _empty(value):
            return None
        raise _mismatch(value, FieldType.PHONE)
    number, valid = normalize_phone(str(value), region)
    if not valid:
        raise InvalidValue(f"not a valid phone number: {value!r}", number)
    # The field holds the number to call or text; an extension lives on in the contact's identity.
    return dialable(number)


def _enum(value: Any, region: str) -> str | None:
    if isinstance(value, str):
        return value
    if _empty(value):
        return None
    raise _mismatch(value, FieldType.ENUM)


def _string(value: Any, region: str) -> str | None:
    if _empty(value):
        return None
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
