"""Stripe: backfill, events, fallback, resume, errors -- against a respx-served fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors import (
    Batch,
    ConnectorsConfig,
    MalformedPageError,
    PermanentError,
    RetryableError,
    build_source,
)
from connectors.base import Stream
from connectors.config import StripeConfig
from connectors.stripe.client import API_VERSION
from tests.connectors.fakes import NOW, NOW_TS, STRIPE_URL, FakeSleep, FakeStripe, keys, resume_everywhere


def _customer(n: int, created: int, email: str | None = None) -> dict[str, object]:
    return {"id": f"cus_{n:03d}", "object": "customer", "created": created, "email": email or f"c{n}@x.io"}


@pytest.fixture
def fake() -> FakeStripe:
    fake = FakeStripe()
    for n in range(7):
        fake.add("customers", _customer(n, NOW_TS - 10_000 + n))
    fake.add(
        "subscriptions",
        {"id": "sub_1", "object": "subscription", "created": NOW_TS - 500, "customer": "cus_001"},
    )
    return fake


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def _retry_sleeps(sleep: FakeSleep) -> list[float]:
    """The sleeps of retries: every other one is the rate limit's spacing of requests."""
    gap = 1 / StripeConfig().requests_per_second
    return [s for s in sleep.calls if s != pytest.approx(gap)]


def _stream(fake: FakeStripe, sleep: FakeSleep, name: str = "customers", page_size: int = 3) -> Stream:
    config = ConnectorsConfig(stripe=StripeConfig(enabled=True, base_url=STRIPE_URL, page_size=page_size))
    http = fake.client(fake.router())
    return build_source("stripe", config, "sk_test_1", http, sleep=sleep, clock=sleep.clock).stream(name)


def _pull(stream: Stream, cursor: str | None, **kw: object) -> list[Batch]:
    return list(stream.pull(cursor, now=kw.pop("now", NOW), **kw))  # type: ignore[arg-type]


def test_backfill_pages_to_the_end_then_switches_to_events(fake: FakeStripe, sleep: FakeSleep) -> None:
    batches = _pull(_stream(fake, sleep), None)
    # Three pages of the list, then one page of the (empty) event history.
    assert [len(b.records) for b in batches] == [3, 3, 1, 0]
    assert [r.external_id for b in batches for r in b.records] == [f"cus_{n:03d}" for n in range(6, -1, -1)]
    # The first page also asks Stripe for its newest event (none here, so our clock is used).
    assert all(b.full for b in batches) and [b.requests for b in batches] == [2, 1, 1, 1]
    assert fake.requests[0].url.path == "/v1/events" and fake.requests[0].url.params["limit"] == "1"
    assert json.loads(batches[-2].cursor or "") == {
        "phase": "history",
        "since": NOW_TS,
        "seen": [],
        "after": None,
    }
    assert json.loads(batches[-1].cursor or "") == {"phase": "events", "since": NOW_TS, "seen": []}
    assert json.loads(batches[0].cursor or "")["after"] == "cus_004"
    assert fake.requests[2].url.params["starting_after"] == "cus_004"
    assert fake.requests[1].url.params["created[lte]"] == str(NOW_TS)


def test_the_first_sync_takes_the_kept_event_history_as_contact_events(
    fake: FakeStripe, sleep: FakeSleep
) -> None:
    # Stripe keeps 30 days of events: last week's invoice.paid is what "paid in 7 days" needs at once.
    for n in range(5):
        fake.event("customer.updated", _customer(n, 1, f"old{n}@x.io"), NOW_TS - 86_400 * (n + 1))
    fake.event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_001"}, NOW_TS - 50)
    stream = _stream(fake, sleep, page_size=2)
    whole = _pull(stream, None)
    history = [b for b in whole if b.events]
    assert [e.name for b in history for e in b.events] == ["customer.updated"] * 5
    assert [e.identities["stripe_customer"] for b in history for e in b.events] == [
        f"cus_{n:03d}" for n in range(5)
    ]
    # Contact events only: the list gave each customer's state, older copies must not replace it.
    assert all(not b.records for b in history)
    history_requests = [
        r for r in fake.requests if r.url.params.get("created[lte]") and "types[0]" in r.url.params
    ]
    assert len(history_requests) == 3 and all(
        r.url.params["created[lte]"] == str(NOW_TS - 50) for r in history_requests
    )
    # The history resumes from any of its saved cursors and then hands over to the events phase.
    assert json.loads(whole[-1].cursor or "") == {
        "phase": "events",
        "since": NOW_TS - 50,
        "seen": ["evt_0005"],
    }
    events = [(e.external_id, e.name) for b in whole for e in b.events]
    for k, batch in enumerate(whole[:-1]):
        again = whole[: k + 1] + _pull(stream, batch.cursor)
        assert [(e.external_id, e.name) for b in again for e in b.events] == events
        assert keys(again) == keys(whole)


def test_the_events_cursor_starts_at_stripes_clock_not_ours(fake: FakeStripe, sleep: FakeSleep) -> None:
    behind = NOW_TS - 5_000  # Stripe's clock (or the sandbox's) is behind this host's
    fake.event("customer.created", _customer(0, behind), behind)
    stream = _stream(fake, sleep)
    batches = _pull(stream, None)
    assert json.loads(batches[-1].cursor or "")["since"] == behind
    # Listed copies are dated in Stripe's time too, or every later event would look older than them.
    assert {r.updated_at for b in batches for r in b.records} == {datetime.fromtimestamp(behind, UTC)}
    changed = {**_customer(3, NOW_TS - 10_000 + 3), "email": "new@x.io"}
    fake.event("customer.updated", changed, behind + 60)
    later = _pull(stream, batches[-1].cursor)
    assert [r.payload["email"] for b in later for r in b.records] == ["new@x.io"]


def _subscription(n: int, created: int, *products: str) -> dict[str, object]:
    items = [
        {"id": f"si_{n}_{k}", "price": {"id": f"price_{p}", "product": p}} for k, p in enumerate(products)
    ]
    return {
        "id": f"sub_{n:03d}",
        "object": "subscription",
        "created": created,
        "customer": "cus_001",
        "items": {"object": "list", "data": items, "has_more": False},
    }


def _product(product_id: str) -> dict[str, object]:
    return {
        "id": product_id,
        "object": "product",
        "created": 1,
        "name": product_id.removeprefix("prod_").title(),
    }


def _product_names(batches: list[Batch]) -> list[list[object]]:
    """Each subscription Record's products: the name of an expanded one, else the id left in place."""
    return [
        [p["name"] if isinstance(p := i["price"]["product"], dict) else p for i in r.payload["items"]["data"]]
        for b in batches
        for r in b.records
    ]


def _product_requests(fake: FakeStripe) -> list[list[str]]:
    return [
        [v for k, v in r.url.params.multi_items() if k.startswith("ids[")]
        for r in fake.requests
        if r.url.path == "/v1/products"
    ]


def test_subscriptions_list_all_statuses_with_price_and_product(fake: FakeStripe, sleep: FakeSleep) -> None:
    for name in ("prod_basic", "prod_pro"):
        fake.add("products", _product(name))
    fake.objects["subscriptions"] = [
        _subscription(n, NOW_TS - 500 + n, "prod_pro" if n % 2 else "prod_basic") for n in range(5)
    ]
    fake.objects["subscriptions"][0] = _subscription(0, NOW_TS - 500, "prod_basic", "prod_pro")
    batches = _pull(_stream(fake, sleep, "subscriptions", page_size=2), None)
    assert [r.external_id for b in batches for r in b.records] == [f"sub_{n:03d}" for n in range(4, -1, -1)]
    params = fake.requests[1].url.params
    assert params["status"] == "all"
    # Stripe refuses `data.items.data.price.product` (five levels): nothing is expanded on the list.
    assert not any(k.startswith("expand") for r in fake.requests for k in r.url.params)
    assert _product_names(batches) == [["Basic"], ["Pro"], ["Basic"], ["Pro"], ["Basic", "Pro"]]
    # Read by id, and only the ids the pull has not seen yet: two products, two requests in all.
    assert _product_requests(fake) == [["prod_basic", "prod_pro"]]
    assert sum(b.requests for b in batches) == len(fake.requests)


def test_subscription_events_carry_products_read_once_per_pull(fake: FakeStripe, sleep: FakeSleep) -> None:
    for name in ("prod_basic", "prod_pro", "prod_gone"):
        fake.add("products", _product(name))
    stream = _stream(fake, sleep, "subscriptions")
    cursor = _pull(stream, None)[-1].cursor
    fake.requests.clear()
    fake.objects["products"].pop()  # deleted since: Stripe no longer lists it
    for n in range(4):
        sub = _subscription(n, NOW_TS, "prod_pro" if n % 2 else "prod_basic")
        fake.event("customer.subscription.updated", sub, NOW_TS + 1 + n)
    fake.event("customer.subscription.created", _subscription(9, NOW_TS, "prod_gone"), NOW_TS + 9)
    batches = _pull(stream, cursor, now=NOW + timedelta(minutes=1))
    assert _product_names(batches) == [["Basic"], ["Pro"], ["Basic"], ["Pro"], ["prod_gone"]]
    assert _product_requests(fake) == [["prod_basic", "prod_pro", "prod_gone"]]
    # Two pages of events and one of products, counted on the first batch.
    assert [b.requests for b in batches] == [3, 0] and len(fake.requests) == 3
    # A new pull reads the products again (a renamed product shows on the next run).
    fake.event("customer.subscription.updated", _subscription(1, NOW_TS, "prod_pro"), NOW_TS + 20)
    fake.requests.clear()
    again = _pull(stream, batches[-1].cursor, now=NOW + timedelta(minutes=2))
    assert _product_names(again) == [["Pro"]] and _product_requests(fake) == [["prod_pro"]]


def test_more_than_100_products_take_one_request_per_100(fake: FakeStripe, sleep: FakeSleep) -> None:
    names = [f"prod_{n:03d}" for n in range(150)]
    for name in names:
        fake.add("products", _product(name))
    fake.objects["subscriptions"] = [_subscription(0, NOW_TS - 1, *names)]
    batches = _pull(_stream(fake, sleep, "subscriptions"), None)
    assert _product_names(batches) == [[name.removeprefix("prod_").title() for name in names]]
    assert [len(ids) for ids in _product_requests(fake)] == [100, 50]
    assert all(
        r.url.params["limit"] == "100" and "starting_after" not in r.url.params
        for r in fake.requests
        if r.url.path == "/v1/products"
    )


def test_events_pick_up_exactly_what_changed_oldest_first(fake: FakeStripe, sleep: FakeSleep) -> None:
    stream = _stream(fake, sleep)
    cursor = _pull(stream, None)[-1].cursor
    fake.requests.clear()
    fake.event("customer.updated", _customer(1, 1, "new@x.io"), NOW_TS + 5)
    fake.event("customer.updated", _customer(1, 1, "newer@x.io"), NOW_TS + 6)
    fake.event("customer.created", _customer(9, NOW_TS + 7), NOW_TS + 7)
    fake.event("customer.deleted", {**_customer(2, 1), "deleted": True}, NOW_TS + 8)
    later = NOW + timedelta(minutes=5)
    batches = _pull(stream, cursor, now=later)
    records = [r for b in batches for r in b.records]
    # Two updates of cus_001 in one page collapse to the newest; order is oldest first.
    assert [(r.external_id, r.payload.get("email"), r.deleted) for r in records] == [
        ("cus_001", "newer@x.io", False),
        ("cus_009", "c9@x.io", False),
        ("cus_002", "c2@x.io", True),
    ]
    assert [e.name for b in batches for e in b.events] == [
        "customer.updated",
        "customer.updated",
        "customer.created",
        "customer.deleted",
    ]
    assert batches[0].events[0].identities == {"stripe_customer": "cus_001", "email": "new@x.io"}
    assert sum(b.requests for b in batches) == 2  # 4 events, 3 per page
    assert fake.requests[0].url.params["created[gte]"] == str(NOW_TS)
    assert [v for k, v in fake.requests[0].url.params.multi_items() if k.startswith("types[")] == [
        "customer.created",
        "customer.updated",
        "customer.deleted",
    ]
    again = _pull(stream, batches[-1].cursor, now=later)
    assert keys(again) == [] and len(again) == 1 and again[0].requests == 1


def test_events_rendered_at_another_api_version_are_stored_with_a_warning(
    fake: FakeStripe, sleep: FakeSleep
) -> None:
    stream = _stream(fake, sleep)
    cursor = _pull(stream, None)[-1].cursor
    fake.event("customer.updated", _customer(1, 1, "new@x.io"), NOW_TS + 5)["api_version"] = API_VERSION
    fake.event("customer.updated", _customer(2, 1, "old@x.io"), NOW_TS + 6)["api_version"] = "2020-08-27"
    fake.event("customer.updated", _customer(3, 1, "also@x.io"), NOW_TS + 7)["api_version"] = "2020-08-27"
    batches = _pull(stream, cursor, now=NOW + timedelta(minutes=5))
    assert [r.external_id for b in batches for r in b.records] == ["cus_001", "cus_002", "cus_003"]
    warnings = [w for b in batches for w in b.warnings]
    assert len(warnings) == 1, warnings  # one per version, not per event
    assert warnings[0].startswith("stripe.customers: events rendered at Stripe API version 2020-08-27")
    assert (
        f"upgrade the account's API version in the Stripe Dashboard (Developers) to {API_VERSION}"
        in warnings[0]
    )


def test_events_sharing_a_second_are_deduplicated_at_the_boundary(fake: FakeStripe, sleep: FakeSleep) -> None:
    stream = _stream(fake, sleep, page_size=2)
    cursor = json.dumps({"phase": "events", "since": NOW_TS, "seen": []})
    for n in range(3):
        fake.event("customer.updated", _customer(n, 1), NOW_TS + 10)
    first = _pull(stream, cursor)
    assert json.loads(first[-1].cursor or "") == {
        "phase": "events",
        "since": NOW_TS + 10,
        "seen": ["evt_0000", "evt_0001", "evt_0002"],
    }
    fake.event("customer.updated", _customer(4, 1), NOW_TS + 10)
    second = _pull(stream, first[-1].cursor)
    assert [r.external_id for b in second for r in b.records] == ["cus_004"]


def test_invoice_events_become_contact_events_with_email(fake: FakeStripe, sleep: FakeSleep) -> None:
    stream = _stream(fake, sleep, "invoices")
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": "cus_001",
        "customer_email": "c1@x.io",
        "amount_paid": 900,
        "currency": "eur",
        "status": "paid",
    }
    fake.event("invoice.paid", invoice, NOW_TS + 1)
    fake.event("invoice.payment_succeeded", {"id": "pi_1", "object": "payment_intent"}, NOW_TS + 1)
    batches = _pull(stream, json.dumps({"phase": "events", "since": NOW_TS, "seen": []}))
    assert fake.requests[0].url.params["type"] == "invoice.*"
    [event] = [e for b in batches for e in b.events]
    # Keyed by the invoice: an invoice is paid once, however crmhub learns of it.
    assert (event.name, event.external_id, event.identities) == (
        "invoice.paid",
        "in_1",
        {"stripe_customer": "cus_001", "email": "c1@x.io"},
    )
    assert event.properties["amount_paid"] == 900
    assert [r.external_id for b in batches for r in b.records] == ["in_1"]


def _upcoming(**ids: object) -> dict[str, object]:
    """The preview invoice of an `invoice.upcoming`: no id, or what `ids` gives (None, `upcoming_in_...`)."""
    return {
        "object": "invoice",
        "customer": "cus_001",
        "amount_due": 2900,
        "billing_reason": "upcoming",
        **ids,
    }


@pytest.mark.parametrize(
    "ids", [{}, {"id": None}, {"id": "upcoming_in_1Ab"}], ids=["no id", "null", "prefixed"]
)
def test_an_upcoming_invoice_is_a_contact_event_and_never_an_invoice_record(
    fake: FakeStripe, sleep: FakeSleep, ids: dict[str, object]
) -> None:
    # Stripe sends it days before a renewal ("renews in 3 days"), about an invoice not made yet.
    stream = _stream(fake, sleep, "invoices")
    fake.event("invoice.upcoming", _upcoming(**ids), NOW_TS + 1)
    fake.event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_002"}, NOW_TS + 2)
    batches = _pull(stream, json.dumps({"phase": "events", "since": NOW_TS, "seen": []}))
    assert [r.external_id for b in batches for r in b.records] == ["in_1"]
    upcoming = next(e for b in batches for e in b.events if e.name == "invoice.upcoming")
    assert (upcoming.external_id, upcoming.identities) == ("evt_0000", {"stripe_customer": "cus_001"})
    # No `object_id`: a preview's id, if any, names no invoice crmhub will ever store.
    assert upcoming.properties == {"object": "invoice", "amount_due": 2900}
    assert json.loads(batches[-1].cursor or "") == {
        "phase": "events",
        "since": NOW_TS + 2,
        "seen": ["evt_0001"],
    }


def test_an_upcoming_invoice_in_the_event_history_is_a_contact_event(
    fake: FakeStripe, sleep: FakeSleep
) -> None:
    fake.event("invoice.upcoming", _upcoming(), NOW_TS - 86_400)
    batches = _pull(_stream(fake, sleep, "invoices"), None)
    assert [e.name for b in batches for e in b.events] == ["invoice.upcoming"]
    assert keys(batches) == []


@pytest.mark.parametrize(
    ("type_", "obj"),
    [
        ("invoice.paid", {"object": "invoice", "customer": "cus_001"}),
        ("invoice.upcoming", "not an object"),
    ],
    ids=["an id-less invoice that is no preview", "a preview that is no object"],
)
def test_an_event_malformed_beyond_a_preview_still_stops_the_pull(
    fake: FakeStripe, sleep: FakeSleep, type_: str, obj: object
) -> None:
    fake.events.append({"id": "evt_bad", "type": type_, "created": NOW_TS + 1, "data": {"object": obj}})
    with pytest.raises(MalformedPageError, match=r"lacks id, created, type or data.object.id"):
        _pull(_stream(fake, sleep, "invoices"), json.dumps({"phase": "events", "since": NOW_TS, "seen": []}))


def test_listed_paid_invoices_are_payments_older_than_the_event_history(
    fake: FakeStripe, sleep: FakeSleep
) -> None:
    year_ago = NOW_TS - 300 * 86_400
    for n, status, paid_at in [(1, "paid", year_ago), (2, "open", None), (3, "paid", NOW_TS - 86_400)]:
        invoice = {
            "id": f"in_{n}",
            "object": "invoice",
            "created": (paid_at or NOW_TS) - 60,
            "customer": f"cus_00{n}",
            "status": status,
            "status_transitions": {"paid_at": paid_at},
        }
        fake.add("invoices", invoice)
    # The recent payment is in the kept event history as well: it stays one event.
    fake.event("invoice.paid", fake.objects["invoices"][2], NOW_TS - 86_400)
    batches = _pull(_stream(fake, sleep, "invoices"), None)
    paid = sorted((e.external_id, e.occurred_at, e.name) for b in batches for e in b.events)
    assert paid == [
        ("in_1", datetime.fromtimestamp(year_ago, UTC), "invoice.paid"),
        ("in_3", datetime.fromtimestamp(NOW_TS - 86_400, UTC), "invoice.paid"),
        ("in_3", datetime.fromtimestamp(NOW_TS - 86_400, UTC), "invoice.paid"),
    ]
    # The store keeps one event per (source, external id, name), so in_3 is one payment there.
    assert {(e.source, e.external_id, e.name) for b in batches for e in b.events} == {
        ("stripe", "in_1", "invoice.paid"),
        ("stripe", "in_3", "invoice.paid"),
    }


def test_a_cursor_older_than_30_days_falls_back_to_a_full_list(
    fake: FakeStripe, sleep: FakeSleep, caplog: pytest.LogCaptureFixture
) -> None:
    old = json.dumps({"phase": "events", "since": NOW_TS - 31 * 86400, "seen": []})
    batches = _pull(_stream(fake, sleep), old)
    assert "older than the 30 days" in (batches[0].fallback_reason or "")
    assert all(b.fallback_reason is None for b in batches[1:])
    assert all(b.full for b in batches)
    assert len(keys(batches)) == 7
    assert "older than the 30 days" in caplog.text
    assert [r.url.path for r in fake.requests[1:]] == ["/v1/customers"] * 3 + ["/v1/events"]


@pytest.mark.parametrize(
    ("age", "relisted"),
    [
        # Inside the last hour of the 30 days: events may be pruned while we page, so re-list.
        (timedelta(days=30) - timedelta(minutes=30), True),
        (timedelta(days=29), False),
    ],
    ids=["within-the-margin", "a-day-inside"],
)
def test_a_cursor_within_an_hour_of_the_30_days_already_falls_back(
    fake: FakeStripe, sleep: FakeSleep, caplog: pytest.LogCaptureFixture, age: timedelta, relisted: bool
) -> None:
    since = int((NOW - age).timestamp())
    fake.event("customer.updated", _customer(1, 1, "new@x.io"), NOW_TS - 60)
    cursor = json.dumps({"phase": "events", "since": since, "seen": []})
    batches = _pull(_stream(fake, sleep), cursor)
    assert ("older than the 30 days" in (batches[0].fallback_reason or "")) is relisted
    assert ("older than the 30 days" in caplog.text) is relisted
    assert all(b.full for b in batches) is relisted
    if relisted:
        assert len(keys(batches)) == 7
        assert "/v1/customers" in [r.url.path for r in fake.requests]
    else:
        assert [(r.external_id, r.payload.get("email")) for b in batches for r in b.records] == [
            ("cus_001", "new@x.io")
        ]
        assert [r.url.path for r in fake.requests] == ["/v1/events"]
        assert fake.requests[0].url.params["created[gte]"] == str(since)


def test_full_ignores_the_cursor(fake: FakeStripe, sleep: FakeSleep) -> None:
    cursor = json.dumps({"phase": "events", "since": NOW_TS, "seen": []})
    batches = _pull(_stream(fake, sleep), cursor, full=True)
    assert len(keys(batches)) == 7 and batches[0].fallback_reason is None


def _deleted_ten_days_ago(fake: FakeStripe) -> None:
    """cus_009: stored by an earlier sync, deleted in Stripe since, so no longer listed."""
    # Stripe's newest event, a minute ago, is where the re-list starts (T0).
    fake.event("customer.updated", _customer(3, 1, "kept@x.io"), NOW_TS - 60)
    fake.event(
        "customer.deleted", {"id": "cus_009", "object": "customer", "deleted": True}, NOW_TS - 10 * 86_400
    )


@pytest.mark.parametrize(
    ("cursor", "full"),
    [
        (json.dumps({"phase": "events", "since": NOW_TS - 31 * 86_400, "seen": []}), False),
        (json.dumps({"phase": "events", "since": NOW_TS - 11 * 86_400, "seen": []}), True),
    ],
    ids=["fallback", "full"],
)
def test_a_re_list_still_deletes_what_was_deleted_in_the_event_history(
    fake: FakeStripe, sleep: FakeSleep, cursor: str, full: bool
) -> None:
    _deleted_ten_days_ago(fake)
    batches = _pull(_stream(fake, sleep), cursor, full=full)
    listed, history = batches[:3], batches[3:]
    assert len(keys(listed)) == 7 and not any(r.deleted for b in listed for r in b.records)
    # The history gives the deletion as the events phase would, dated by its event; nothing else.
    [deletion] = [r for b in history for r in b.records]
    assert (deletion.external_id, deletion.deleted) == ("cus_009", True)
    assert deletion.updated_at > datetime.fromtimestamp(NOW_TS - 10 * 86_400, UTC)
    assert [e.name for b in history for e in b.events] == ["customer.updated", "customer.deleted"]


def test_resume_from_any_saved_cursor_matches_an_uninterrupted_backfill(
    fake: FakeStripe, sleep: FakeSleep
) -> None:
    stream = _stream(fake, sleep, page_size=2)
    whole, resumed = resume_everywhere(lambda c: _pull(stream, c), None)
    assert len(resumed) == 4  # four list pages, then the history's one
    for run in resumed:
        assert keys(run) == keys(whole)


def test_resume_from_any_saved_cursor_matches_an_uninterrupted_events_pull(
    fake: FakeStripe, sleep: FakeSleep
) -> None:
    for n in range(7):
        fake.event("customer.updated", _customer(n, 1), NOW_TS + n // 2)
    stream = _stream(fake, sleep, page_size=2)
    start = json.dumps({"phase": "events", "since": NOW_TS, "seen": []})
    whole, resumed = resume_everywhere(lambda c: _pull(stream, c), start)
    assert [k[1] for k in keys(whole)] == [f"cus_{n:03d}" for n in range(7)]
    for run in resumed:
        assert keys(run) == keys(whole)


def test_429_waits_for_retry_after_then_succeeds(fake: FakeStripe, sleep: FakeSleep) -> None:
    fake.fail_next(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}})
    )
    batches = _pull(_stream(fake, sleep), None)
    assert _retry_sleeps(sleep) == [7.0]
    assert batches[0].requests == 3 and len(keys(batches)) == 7


def test_a_400_with_code_rate_limit_is_retried_like_a_429(fake: FakeStripe, sleep: FakeSleep) -> None:
    # Stripe's older rate-limit answer, which its SDK also raises as RateLimitError.
    limited = {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many"}}
    fake.fail_next(httpx.Response(400, json=limited), httpx.Response(400, json=limited))
    batches = _pull(_stream(fake, sleep), None)
    retries = _retry_sleeps(sleep)
    assert len(retries) == 2 and all(0.5 <= s <= 30 for s in retries)
    assert batches[0].requests == 4 and len(keys(batches)) == 7


def test_a_plain_400_is_permanent(fake: FakeStripe, sleep: FakeSleep) -> None:
    bad = {"error": {"type": "invalid_request_error", "code": "parameter_unknown", "message": "Nope"}}
    fake.fail_next(httpx.Response(400, json=bad))
    with pytest.raises(PermanentError, match=r"stripe: /v1/events: bad request \(400\) \(Nope\)"):
        _pull(_stream(fake, sleep), None)
    assert sleep.calls == [] and len(fake.requests) == 1


def test_5xx_and_timeouts_are_retried_with_backoff(fake: FakeStripe, sleep: FakeSleep) -> None:
    fake.fail_next(
        httpx.Response(503, json={"error": {"message": "down"}}),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
    )
    batches = _pull(_stream(fake, sleep), None)
    retries = _retry_sleeps(sleep)
    assert len(retries) == 3 and all(0.5 <= s <= 30 for s in retries)
    assert batches[0].requests == 5


def test_retries_give_up_after_max_attempts(fake: FakeStripe, sleep: FakeSleep) -> None:
    fake.fail_next(*[httpx.Response(500, json={"error": {"message": "down"}})] * 5)
    with pytest.raises(RetryableError, match=r"stripe: /v1/events: provider error \(500\)"):
        _pull(_stream(fake, sleep), None)
    assert len(fake.requests) == 5


def test_wrong_key_is_permanent_with_a_clear_message(fake: FakeStripe, sleep: FakeSleep) -> None:
    fake.token = "Bearer sk_other"
    with pytest.raises(
        PermanentError, match=r"authentication failed \(401\).*check connectors.stripe.api_key_env"
    ):
        _pull(_stream(fake, sleep), None)
    assert sleep.calls == [] and len(fake.requests) == 1


def test_a_malformed_page_stops_the_pull_before_its_cursor(fake: FakeStripe, sleep: FakeSleep) -> None:
    stream = _stream(fake, sleep)
    pulled = stream.pull(None, now=NOW)
    first = next(pulled)
    fake.fail_next(httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(MalformedPageError, match=r"stripe: /v1/customers: malformed page"):
        next(pulled)
    fake.fail_next(httpx.Response(200, json={"object": "list", "has_more": False}))
    with pytest.raises(MalformedPageError, match=r"'data' is missing"):
        _pull(stream, first.cursor)
    assert [r.external_id for b in _pull(stream, first.cursor) for r in b.records] == [
        "cus_003",
        "cus_002",
        "cus_001",
        "cus_000",
    ]


def test_a_malformed_event_raises_before_anything_is_yielded(fake: FakeStripe, sleep: FakeSleep) -> None:
    fake.event("customer.updated", _customer(1, 1), NOW_TS + 1)
    fake.events.append({"id": "evt_bad", "type": "customer.updated", "created": NOW_TS + 2, "data": {}})
    with pytest.raises(MalformedPageError, match=r"lacks id, created, type or data.object.id"):
        _pull(_stream(fake, sleep), json.dumps({"phase": "events", "since": NOW_TS, "seen": []}))


def test_an_unreadable_cursor_is_a_clear_error(fake: FakeStripe, sleep: FakeSleep) -> None:
    with pytest.raises(PermanentError, match=r"unreadable cursor.*--full"):
        _pull(_stream(fake, sleep), "not json")


def test_a_window_larger_than_the_buffer_is_applied_in_rounds(
    fake: FakeStripe, sleep: FakeSleep, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connectors.stripe.streams.MAX_BUFFERED_EVENTS", 4)
    for n in range(9):
        fake.event("customer.updated", _customer(n, 1), NOW_TS + n // 3)
    batches = _pull(
        _stream(fake, sleep, page_size=2), json.dumps({"phase": "events", "since": NOW_TS, "seen": []})
    )
    assert [k[1] for k in keys(batches)] == [f"cus_{n:03d}" for n in range(9)]
    assert json.loads(batches[-1].cursor or "")["seen"] == ["evt_0006", "evt_0007", "evt_0008"]


def test_a_cursor_of_the_wrong_shape_is_a_clear_error(fake: FakeStripe, sleep: FakeSleep) -> None:
    with pytest.raises(PermanentError, match=r"stripe.customers: unreadable cursor"):
        _pull(_stream(fake, sleep), json.dumps({"phase": "events"}))


def test_every_request_takes_a_token_at_the_configured_rate(fake: FakeStripe, sleep: FakeSleep) -> None:
    config = StripeConfig(enabled=True, base_url=STRIPE_URL, page_size=1, requests_per_second=2.0)
    http = fake.client(fake.router())
    stream = build_source(
        "stripe", ConnectorsConfig(stripe=config), "sk_test_1", http, sleep=sleep, clock=sleep.clock
    ).stream("customers")
    batches = _pull(stream, None)
    requests = sum(b.requests for b in batches)
    assert requests == len(fake.requests) > 4
    # The first request at once, then one every half second: never three in one second.
    assert sleep.calls == pytest.approx([0.5] * (requests - 1))
