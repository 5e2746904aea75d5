"""Value transforms a mapping rule applies, in order, before the value is typed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from field_mapping.normalize import dialable, normalize_phone

__all__ = [
    "TRANSFORM_NAMES",
    "InvalidValue",
    "Transform",
    "TransformError",
    "build_transforms",
    "cents_to_amount",
    "lower",
    "trim",
    "unix_to_datetime",
    "value_map",
]

Transform = Callable[[Any], Any]

TRANSFORM_NAMES = ("trim", "lower", "cents_to_amount", "unix_to_datetime", "e164")

_CENT = Decimal("0.01")


class TransformError(ValueError):
    """A value a transform or a type cannot take; the mapper keeps it as a string with a warning."""


class InvalidValue(TransformError):
    """A value of the right kind that fails validation (an e-mail, a phone): kept as `kept`, flagged."""

    def __init__(self, message: str, kept: str) -> None:
        super().__init__(message)
        self.kept = kept


def trim(value: Any) -> Any:
    """Strip surrounding whitespace from a string."""
    return _string(value, "trim").strip()


def lower(value: Any) -> Any:
    """Lowercase a string."""
    return _string(value, "lower").lower()


def cents_to_amount(value: Any) -> Decimal:
    """An amount in the smallest currency unit (Stripe's cents) as a Decimal with two places.

    It divides by 100 whatever the currency: map zero-decimal currencies (JPY, KRW, ...) without it.
    """
    if isinstance(value, bool):
        raise _not_cents(value)
    try:
        cents = Decimal(value) if isinstance(value, int | str | Decimal) else Decimal(repr(float(value)))
    except (InvalidOperation, TypeError, ValueError):
        raise _not_cents(value) from None
    # 19.99 is already an amount, or a mistake: dividing it again would silently give 0.20.
    if not cents.is_finite() or cents != cents.to_integral_value():
        raise _not_cents(value)
    try:
        return (cents / 100).quantize(_CENT)
    except InvalidOperation:  # more digits than the decimal context holds (10**30 cents)
        raise _not_cents(value) from None


def _not_cents(value: Any) -> TransformError:
    return TransformError(f"cents_to_amount: expected an integer amount in cents, found {value!r}")


def unix_to_datetime(value: Any) -> datetime:
    """Seconds since the epoch (int, float or digits) as an aware UTC datetime."""
    if isinstance(value, bool):
        raise TransformError(f"unix_to_datetime: expected seconds since 1970, found {value!r}")
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise TransformError(f"unix_to_datetime: expected seconds since 1970, found {value!r}") from None


def e164(region: str) -> Transform:
    """A transform giving a phone number in E.164; an invalid number is kept and flagged."""

    def to_e164(value: Any) -> str:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise TransformError(f"e164: expected a phone number, found {value!r}")
        number, valid = normalize_phone(str(value), region)
        if not valid:
            raise InvalidValue(f"e164: not a valid phone number: {value!r}", number)
        return dialable(number)  # E.164 has no extension; the contact's phone identity keeps it

    return to_e164


def value_map(table: Mapping[str, Any]) -> Transform:
    """A transform replacing values found in `table` (compared as strings); others pass unchanged."""
    lookup = dict(table)

    def mapped(value: Any) -> Any:
        key = value if isinstance(value, str) else _key(value)
        return lookup.get(key, value)

    return mapped


def build_transforms(specs: Sequence[str | Mapping[str, Any]], region: str) -> tuple[Transform, ...]:
    """Callables for a rule's validated transform list (names, or `{"map": {...}}` tables)."""
    built: list[Transform] = []
    for spec in specs:
        if isinstance(spec, str):
            built.append(e164(region) if spec == "e164" else _BY_NAME[spec])
        else:
            built.append(value_map(spec["map"]))
    return tuple(_passing_empty(transform) for transform in built)


def _passing_empty(transform: Transform) -> Transform:
    """`transform`, letting an empty list (a JMESPath filter matching nothing) through as no value."""

    def applied(value: Any) -> Any:
        if isinstance(value, list | tuple) and not value:
            return value
        return transform(value)

    return applied


_BY_NAME: dict[str, Transform] = {
    "trim": trim,
    "lower": lower,
    "cents_to_amount": cents_to_amount,
    "unix_to_datetime": unix_to_datetime,
}


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TransformError(f"{name}: expected a string, found {value!r}")
    return value


def _key(value: Any) -> str:
    # TOML table keys are strings, so `true` and `3` in a payload are looked up as "true" and "3".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
