"""Typeform: responses of the configured forms, and their form definitions for field mapping."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import httpx

from connectors.base import Source, Stream
from connectors.config import TypeformConfig
from connectors.http import Retrier
from connectors.ratelimit import TokenBucket
from connectors.typeform.client import TypeformApi
from connectors.typeform.mapping import FormDefinition, FormField, form_definition
from connectors.typeform.streams import TypeformResponses

__all__ = ["FormDefinition", "FormField", "TypeformResponses", "TypeformSource"]


class TypeformSource(Source):
    """The Typeform source: one `responses` stream over the configured forms."""

    name = "typeform"

    def __init__(
        self,
        config: TypeformConfig,
        token: str,
        http: httpx.Client,
        retrier: Retrier,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        bucket = TokenBucket(config.requests_per_second, clock=clock, sleep=retrier.sleep)
        self.api = TypeformApi(token, config.base_url, http, retrier, bucket)
        self.forms = list(config.forms)
        self._definitions: dict[str, FormDefinition] = {}
        self._streams = [TypeformResponses(self.api, self.forms, page_size=config.page_size)]

    @property
    def streams(self) -> Sequence[Stream]:
        return self._streams

    def form_definition(self, form_id: str) -> FormDefinition:
        """A form's fields (ref, title, type) and hidden fields, read once per Source (per run)."""
        if form_id not in self._definitions:
            self._definitions[form_id] = form_definition(self.api.form(form_id))
        return self._definitions[form_id]

    def form_definitions(self) -> list[FormDefinition]:
        """The definitions of every configured form."""
        return [self.form_definition(form_id) for form_id in self.forms]
