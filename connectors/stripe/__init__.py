"""Stripe: customers, subscriptions, invoices and charges, backfilled by lists and updated by events."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from connectors.base import Source, Stream
from connectors.config import StripeConfig
from connectors.http import Retrier
from connectors.ratelimit import TokenBucket
from connectors.stripe.client import StripeApi
from connectors.stripe.streams import EVENTS_RETENTION, KINDS, StripeStream

__all__ = ["EVENTS_RETENTION", "StripeSource", "StripeStream"]


class StripeSource(Source):
    """The Stripe source: one stream per object type in KINDS, pulled side by side under one limit."""

    name = "stripe"
    # Its streams share nothing but the client and the bucket, and Stripe allows 25 requests a
    # second in test mode, 100 live: four streams at a time fit under `requests_per_second`.
    streams_side_by_side = True

    def __init__(
        self,
        config: StripeConfig,
        api_key: str,
        http: httpx.Client,
        retrier: Retrier,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        bucket = TokenBucket(config.requests_per_second, clock=clock, sleep=retrier.sleep)
        self.api = StripeApi(api_key, config.base_url, http, retrier, bucket)
        self._streams = [StripeStream(self.api, kind, page_size=config.page_size) for kind in KINDS.values()]

    @property
    def streams(self) -> Sequence[Stream]:
        return self._streams
