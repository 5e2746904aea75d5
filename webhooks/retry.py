"""The redelivery schedule as values: what an attempt's outcome means and when to try again."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

__all__ = [
    "MAX_ATTEMPTS",
    "SCHEDULE",
    "Dead",
    "Disable",
    "Kind",
    "RetryDecision",
    "Succeeded",
    "classify",
    "decide",
    "parse_retry_after",
]

# Delay before attempt n+1 after attempt n failed: immediately, then 5 s ... 24 h (75 h 35 min in all).
SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(SCHEDULE) + 1
JITTER = 0.1
# A consumer may ask for a later retry, but not for one later than this past the schedule.
RETRY_AFTER_CAP = timedelta(hours=1)
# Longer than any Retry-After `decide` can honour (the last delay plus the cap): a longer one means the same.
LONGEST_RETRY_AFTER = SCHEDULE[-1] + RETRY_AFTER_CAP
# HTTP delay-seconds is ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
_SECONDS = re.compile(r"[0-9]+")
# An HTTP date is 29 characters; a longer value is not one, and is not worth parsing.
_MAX_DATE_CHARS = 64


class Kind(StrEnum):
    """What an attempt's result means for the delivery."""

    SUCCESS = "success"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    GONE = "gone"


def classify(status_code: int | None) -> Kind:
    """2xx succeeds; 410 disables; timeouts (None), 408, 425, 429 and 5xx retry; other codes are permanent."""
    if status_code is None:
        return Kind.RETRYABLE
    if 200 <= status_code < 300:
        return Kind.SUCCESS
    if status_code == 410:
        return Kind.GONE
    if status_code in (408, 425, 429) or status_code >= 500:
        return Kind.RETRYABLE
    # 3xx (redirects are not followed) and other 4xx: the request itself is refused; retrying repeats it.
    return Kind.PERMANENT


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The consumer took it."""


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Try again at `retry_at`."""

    retry_at: datetime


@dataclass(frozen=True, slots=True)
class Dead:
    """Give up; keep the delivery as dead with `reason` (never dropped)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Disable:
    """The consumer said 410 Gone: disable the endpoint; the delivery waits for it to be re-enabled."""

    reason: str


Decision = Succeeded | RetryDecision | Dead | Disable


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """`Retry-After` (seconds or an HTTP date) from `now`, at most LONGEST_RETRY_AFTER; None if unreadable."""
    # The value comes from the consumer: whatever it holds, this returns rather than raises.
    if not value:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        # Compared as text first: int() refuses over 4,300 digits and timedelta overflows far sooner.
        longest = int(LONGEST_RETRY_AFTER.total_seconds())
        seconds = longest if len(text) > len(str(longest)) else min(int(text), longest)
        return timedelta(seconds=seconds)
    if len(text) > _MAX_DATE_CHARS:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when - now, timedelta(0)), LONGEST_RETRY_AFTER)


def decide(
    status_code: int | None,
    attempts: int,
    now: datetime,
    *,
    retry_after: timedelta | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """The decision after the `attempts`-th attempt (1-based) ended with `status_code` (None: no answer)."""
    kind = classify(status_code)
    if kind is Kind.SUCCESS:
        return Succeeded()
    if kind is Kind.GONE:
        return Disable("consumer answered 410 Gone")
    if kind is Kind.PERMANENT:
        return Dead(f"permanent failure: HTTP {status_code}")
    if attempts >= MAX_ATTEMPTS:
        return Dead(f"gave up after {attempts} attempts; last: {_describe(status_code)}")
    base = SCHEDULE[attempts - 1]
    factor = 1 + (rng or random).uniform(-JITTER, JITTER)
    delay = base * factor
    if retry_after is not None:
        # Honour a later Retry-After, clamped so a consumer cannot park a delivery for days.
        delay = max(delay, min(retry_after, base + RETRY_AFTER_CAP))
    return RetryDecision(retry_at=now + delay)


def _describe(status_code: int | None) -> str:
    return "no response" if status_code is None else f"HTTP {status_code}"
