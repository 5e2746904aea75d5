"""Client-side throttling: a token bucket with an injected clock and sleep."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows `rate` requests per second, evenly spaced; `acquire` waits until the next one may go.

    The bucket holds at most `burst` tokens (default 1) and starts full. A bucket of `burst`
    tokens admits up to `burst + rate` requests in some second (the full bucket, then the refill),
    so with the default 1 the first request goes at once, the next ones `1/rate` apart, and no
    second (a window `[t, t+1)`) sees more than `rate` of them for a whole-number rate (a fractional
    one, `ceil(rate)`, `rate` on average): a provider counting per second never sees too many. The
    steady rate is `rate` all the same: N requests take `(N-1)/rate` seconds.

    The clock is monotonic seconds. Thread-safe: streams pulled side by side share their source's
    bucket, and a waiter holds it while it sleeps, so the others queue behind it instead of all
    taking the same token.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1 (one request)")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds slept."""
        with self._lock:
            return self._take()

    def _take(self) -> float:
        self._refill()
        waited = 0.0
        if self._tokens < 1.0:
            waited = (1.0 - self._tokens) / self.rate
            self._sleep(waited)
            self._refill()
            # A fake or coarse clock may not have moved by the full wait; the sleep paid for the token.
            self._tokens = max(self._tokens, 1.0)
        self._tokens -= 1.0
        return waited
