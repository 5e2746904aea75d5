"""The Stripe look-alike through the official `stripe` SDK (httpx client, base URL only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import stripe

from crmhub.sandbox import Sandbox, World, credentials
from crmhub.sandbox.world import DAY, UPCOMING_DAYS

MakeClient = Callable[..., stripe.StripeClient]


@pytest.fixture
def make_client(url: str) -> Iterator[MakeClient]:
    """Stripe clients on the sandbox; their httpx connections are closed after the test."""
    opened: list[stripe.HTTPXClient] = []

    def make(key: str = credentials.STRIPE_API_KEY) -> stripe.StripeClient:
        http = stripe.HTTPXClient(allow_sync_methods=True)
        opened.append(http)
        return stripe.StripeClient(key, base_addresses={"api": url}, http_client=http)

    yield make
    for http in opened:
        http.close()


def test_customers_page_to_the_end(make_client: MakeClient, sandbox: Sandbox) -> None:
    page = make_client().v1.customers.list(params={"limit": 100})
    ids = [c.id for c in page.auto_paging_iter()]
    assert len(ids) == len(sandbox.world.stripe["customers"])
    assert len(set(ids)) == len(ids)
    created = [sandbox.world.stripe["customers"].by_id[i].data["created"] for i in ids]
    assert created == sorted(created, reverse=True)


def test_customer_created_filter_and_small_pages(make_client: MakeClient, sandbox: Sandbox) -> None:
    customers = sandbox.world.stripe["customers"].items
    pivot = customers[len(customers) // 2].data["created"]
    page = make_client().v1.customers.list(params={"limit": 7, "created": {"gte": pivot}})
    got = [c.id for c in page.auto_paging_iter()]
    assert got == [c.data["id"] for c in reversed(customers) if c.data["created"] >= pivot]


_MONTH = 86_400 * 30


@pytest.mark.parametrize(
    ("created", "holds"),
    [
        (lambda p: {"gt": str(p)}, lambda t, p: t > p),
        (lambda p: {"lt": str(p)}, lambda t, p: t < p),
        (lambda p: {"lte": str(p)}, lambda t, p: t <= p),
        (lambda p: {"gte": str(p - _MONTH), "lt": str(p)}, lambda t, p: p - _MONTH <= t < p),
        (lambda p: str(p), lambda t, p: t == p),
    ],
)
def test_created_bounds_page_the_same_as_filtering_every_object(
    make_client: MakeClient,
    sandbox: Sandbox,
    created: Callable[[int], Any],
    holds: Callable[[int, int], bool],
) -> None:
    customers = sandbox.world.stripe["customers"].items
    pivot = customers[len(customers) // 3].data["created"]
    page = make_client().v1.customers.list(params={"limit": 3, "created": created(pivot)})
    got = [c.id for c in page.auto_paging_iter()]
    wanted = [c.data["id"] for c in reversed(customers) if holds(c.data["created"], pivot)]
    assert got == wanted and wanted


def test_subscriptions_default_excludes_canceled_and_all_includes_them(
    make_client: MakeClient, sandbox: Sandbox
) -> None:
    client = make_client()
    every = [
        s for s in client.v1.subscriptions.list(params={"status": "all", "limit": 100}).auto_paging_iter()
    ]
    default = [s for s in client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter()]
    assert len(every) == len(sandbox.world.stripe["subscriptions"])
    statuses = {s.status for s in every}
    assert statuses >= {"active", "trialing", "past_due", "canceled", "unpaid", "incomplete", "paused"}
    assert "canceled" not in {s.status for s in default}
    assert len(default) == sum(1 for s in every if s.status != "canceled")


def test_subscription_expansions_go_four_levels_deep(make_client: MakeClient) -> None:
    page = make_client().v1.subscriptions.list(
        params={"limit": 3, "expand": ["data.customer", "data.items.data.price"]}
    )
    sub = page.data[0]
    assert isinstance(sub.customer, stripe.Customer)
    price = sub["items"].data[0].price
    assert price.object == "price" and isinstance(price.product, str)
    one = make_client().v1.subscriptions.retrieve(sub.id, params={"expand": ["items.data.price.product"]})
    product = one["items"].data[0].price.product
    assert product.object == "product"
    assert product.name in {"Basic", "Pro", "Enterprise"}


@pytest.mark.parametrize(
    ("list_it", "path"),
    [(True, "data.items.data.price.product"), (False, "items.data.price.product.default_price")],
)
def test_an_expand_deeper_than_four_levels_is_refused_as_stripe_does(
    make_client: MakeClient, sandbox: Sandbox, list_it: bool, path: str
) -> None:
    client = make_client()
    with pytest.raises(stripe.InvalidRequestError) as caught:
        if list_it:
            client.v1.subscriptions.list(params={"limit": 3, "expand": ["data.customer", path]})
        else:
            sub_id = sandbox.world.stripe["subscriptions"].items[0].data["id"]
            client.v1.subscriptions.retrieve(sub_id, params={"expand": [path]})
    assert caught.value.http_status == 400
    assert caught.value.code == "property_expansion_max_depth"
    assert caught.value.user_message == (
        f"You cannot expand more than 4 levels of a property. Property: {path}"
    )
    assert caught.value.error is not None and caught.value.error.type == "invalid_request_error"


def test_products_by_ids(make_client: MakeClient, sandbox: Sandbox) -> None:
    every = [p.data["id"] for p in sandbox.world.stripe["products"].items]
    wanted = every[:2]
    page = make_client().v1.products.list(params={"ids": [*wanted, "prod_missing"], "limit": 100})
    assert sorted(p.id for p in page.data) == sorted(wanted) and not page.has_more
    with pytest.raises(stripe.InvalidRequestError) as caught:
        make_client().v1.products.list(params={"ids": wanted, "starting_after": every[0]})
    assert (caught.value.http_status, caught.value.param) == (400, "ids")


def test_invoices_and_charges_by_customer(make_client: MakeClient, sandbox: Sandbox) -> None:
    client = make_client()
    invoice = sandbox.world.stripe["invoices"].items[-1].data
    invoices = list(client.v1.invoices.list(params={"customer": invoice["customer"]}).auto_paging_iter())
    assert invoice["id"] in {i.id for i in invoices}
    assert all(i.customer == invoice["customer"] for i in invoices)
    charges = list(client.v1.charges.list(params={"customer": invoice["customer"]}).auto_paging_iter())
    assert {c.metadata["invoice"] for c in charges} >= {i.id for i in invoices}


def test_events_types_and_created_filters(make_client: MakeClient, sandbox: Sandbox) -> None:
    client = make_client()
    world = sandbox.world
    since = world.now - 10 * 86400
    events = list(
        client.v1.events.list(
            params={"types": ["invoice.paid", "charge.failed"], "created": {"gt": since}, "limit": 100}
        ).auto_paging_iter()
    )
    expected = [
        e
        for e in world.stripe["events"].items
        if e.data["type"] in ("invoice.paid", "charge.failed") and e.data["created"] > since
    ]
    assert len(events) == len(expected) > 0
    assert {e.type for e in events} == {"invoice.paid", "charge.failed"}
    assert type(events[0].data.object).__name__ in {"Invoice", "Charge"}
    wildcard = list(client.v1.events.list(params={"type": "customer.*", "limit": 100}).auto_paging_iter())
    assert wildcard and all(e.type.startswith("customer.") for e in wildcard)


def test_limit_out_of_range_is_a_400(make_client: MakeClient) -> None:
    for limit in (0, 101):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            make_client().v1.customers.list(params={"limit": limit})
        assert caught.value.http_status == 400
        assert caught.value.param == "limit"


def test_raw_wire_format_and_list_shape(url: str) -> None:
    auth = {"Authorization": f"Bearer {credentials.STRIPE_API_KEY}"}
    body = httpx.get(f"{url}/v1/customers?limit=2&expand[0]=data.default_source", headers=auth).json()
    assert body["object"] == "list" and body["url"] == "/v1/customers" and body["has_more"] is True
    first, second = body["data"]
    before = httpx.get(f"{url}/v1/customers?limit=5&ending_before={second['id']}", headers=auth).json()
    assert [c["id"] for c in before["data"]] == [first["id"]]
    assert before["has_more"] is False


def test_wrong_key_is_a_401(make_client: MakeClient) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        make_client("sk_test_wrong").v1.customers.list()
    assert caught.value.http_status == 401
    assert isinstance(caught.value.json_body, dict) and "error" in caught.value.json_body


def test_rate_limit_fault_raises_rate_limit_error(make_client: MakeClient, sandbox: Sandbox) -> None:
    sandbox.add_fault("stripe:429:1")
    with pytest.raises(stripe.RateLimitError) as caught:
        make_client().v1.customers.list()
    assert caught.value.http_status == 429
    assert caught.value.headers is not None and caught.value.headers["retry-after"] == "1"
    assert make_client().v1.customers.list().data


def test_unknown_and_deleted_customers(make_client: MakeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        make_client().v1.customers.retrieve("cus_doesnotexist")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"


def test_auto_paging_backwards_with_ending_before(make_client: MakeClient, sandbox: Sandbox) -> None:
    customers = sandbox.world.stripe["customers"].items
    oldest = customers[0].data["id"]
    page = make_client().v1.customers.list(params={"limit": 25, "ending_before": oldest})
    got = {c.id for c in page.auto_paging_iter()}
    assert got == {c.data["id"] for c in customers[1:]}


def _upcoming(world: World, after: int = 0) -> list[dict[str, Any]]:
    """The `invoice.upcoming` events dated after `after`."""
    events = (e.data for e in world.stripe["events"].items)
    return [e for e in events if e["type"] == "invoice.upcoming" and e["created"] > after]


def _invoiced(world: World) -> dict[str, list[int]]:
    """Each subscription's invoice times."""
    times: dict[str, list[int]] = {}
    for invoice in world.stripe["invoices"].items:
        times.setdefault(invoice.data["subscription"], []).append(invoice.data["created"])
    return times


def test_renewals_are_announced_by_invoice_upcoming_carrying_an_id_less_preview() -> None:
    world = World(120, seed=5)
    start = world.now
    generated = _upcoming(world)
    report = world.tick(UPCOMING_DAYS + 30)
    ticked = _upcoming(world, after=start)
    assert generated and len(ticked) == report.changes["stripe.invoice.upcoming"] > 0
    subscriptions = world.stripe["subscriptions"].by_id
    for event in generated + ticked:
        preview = event["data"]["object"]
        # As on Stripe: the invoice does not exist yet, so it has no id.
        assert "id" not in preview and preview["billing_reason"] == "upcoming"
        assert preview["customer"] == subscriptions[preview["subscription"]].data["customer"]
        assert event["created"] == preview["next_payment_attempt"] - UPCOMING_DAYS * DAY <= world.now
    # No list shows a preview, and each announced renewal happened (a day later on a price change).
    assert all(i.data["billing_reason"] != "upcoming" for i in world.stripe["invoices"].items)
    invoiced = _invoiced(world)
    for event in generated + ticked:
        preview = event["data"]["object"]
        due, sub = preview["next_payment_attempt"], subscriptions[preview["subscription"]].data
        if due <= world.now and sub["status"] == "active":
            assert any(due - DAY <= at <= due + 2 * DAY for at in invoiced[sub["id"]]), event
