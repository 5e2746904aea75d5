"""HubSpot: contacts (and companies, deals) pulled by search on their last-modified time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import httpx

from connectors.base import Source, Stream
from connectors.config import HubSpotConfig
from connectors.http import Retrier
from connectors.hubspot.client import HubSpotApi, PropertyDefinition
from connectors.hubspot.limits import portal_buckets
from connectors.hubspot.streams import SEARCH_RESULT_CAP, HubSpotStream
from connectors.records import Record

__all__ = ["DEFINITIONS_MAX_AGE", "SEARCH_RESULT_CAP", "HubSpotSource", "HubSpotStream", "PropertyDefinition"]

# How long `read_contacts(ids, now=)` trusts the property definitions it read: the server's Source
# lives for days, and properties are created meanwhile (crmhub's own push creates some).
DEFINITIONS_MAX_AGE = timedelta(minutes=10)


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
        # HubSpot limits the portal, not a client: the server's webhook reads, each sync run and the
        # push build Sources of their own, and all of them draw from one pair of buckets.
        buckets = portal_buckets(
            access_token,
            config.base_url,
            requests_per_second=config.requests_per_second,
            search_requests_per_second=config.search_requests_per_second,
            clock=clock,
            sleep=retrier.sleep,
        )
        self.api = HubSpotApi(
            access_token, config.base_url, http, retrier, overall=buckets.overall, search=buckets.search
        )
        self._definitions: dict[str, list[PropertyDefinition]] = {}
        self._definitions_since: datetime | None = None
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

    def read_contacts(self, ids: Sequence[str], *, now: datetime | None = None) -> list[Record]:
        """Contacts by HubSpot id, as the contacts stream would pull them (for webhooks naming only ids).

        With `now` (a Source that outlives a run), definitions DEFINITIONS_MAX_AGE old are read again.
        """
        if now is not None:
            self._expire_definitions(now)
        return HubSpotStream(
            self.api, "contacts", properties=self.property_definitions, selected=self._selected
        ).read(ids)

    def property_definitions(self, object_type: str) -> list[PropertyDefinition]:
        """The declared properties of an object type, read once per Source (per run) or per max age."""
        # One lookup in one dict: `_expire_definitions` may swap the dict on another thread.
        definitions = self._definitions
        found = definitions.get(object_type)
        if found is None:
            found = definitions[object_type] = self.api.properties(object_type)
        return found

    def read_definitions(self, object_type: str) -> list[PropertyDefinition] | None:
        """The definitions already read for `object_type`, or None: never a request."""
        return self._definitions.get(object_type)

    def _expire_definitions(self, now: datetime) -> None:
        since = self._definitions_since
        # A clock set back also expires them: one read too many beats definitions kept for good.
        if since is None or not since <= now < since + DEFINITIONS_MAX_AGE:
            self._definitions = {}
            self._definitions_since = now
