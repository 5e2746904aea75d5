"""Typeform responses of the configured forms: `since` (inclusive) plus `before` token paging.

Typeform lists responses newest first, so each form is read in *sweeps* from now back to the
form's `since`. Cursor (JSON): ``{"forms": {FORM_ID: STATE}}`` where STATE is

* ``{"since": T, "tokens": [...]}`` between sweeps: responses submitted at or after T
  (inclusive), minus the tokens listed (those submitted exactly at T and already stored);
* plus ``"before": TOKEN, "top": T2, "top_tokens": [...]`` during a sweep: the next page is the
  one older than TOKEN (exclusive); T2 is the newest submission time seen in this sweep.

After each page the cursor is saved with ``before`` set to the page's last token; when a sweep
ends, ``since`` becomes T2 and ``tokens`` the tokens submitted at T2. Responses submitted while a
sweep runs are newer than its first page and are read by the next sweep. Only completed
(submitted) responses are pulled (`completed=true`): should a partial one come all the same (a
token and `landed_at`, no `submitted_at`), it is left out, as it has no submission time to order by.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.base import Stream, decode_cursor, encode_cursor, parse_time, unreadable_cursor
from connectors.exceptions import MalformedPageError
from connectors.paginators import TypeformPaginator, require_list
from connectors.records import Batch, ContactEvent, Record
from connectors.typeform.client import TypeformApi
from connectors.typeform.mapping import response_event, response_record

__all__ = ["TypeformResponses"]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class TypeformResponses(Stream):
    """Responses of every configured form, one cursor entry per form; rules in the module docstring."""

    source = "typeform"
    name = "responses"
    key = "token"
    cursor_field = "submitted_at"
    paginator = TypeformPaginator

    def __init__(self, api: TypeformApi, forms: Sequence[str], *, page_size: int = 1000) -> None:
        self.api = api
        self.forms = list(forms)
        self.page_size = page_size

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        """Each form's responses since its cursor entry; see the module docstring."""
        state = None if full else decode_cursor(self.source, self.name, cursor)
        forms: dict[str, dict[str, Any]] = dict(state.get("forms", {})) if state else {}
        if not all(isinstance(v, dict) for v in forms.values()):
            raise unreadable_cursor(self.source, self.name, cursor)
        for form_id in self.forms:
            # A form added to the config since the last run starts with a full sweep of its own.
            first = form_id not in forms
            for form_state, batch in self._sweep(form_id, dict(forms.get(form_id, {})), full=first):
                forms[form_id] = form_state
                yield Batch(
                    source=batch.source,
                    stream=batch.stream,
                    records=batch.records,
                    events=batch.events,
                    cursor=encode_cursor({"forms": forms}),
                    requests=batch.requests,
                    full=batch.full,
                )

    def _sweep(
        self, form_id: str, state: dict[str, Any], *, full: bool
    ) -> Iterator[tuple[dict[str, Any], Batch]]:
        since = state.get("since")
        tokens = set(state.get("tokens", []))
        top: str | None = state.get("top")
        top_tokens = set(state.get("top_tokens", []))
        paginator = TypeformPaginator(self.page_size, state.get("before"))
        while not paginator.finished:
            page = self.api.responses(
                form_id, pageSize=self.page_size, since=since, completed=True, **paginator.params()
            )
            items = require_list(self.source, page, "items")
            paginator.update(page)
            records: list[Record] = []
            events: list[ContactEvent] = []
            for item in items:
                submitted = self._submitted(form_id, item)
                if submitted is None:
                    continue  # started, not submitted: nothing to order it by, nor an answer to keep
                stamp = _iso(submitted)
                if stamp == since and item["token"] in tokens:
                    continue
                records.append(response_record(form_id, item, submitted))
                event = response_event(form_id, item, submitted)
                if event is not None:
                    events.append(event)
                if top is None or stamp > top:
                    top, top_tokens = stamp, set()
                if stamp == top:
                    top_tokens.add(item["token"])
            if not paginator.finished:
                new_state: dict[str, Any] = {
                    "since": since,
                    "tokens": sorted(tokens),
                    "before": paginator.token,
                    "top": top,
                    "top_tokens": sorted(top_tokens),
                }
            elif top is None or top == since:
                new_state = {"since": since, "tokens": sorted(tokens | top_tokens)}
            else:
                new_state = {"since": top, "tokens": sorted(top_tokens)}
            batch = Batch(
                source=self.source,
                stream=self.name,
                records=records,
                events=events,
                requests=self.api.retrier.take_attempts(),
                full=full,
            )
            yield new_state, batch

    def _submitted(self, form_id: str, item: Any) -> datetime | None:
        """When the response was submitted; None for one only started (a token and `landed_at` alone)."""
        if isinstance(item, Mapping) and isinstance(item.get("token"), str):
            submitted = parse_time(item.get("submitted_at"))
            if submitted is not None and submitted.year > 1:  # year 1: Typeform's zero time, not submitted
                return submitted
            if parse_time(item.get("landed_at")) is not None:
                return None
        raise MalformedPageError(
            f"typeform: form {form_id} responses: malformed page: "
            "a response lacks token or submitted_at: "
            "check connectors.typeform.base_url points at the Typeform API"
        )
