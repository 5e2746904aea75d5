"""A token bucket per endpoint, with time as a parameter."""

from __future__ import annotations

from datetime import datetime

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows `rate` sends per second on average, in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(burst if burst is not None else rate, 1.0)
        self._tokens = self.burst
        self._at: datetime | None = None

    def available(self, now: datetime) -> int:
        """Whole sends allowed at `now`."""
        self._refill(now)
        return int(self._tokens)

    def take(self, n: int, now: datetime) -> None:
        """Spend `n` sends at `now`."""
        self._refill(now)
        self._tokens -= n

    def _refill(self, now: datetime) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at).total_seconds() * self.rate)
        if self._at is None or now > self._at:
            self._at = now
