"""HubSpot: contacts (and companies, deals) pulled by search on their last-modified time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from connectors.base import Source, Stream
from connectors.config import HubSpotConfig
from connectors.http import Retrier
from connectors.hubspot.client import HubSpotApi, PropertyDefinition
from connectors.hubspot.streams import SEARCH_RESULT_CAP, HubSpotStream
from connectors.ratelimit import TokenBucket
from connectors.records import Record

__all__ = ["SEARCH_RESULT_CAP", "HubSpotSource", "HubSpotStream", "PropertyDefinition"]


class HubSpotSource(Source):
    """The HubSpot source: one stream per configured object type, properties read once per run."""

    name = "hubspot"

    def __init__(
        self,
        config: HubSpotConfig,
        access_token: str,
        http: httpx.Client,
        retrier: Retrier,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = HubSpotApi(
            access_token,
            config.base_url,
            http,
            retrier,
            overall=TokenBucket(config.requests_per_second, clock=clock, sleep=retrier.sleep),
            search=TokenBucket(config.search_requests_per_second, clock=clock, sleep=retrier.sleep),
        )
        self._definitions: dict[str, list[PropertyDefinition]] = {}
        self._selected = list(config.properties)
        self._streams = [
            HubSpotStream(
                self.api,
                object_type,
                properties=self.property_definitions,
                selected=config.properties,
                page_size=config.page_size,
            )
            for object_type in config.objects
        ]

    @property
    def streams(self) -> Sequence[Stream]:
        return self._streams

    def read_contacts(self, ids: Sequence[str]) -> list[Record]:
        """Contacts by HubSpot id, as the contacts stream would pull them (for webhooks naming only ids)."""
        return HubSpotStream(
            self.api, "contacts", properties=self.property_definitions, selected=self._selected
        ).read(ids)

    def property_definitions(self, object_type: str) -> list[PropertyDefinition]:
        """The declared properties of an object type, read from HubSpot once per Source (per run)."""
        if object_type not in self._definitions:
            self._definitions[object_type] = self.api.properties(object_type)
        return self._definitions[object_type]
