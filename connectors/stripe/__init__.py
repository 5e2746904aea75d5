"""Stripe: customers, subscriptions, invoices and charges, backfilled by lists and updated by events."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from connectors.base import Source, Stream
from connectors.config import StripeConfig
from connectors.http import Retrier
from connectors.stripe.client import StripeApi
from connectors.stripe.streams import EVENTS_RETENTION, KINDS, StripeStream

__all__ = ["EVENTS_RETENTION", "StripeSource", "StripeStream"]


class StripeSource(Source):
    """The Stripe source: one stream per object type in KINDS."""

    name = "stripe"

    def __init__(self, config: StripeConfig, api_key: str, http: httpx.Client, retrier: Retrier) -> None:
        self.api = StripeApi(api_key, config.base_url, http, retrier)
        self._streams = [StripeStream(self.api, kind, page_size=config.page_size) for kind in KINDS.values()]

    @property
    def streams(self) -> Sequence[Stream]:
        return self._streams
