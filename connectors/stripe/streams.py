"""Stripe streams: a backfill through the list endpoints, then updates through `/v1/events`.

Cursor (JSON), one of three phases:

* ``{"phase": "backfill", "started": T0, "seen": [evt ids], "after": ID|null}`` -- a list walk
  (newest first) of the objects created at or before T0, resumed with ``starting_after=ID``
  (exclusive). Saved after each page; the last page saves the history cursor below, and the
  history follows in the same run. A listed paid invoice also gives its `invoice.paid` (at
  `status_transitions.paid_at`, keyed by the invoice), so payments older than the event history
  count too.
* ``{"phase": "history", "since": T0, "seen": [evt ids], "after": ID|null}`` -- the events of the 30
  days Stripe keeps, up to T0, walked newest first and resumed like the list: they become contact
  events (`invoice.paid` of last week is what "paid in the last 7 days" needs on the first
  sync), and Records only for deletions (`customer.deleted`, ...): the list already gave the state
  at T0 of every object still there, but says nothing of those deleted, which a store from before a
  `--full` or a fallback still holds as they were. Stored events are skipped by their id, and a
  deletion is dated by its event, so a page walked twice stores nothing new. The last page saves
  the events cursor below with ``since = T0`` and the same ``seen``.
* ``{"phase": "events", "since": T, "seen": [evt ids]}`` -- events with ``created >= T`` (inclusive),
  minus the ids in ``seen`` (the events at second T already stored: several share a second).
  Events are applied oldest first, so the last Record of an object is its newest state.

In every phase, an event whose object is a preview (`invoice.upcoming`, PREVIEW_EVENTS) is a contact
event only: its invoice does not exist yet, and has no id to store it by.

No cursor, ``full=True``, or an events cursor older than the 30 days Stripe keeps events: a new
backfill; the fallback is flagged on the first Batch (``fallback_reason``) and logged.

Subscriptions: each item's ``price.product`` is the product object, in listed subscriptions and in
event objects alike; products are read by id in bulk once per pull (connectors.stripe.products),
as Stripe refuses the five-level ``expand[]=data.items.data.price.product``.

T0 is Stripe's time, not ours: the ``created`` of the newest event when the backfill starts (our
``now`` only when the account has no events yet), and that event is already ``seen``. A local clock
ahead of Stripe's would otherwise put T0 after changes made during the backfill, and their events
would never be listed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import Stream, decode_cursor, encode_cursor, from_epoch, unreadable_cursor
from connectors.exceptions import PermanentError
from connectors.paginators import StripePaginator, require_list
from connectors.records import Batch, ContactEvent, Record
from connectors.stripe.client import API_VERSION, StripeApi
from connectors.stripe.mapping import (
    event_record,
    is_preview,
    object_record,
    paid_invoice_event,
    stripe_event,
    validate_event,
)
from connectors.stripe.products import Products

__all__ = ["EVENTS_RETENTION", "KINDS", "MAX_BUFFERED_EVENTS", "StripeKind", "StripeStream"]

log = logging.getLogger(__name__)

EVENTS_RETENTION = timedelta(days=30)
# Events near the edge may be pruned while we page, so a cursor this close to it already falls back.
_RETENTION_MARGIN = timedelta(hours=1)

# Events come newest first but must be applied oldest first, so a sweep is held in memory; past
# this many, the oldest are applied and the sweep is repeated from there (bounded memory).
MAX_BUFFERED_EVENTS = 10_000


@dataclass(frozen=True)
class StripeKind:
    """What a Stripe stream lists, which events update it, and what a listed object says happened."""

    name: str
    path: str
    object: str
    list_params: Mapping[str, Any] = field(default_factory=dict)
    event_params: Mapping[str, Any] = field(default_factory=dict)
    listed_event: Callable[[Mapping[str, Any]], ContactEvent | None] | None = None
    # Subscriptions: fill each item's `price.product` id with the product (connectors.stripe.products).
    with_products: bool = False


KINDS: dict[str, StripeKind] = {
    "customers": StripeKind(
        "customers",
        "/v1/customers",
        "customer",
        event_params={"types": ["customer.created", "customer.updated", "customer.deleted"]},
    ),
    "subscriptions": StripeKind(
        "subscriptions",
        "/v1/subscriptions",
        "subscription",
        # Not `expand[]=data.items.data.price.product`: five levels, and Stripe allows four.
        list_params={"status": "all"},
        event_params={"type": "customer.subscription.*"},
        with_products=True,
    ),
    "invoices": StripeKind(
        "invoices",
        "/v1/invoices",
        "invoice",
        event_params={"type": "invoice.*"},
        listed_event=paid_invoice_event,
    ),
    "charges": StripeKind("charges", "/v1/charges", "charge", event_params={"type": "charge.*"}),
}


def _last_per_object(records: list[Record]) -> list[Record]:
    """Keep each object's last Record, in order: a batch never upserts one key twice."""
    latest = {r.external_id: i for i, r in enumerate(records)}
    return [r for i, r in enumerate(records) if latest[r.external_id] == i]


class StripeStream(Stream):
    """One Stripe object type; the cursor rules are in the module docstring."""

    source = "stripe"
    key = "id"
    cursor_field = "created"
    paginator = StripePaginator

    def __init__(self, api: StripeApi, kind: StripeKind, *, page_size: int = 100) -> None:
        self.api = api
        self.kind = kind
        self.name = kind.name
        self.page_size = page_size

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        """Backfill or events, from the cursor; see the module docstring."""
        state = None if full else decode_cursor(self.source, self.name, cursor)
        now_ts = int(now.timestamp())
        # Products are read once per pull, fresh each run (a renamed product shows on the next run).
        products = Products(self.api) if self.kind.with_products else None
        if state is None:
            yield from self._backfill(*self._provider_now(now_ts), None, products, reason=None)
            return
        try:
            phase, after = state["phase"], state.get("after")
            since = int(state["started"] if phase == "backfill" else state["since"])
            seen = {str(i) for i in state.get("seen", [])}
        except (KeyError, TypeError, ValueError) as exc:
            raise unreadable_cursor(self.source, self.name, cursor) from exc
        if phase == "backfill":
            yield from self._backfill(since, seen, after, products, reason=None)
        elif phase == "history":
            yield from self._history(since, seen, after)
        elif since < int((now - EVENTS_RETENTION + _RETENTION_MARGIN).timestamp()):
            reason = (
                f"stripe.{self.name}: cursor is older than the 30 days of events Stripe keeps: "
                "re-listing everything"
            )
            log.warning(reason)
            yield from self._backfill(*self._provider_now(now_ts), None, products, reason=reason)
        else:
            yield from self._events(since, seen, products)

    def _provider_now(self, fallback: int) -> tuple[int, set[str]]:
        """Stripe's clock: the newest event's time and id, or `fallback` if there is no event yet."""
        page = self.api.get("/v1/events", {"limit": 1})
        newest = require_list(self.source, page, "data")
        if not newest:
            return fallback, set()
        return int(newest[0]["created"]), {str(newest[0]["id"])}

    def _backfill(
        self,
        started: int,
        seen: set[str],
        after: str | None,
        products: Products | None,
        *,
        reason: str | None,
    ) -> Iterator[Batch]:
        paginator = StripePaginator(after)
        params = {"limit": self.page_size, "created": {"lte": started}, **self.kind.list_params}
        listed_at = from_epoch(started)
        while not paginator.finished:
            page = self.api.get(self.kind.path, {**params, **paginator.params()})
            objects = require_list(self.source, page, "data")
            paginator.update(page)
            if products is not None:
                objects = products.fill(objects)
            records = [object_record(self.name, obj, seen_at=listed_at) for obj in objects]
            listed = self.kind.listed_event
            events = [] if listed is None else [e for e in map(listed, objects) if e is not None]
            if paginator.finished:
                state: dict[str, Any] = {
                    "phase": "history",
                    "since": started,
                    "seen": sorted(seen),
                    "after": None,
                }
            else:
                state = {
                    "phase": "backfill",
                    "started": started,
                    "seen": sorted(seen),
                    "after": paginator.token,
                }
            yield Batch(
                source=self.source,
                stream=self.name,
                records=records,
                events=events,
                cursor=encode_cursor(state),
                requests=self.api.retrier.take_attempts(),
                full=True,
                fallback_reason=reason,
            )
            reason = None
        yield from self._history(started, seen, None)

    def _history(self, until: int, seen: set[str], after: str | None) -> Iterator[Batch]:
        """The kept events up to `until`, newest first, as contact events and deletions; then events."""
        paginator = StripePaginator(after)
        params = {"limit": self.page_size, "created": {"lte": until}, **self.kind.event_params}
        while not paginator.finished:
            page = self.api.get("/v1/events", {**params, **paginator.params()})
            events = [validate_event(e, previews=True) for e in require_list(self.source, page, "data")]
            paginator.update(page)
            state: dict[str, Any] = {"phase": "events", "since": until, "seen": sorted(seen)}
            if not paginator.finished:
                state = {"phase": "history", "since": until, "seen": sorted(seen), "after": paginator.token}
            mine = self._mine(events)
            yield Batch(
                source=self.source,
                stream=self.name,
                records=_last_per_object([r for r in self._records(mine) if r.deleted]),
                events=self._contact_events(mine),
                cursor=encode_cursor(state),
                requests=self.api.retrier.take_attempts(),
                full=True,
            )

    def _sweep(self, since: int) -> tuple[list[Mapping[str, Any]], bool]:
        """Every event since `since`, oldest first, at most MAX_BUFFERED_EVENTS; True if cut short."""
        paginator = StripePaginator()
        params = {"limit": self.page_size, "created": {"gte": since}, **self.kind.event_params}
        kept: deque[Mapping[str, Any]] = deque(maxlen=MAX_BUFFERED_EVENTS)
        fetched = 0
        while not paginator.finished:
            page = self.api.get("/v1/events", {**params, **paginator.params()})
            events = [validate_event(e, previews=True) for e in require_list(self.source, page, "data")]
            paginator.update(page)
            fetched += len(events)
            # A full deque drops from the left, where the newest events are: those come back next sweep.
            kept.extend(events)
        return list(reversed(kept)), fetched > len(kept)

    def _events(self, since: int, seen: set[str], products: Products | None) -> Iterator[Batch]:
        while True:
            events, cut_short = self._sweep(since)
            fresh = [e for e in events if not (e["created"] == since and e["id"] in seen)]
            if products is not None:
                fresh = self._with_products(fresh, products)
            requests = self.api.retrier.take_attempts()
            if cut_short and not fresh:
                raise PermanentError(
                    f"stripe.{self.name}: more than {MAX_BUFFERED_EVENTS} events in one second, "
                    "which the events cursor cannot page past: pull with --full"
                )
            if not fresh:
                yield self._events_batch([], since, seen, requests)
            for start in range(0, len(fresh), self.page_size):
                chunk = fresh[start : start + self.page_size]
                for event in chunk:
                    if event["created"] > since:
                        since, seen = event["created"], set()
                    seen.add(event["id"])
                yield self._events_batch(chunk, since, seen, requests)
                requests = 0
            if not cut_short:
                return

    def _with_products(self, events: list[Mapping[str, Any]], products: Products) -> list[Mapping[str, Any]]:
        """The events with their subscriptions' products filled: one read for the whole window."""
        objects = products.fill([e["data"]["object"] for e in events])
        return [{**e, "data": {**e["data"], "object": o}} for e, o in zip(events, objects, strict=True)]

    def _events_batch(
        self, chunk: list[Mapping[str, Any]], since: int, seen: set[str], requests: int
    ) -> Batch:
        mine = self._mine(chunk)
        return Batch(
            source=self.source,
            stream=self.name,
            records=_last_per_object(self._records(mine)),
            events=self._contact_events(mine),
            cursor=encode_cursor({"phase": "events", "since": since, "seen": sorted(seen)}),
            requests=requests,
            warnings=self._foreign_versions(mine),
        )

    def _foreign_versions(self, events: list[Mapping[str, Any]]) -> list[str]:
        """A warning per API version other than the SDK's that the events' objects were rendered at."""
        # Stripe renders an event's object at the account's API version of the day it was created,
        # while the list endpoints answer at the SDK's: a field that moved between the two is read
        # from a place it is not. The values are stored all the same; the admin learns why.
        versions = {str(v) for e in events if (v := e.get("api_version")) and v != API_VERSION}
        return [
            f"stripe.{self.name}: events rendered at Stripe API version {version}, while crmhub reads "
            f"{API_VERSION} (the stripe SDK's): fields whose shape changed between them may be missing "
            f"or differ; upgrade the account's API version in the Stripe Dashboard (Developers) to "
            f"{API_VERSION}, or pull with --full to re-list the objects"
            for version in sorted(versions)
        ]

    def _mine(self, events: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The events about this stream's kind of object."""
        return [e for e in events if e["data"]["object"].get("object") == self.kind.object]

    def _records(self, events: list[Mapping[str, Any]]) -> list[Record]:
        """The events' objects as Records; previews are left out, as no such object exists yet."""
        return [event_record(self.name, e) for e in events if not is_preview(e)]

    def _contact_events(self, events: list[Mapping[str, Any]]) -> list[ContactEvent]:
        """The events as things people did; events naming no one are left out."""
        return [ce for ce in (stripe_event(e) for e in events) if ce is not None]
