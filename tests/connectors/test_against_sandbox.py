"""Full and incremental pulls of every stream against the provider sandbox, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors import Batch, ConnectorsConfig, Source, build_source
from tests.connectors.fakes import FakeSleep

sandbox = pytest.importorskip("crmhub.sandbox")
FORM_ID = pytest.importorskip("crmhub.sandbox.typeform_store").FORM_ID

STREAMS = [
    "stripe.customers",
    "stripe.subscriptions",
    "stripe.invoices",
    "stripe.charges",
    "hubspot.contacts",
    "hubspot.companies",
    "hubspot.deals",
    "typeform.responses",
]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Any, str]]:
    box = sandbox.Sandbox(people=120, seed=11)
    with sandbox.SandboxServer(box) as server:
        yield box, server.url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _sources(url: str, http: httpx.Client, sleep: FakeSleep) -> dict[str, Source]:
    config = ConnectorsConfig.model_validate(
        {
            "stripe": {"enabled": True, "base_url": url, "page_size": 50},
            "hubspot": {"enabled": True, "base_url": url, "objects": ["contacts", "companies", "deals"]},
            "typeform": {"enabled": True, "base_url": url, "forms": [FORM_ID], "page_size": 40},
        }
    )
    secrets = {
        "stripe": sandbox.credentials.STRIPE_API_KEY,
        "hubspot": sandbox.credentials.HUBSPOT_ACCESS_TOKEN,
        "typeform": sandbox.credentials.TYPEFORM_TOKEN,
    }
    return {n: build_source(n, config, s, http, sleep=sleep, clock=sleep.clock) for n, s in secrets.items()}


def _pull_all(
    sources: dict[str, Source], cursors: dict[str, str | None], now: datetime
) -> dict[str, list[Batch]]:
    pulled = {}
    for source in sources.values():
        for stream in source.streams:
            pulled[stream.qualified_name] = list(stream.pull(cursors.get(stream.qualified_name), now=now))
    return pulled


def _apply(state: dict[str, dict[str, Any]], pulled: dict[str, list[Batch]]) -> None:
    for name, batches in pulled.items():
        for record in (r for b in batches for r in b.records):
            if record.deleted:
                state[name].pop(record.external_id, None)
            else:
                state[name][record.external_id] = record.payload


def test_full_then_incremental_matches_a_fresh_full_pull(world: tuple[Any, str], http: httpx.Client) -> None:
    box, url = world
    sleep = FakeSleep()
    counts = box.world.counts()
    first = _pull_all(_sources(url, http, sleep), {}, datetime.fromtimestamp(box.world.now, tz=UTC))
    assert sorted(first) == sorted(STREAMS)
    state: dict[str, dict[str, Any]] = {name: {} for name in STREAMS}
    _apply(state, first)
    for kind in ("customers", "subscriptions", "invoices", "charges"):
        assert len(state[f"stripe.{kind}"]) == counts["stripe"][kind]
    for kind in ("contacts", "companies", "deals"):
        assert len(state[f"hubspot.{kind}"]) == counts["hubspot"][kind]
    submitted = [r for r in box.world.typeform.responses[FORM_ID] if r.submitted_at is not None]
    assert len(state["typeform.responses"]) == len(submitted)

    box.tick(2)
    cursors = {name: batches[-1].cursor for name, batches in first.items()}
    second = _pull_all(_sources(url, http, sleep), cursors, datetime.fromtimestamp(box.world.now, tz=UTC))
    for name, batches in second.items():
        changed = sum(len(b.records) for b in batches)
        ids = [r.external_id for b in batches for r in b.records]
        assert len(ids) == len(set(ids)), name
        page_size = {"stripe": 50, "hubspot": 100, "typeform": 40}[name.split(".")[0]]
        # The extra request: HubSpot's properties API, Stripe's subscription products, read once a run.
        allowed = changed // page_size + 1 + (name.startswith("hubspot") or name == "stripe.subscriptions")
        assert sum(b.requests for b in batches) <= allowed, name
    _apply(state, second)

    # A fresh full pull, plus the events after its start (the sandbox dates some charges after its clock).
    now = datetime.fromtimestamp(box.world.now, tz=UTC)
    fresh: dict[str, dict[str, Any]] = {name: {} for name in STREAMS}
    full = _pull_all(_sources(url, http, sleep), {}, now)
    _apply(fresh, full)
    _apply(fresh, _pull_all(_sources(url, http, sleep), {n: b[-1].cursor for n, b in full.items()}, now))
    for name in STREAMS:
        assert set(state[name]) == set(fresh[name]), name
    for name in ("hubspot.contacts", "typeform.responses"):
        assert state[name] == fresh[name], name
    for sub_id, sub in fresh["stripe.subscriptions"].items():
        assert state["stripe.subscriptions"][sub_id]["status"] == sub["status"]
        # Listed or from an event, an item's product is the product object, not its id.
        assert _product_names(state["stripe.subscriptions"][sub_id]) == _product_names(sub)
        assert set(_product_names(sub)) <= {"Basic", "Pro", "Enterprise"}


def _product_names(subscription: dict[str, Any]) -> list[str]:
    return [item["price"]["product"]["name"] for item in subscription["items"]["data"]]


def test_rate_limits_and_server_errors_are_retried(world: tuple[Any, str], http: httpx.Client) -> None:
    box, url = world
    sleep = FakeSleep()
    box.add_fault("stripe:429:2")
    box.add_fault("hubspot:503:1")
    try:
        sources = _sources(url, http, sleep)
        customers = list(
            sources["stripe"]
            .stream("customers")
            .pull(None, now=datetime.fromtimestamp(box.world.now, tz=UTC))
        )
        contacts = list(
            sources["hubspot"]
            .stream("contacts")
            .pull(None, now=datetime.fromtimestamp(box.world.now, tz=UTC))
        )
    finally:
        box.clear_faults()
    # Two 429s, then the newest-event probe and the first page succeed.
    assert customers[0].requests == 4 and contacts[0].requests >= 2
    assert len(sleep.calls) >= 3
