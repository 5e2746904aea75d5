"""HTTP failure handling shared by every source: classify, describe, retry with backoff."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from connectors.exceptions import ConnectorError, PermanentError, RetryableError

__all__ = [
    "MAX_RETRY_AFTER_SECONDS",
    "Retrier",
    "error_for_status",
    "error_for_transport",
    "is_retryable_status",
    "parse_retry_after",
]

T = TypeVar("T")

# A provider asking for a longer pause than this is better served by the next scheduled run.
MAX_RETRY_AFTER_SECONDS = 120.0

_RETRYABLE = frozenset({408, 409, 425, 429})

# (cause, fix) per status; the fix names the config key a person can change.
_CAUSES: dict[int, tuple[str, str]] = {
    400: ("bad request", "check connectors.{source} settings (objects, properties, forms)"),
    401: ("authentication failed", "check connectors.{source}.{key_env}"),
    403: ("permission denied", "give the key in connectors.{source}.{key_env} read access to this object"),
    404: ("not found", "check connectors.{source}.base_url and the configured ids"),
    408: ("request timed out", "retry later"),
    409: ("conflict", "retry later"),
    429: ("rate limited", "retry later or lower connectors.{source}.requests_per_second"),
}


def is_retryable_status(status: int) -> bool:
    """True for statuses that may pass by retrying (429, 408, 409, 425, 5xx); False for the rest."""
    return status in _RETRYABLE or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for_status(
    source: str,
    status: int,
    *,
    what: str = "",
    retry_after: float | None = None,
    detail: str = "",
    key_env: str = "api_key_env",
    rate_limited: bool = False,
) -> ConnectorError:
    """The error for an HTTP status, with a message naming the thing, the cause and the fix.

    `rate_limited` marks a rate limit the provider answers with another status (Stripe's older
    `400` with `error.code = "rate_limit"`): it is retried like a 429.
    """
    if rate_limited:
        cause, fix = _CAUSES[429]
    elif 500 <= status <= 599:
        cause, fix = "provider error", "retry later; the provider is failing"
    else:
        cause, fix = _CAUSES.get(status, ("unexpected answer", "check connectors.{source}"))
    thing = f"{source}: {what}: " if what else f"{source}: "
    extra = f" ({detail})" if detail else ""
    message = f"{thing}{cause} ({status}){extra}: {fix.format(source=source, key_env=key_env)}"
    if rate_limited or is_retryable_status(status):
        return RetryableError(message, retry_after=retry_after)
    return PermanentError(message)


def error_for_transport(source: str, exc: BaseException, *, what: str = "") -> ConnectorError:
    """The error for a failure below HTTP: timeouts and dropped connections are retryable."""
    thing = f"{source}: {what}: " if what else f"{source}: "
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(
            f"{thing}timed out ({type(exc).__name__}): retry or raise connectors.timeout_seconds"
        )
    if isinstance(exc, httpx.TransportError):
        return RetryableError(
            f"{thing}connection to {_origin(exc)} failed ({type(exc).__name__}): "
            f"check connectors.{source}.base_url"
        )
    return PermanentError(f"{thing}unexpected failure ({type(exc).__name__}: {exc})")


def _origin(exc: httpx.TransportError) -> str:
    """Where the failed request went (scheme, host, port: no path or query, which may hold ids)."""
    try:
        url = exc.request.url
    except RuntimeError:  # raised by httpx when the error was made without a request
        return "the provider"
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"


@dataclass
class Retrier:
    """Calls a function, retrying RetryableError with exponential jitter or the server's Retry-After.

    `sleep` is injected so tests never wait. Every call is counted on the calling thread, for
    Batch.requests: streams of one source pulled side by side each count their own requests.
    """

    max_attempts: int = 5
    sleep: Callable[[float], None] = time.sleep
    initial: float = 0.5
    maximum: float = 30.0

    def __post_init__(self) -> None:
        self._backoff = wait_exponential_jitter(multiplier=self.initial, max=self.maximum)
        self._counts = threading.local()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_SECONDS)
        return float(self._backoff(state))

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying while it raises RetryableError and attempts remain; re-raise the last."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableError),
            sleep=self.sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._counts.attempts = getattr(self._counts, "attempts", 0) + 1
                return fn()
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def take_attempts(self) -> int:
        """This thread's attempts since its last call of this method (the requests a page cost)."""
        taken: int = getattr(self._counts, "attempts", 0)
        self._counts.attempts = 0
        return taken
