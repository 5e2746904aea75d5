"""Turning rule literals into store values; shared by the SQL compiler and the Python evaluator."""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from field_mapping.types import Column

__all__ = ["anniversary_days", "coerce", "parse_duration", "parse_time"]

_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# 100 years. `now` minus a longer one can leave the dates a datetime holds: "999999w" is 19,000
# years, and scoring's decay goes back eleven half-lives (1,100 years here, still in range).
_MAX_DURATION_DAYS = 36_500


def parse_duration(text: str) -> timedelta:
    """`"30d"` -> 30 days; units s, m, h, d, w; at most 100 years; raises ValueError naming the form."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f'expected a duration such as "30d", "6h", "15m" or "2w", found "{text}"')
    duration = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if duration > timedelta(days=_MAX_DURATION_DAYS):
        raise ValueError(
            f'expected a duration of at most {_MAX_DURATION_DAYS}d (100 years), found "{text}"; '
            'leave the window out to mean "ever" (a half_life out: no decay)'
        )
    return duration


def parse_time(value: Any) -> datetime | None:
    """A date, date-time or ISO string as an aware UTC datetime (dates at midnight); None if not a time."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    if isinstance(value, str):
        try:
            return parse_time(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def coerce(column: Column, value: Any) -> Any:
    """The rule literal as the type stored in `column`; None when it cannot be one (it matches nothing)."""
    if column is Column.TEXT:
        return _text(value)
    if column is Column.NUM:
        return _number(value)
    if column is Column.BOOL:
        return _bool(value)
    return parse_time(value)


def anniversary_days(now: datetime, within_days: int | None) -> list[int]:
    """Month*100+day of today and the next `within_days` days (UTC), for birthday-style rules."""
    today = now.astimezone(UTC).date()
    days = [today + timedelta(days=k) for k in range((within_days or 0) + 1)]
    codes = {d.month * 100 + d.day for d in days}
    # A 29 February birthday is kept on the 28th in a common year, or it would never come round.
    if any(d.month == 2 and d.day == 28 and not calendar.isleap(d.year) for d in days):
        codes.add(229)
    return sorted(codes)
