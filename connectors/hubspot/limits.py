"""HubSpot's rate limits are per account: one pair of token buckets per portal, for the process."""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from connectors.ratelimit import TokenBucket

__all__ = ["PortalBuckets", "portal_buckets"]


@dataclass(frozen=True, slots=True)
class PortalBuckets:
    """The two limits HubSpot counts per portal: every request, and searches on top of that."""

    overall: TokenBucket
    search: TokenBucket


# Weak values: a bucket lives while some Source holds it, so the registry never outgrows the
# Sources alive, and a token string is never kept in it (only its digest).
_buckets: weakref.WeakValueDictionary[Hashable, TokenBucket] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def portal_buckets(
    access_token: str,
    base_url: str,
    *,
    requests_per_second: float,
    search_requests_per_second: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> PortalBuckets:
    """The buckets every Source of this token and base URL shares in this process (thread-safe).

    Buckets are shared only between Sources with the same rate, clock and sleep: a bucket counts
    time on one clock (production Sources all use `time.monotonic`, a test its own fake).
    """
    portal = hashlib.sha256(f"{base_url.rstrip('/')}\n{access_token}".encode()).hexdigest()
    return PortalBuckets(
        overall=_bucket((portal, "overall", requests_per_second, clock, sleep)),
        search=_bucket((portal, "search", search_requests_per_second, clock, sleep)),
    )


def _bucket(key: tuple[str, str, float, Callable[[], float], Callable[[float], None]]) -> TokenBucket:
    """The bucket registered under `key`, made on first use."""
    _, _, rate, clock, sleep = key
    with _lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = TokenBucket(rate, clock=clock, sleep=sleep)
        return bucket
