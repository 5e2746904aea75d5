"""HubSpot: search-based pulls, the result cap, throttling, errors -- against a respx-served fake."""

from __future__ import annotations

import json

import httpx
import pytest

from connectors import (
    Batch,
    ConnectorsConfig,
    HubSpotSource,
    MalformedPageError,
    PermanentError,
    build_source,
)
from connectors.config import HubSpotConfig
from connectors.hubspot import HubSpotStream
from tests.connectors.fakes import HUBSPOT_URL, NOW, FakeHubSpot, FakeSleep, keys, resume_everywhere

BASE_MS = 1_700_000_000_000


@pytest.fixture
def fake() -> FakeHubSpot:
    fake = FakeHubSpot()
    for n in range(7):
        fake.put("contacts", f"{n + 1}", BASE_MS + n * 1000, email=f"c{n}@x.io")
    return fake


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def _source(fake: FakeHubSpot, sleep: FakeSleep, **config: object) -> HubSpotSource:
    settings = {"enabled": True, "base_url": HUBSPOT_URL, "page_size": 3, **config}
    connectors = ConnectorsConfig(hubspot=HubSpotConfig.model_validate(settings))
    source = build_source(
        "hubspot", connectors, "pat-1", fake.client(fake.router()), sleep=sleep, clock=sleep.clock
    )
    assert isinstance(source, HubSpotSource)
    return source


def _pull(
    source: HubSpotSource, cursor: str | None, name: str = "contacts", full: bool = False
) -> list[Batch]:
    return list(source.stream(name).pull(cursor, now=NOW, full=full))


def test_full_pull_pages_to_the_end_oldest_first(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    source = _source(fake, sleep)
    batches = _pull(source, None)
    # Each page is a new search from the newest time read, which it reads again (and skips).
    assert [[r.external_id for r in b.records] for b in batches] == [["1", "2", "3"], ["4", "5"], ["6", "7"]]
    assert json.loads(batches[-1].cursor or "") == {"since": BASE_MS + 6000, "seen": {"7": BASE_MS + 6000}}
    assert batches[0].records[0].payload["properties"]["email"] == "c0@x.io"
    body = fake.search_bodies[0]
    assert body["filterGroups"][0]["filters"][0] == {
        "propertyName": "lastmodifieddate",
        "operator": "GTE",
        "value": "0",
    }
    assert body["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert body["properties"] == ["email", "firstname", "lastmodifieddate", "plan"]
    assert fake.search_bodies[1]["filterGroups"][0]["filters"][0]["value"] == str(BASE_MS + 2000)
    assert not any(b.get("after") for b in fake.search_bodies)
    # The properties API is read once, and its request is counted on the first page.
    assert [r.url.path for r in fake.requests].count("/crm/v3/properties/contacts") == 1
    assert [b.requests for b in batches] == [2, 1, 1]


def test_property_definitions_expose_declared_types(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    definitions = {d.name: d for d in _source(fake, sleep).property_definitions("contacts")}
    assert definitions["lastmodifieddate"].type == "datetime"
    assert definitions["plan"].options == ("free", "pro")


def test_configured_properties_are_the_ones_pulled(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    _pull(_source(fake, sleep, properties=["email", "not_a_property"]), None)
    assert fake.search_bodies[0]["properties"] == ["email", "lastmodifieddate"]


def test_incremental_pulls_exactly_what_changed(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    source = _source(fake, sleep)
    cursor = _pull(source, None)[-1].cursor
    fake.put("contacts", "2", BASE_MS + 9000, email="changed@x.io")
    fake.put("contacts", "8", BASE_MS + 9500, email="new@x.io")
    batches = _pull(source, cursor)
    assert [(r.external_id, r.payload["properties"]["email"]) for b in batches for r in b.records] == [
        ("2", "changed@x.io"),
        ("8", "new@x.io"),
    ]
    assert fake.search_bodies[-1]["filterGroups"][0]["filters"][0]["value"] == str(BASE_MS + 6000)
    assert not any(b.full for b in batches)
    assert keys(_pull(source, batches[-1].cursor)) == []


def test_boundary_is_deduplicated_by_id_and_time(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    source = _source(fake, sleep)
    fake.put("contacts", "9", BASE_MS + 6000)  # same millisecond as contact 7
    cursor = _pull(source, None)[-1].cursor
    assert json.loads(cursor or "") == {
        "since": BASE_MS + 6000,
        "seen": {"7": BASE_MS + 6000, "9": BASE_MS + 6000},
    }
    fake.put("contacts", "10", BASE_MS + 6000)
    fake.put("contacts", "7", BASE_MS + 7000)
    assert [k[1] for k in keys(_pull(source, cursor))] == ["10", "7"]


def test_resume_from_any_saved_cursor_matches_an_uninterrupted_pull(
    fake: FakeHubSpot, sleep: FakeSleep
) -> None:
    for n in range(8, 12):
        fake.put("contacts", f"{n}", BASE_MS + 4000)  # a tie across a page boundary
    source = _source(fake, sleep)
    whole, resumed = resume_everywhere(lambda c: _pull(source, c), None)
    assert len(keys(whole)) == 11
    for run in resumed:
        assert keys(run) == keys(whole)


def test_paging_by_time_never_reaches_the_search_cap(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    fake.cap = 6
    for n in range(8, 21):
        fake.put("contacts", f"{n}", BASE_MS + 10_000 + n)
    source = _source(fake, sleep)
    stream = source.stream("contacts")
    assert isinstance(stream, HubSpotStream)
    stream.search_cap = 6
    batches = _pull(source, None)
    assert sorted(int(k[1]) for k in keys(batches)) == list(range(1, 21))
    assert len({k[1] for k in keys(batches)}) == len(keys(batches))
    assert not any(b.get("after") for b in fake.search_bodies)


def test_a_tie_longer_than_a_page_is_paged_by_offset(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    for n in range(8, 13):
        fake.put("contacts", f"{n}", BASE_MS + 4000)  # six contacts in one millisecond, with "5"
    batches = _pull(_source(fake, sleep), None)
    assert [k[1] for k in keys(batches)] == ["1", "2", "3", "4", "10", "11", "12", "5", "8", "9", "6", "7"]
    ties = [(b["filterGroups"][0]["filters"][0]["value"], b.get("after")) for b in fake.search_bodies]
    tie = str(BASE_MS + 4000)
    assert ties == [("0", None), (str(BASE_MS + 2000), None), (tie, None), (tie, "3"), (tie, "6")]


def test_cap_without_progress_is_a_clear_error(sleep: FakeSleep) -> None:
    fake = FakeHubSpot(cap=6)
    for n in range(10):
        fake.put("contacts", f"{n}", BASE_MS)
    source = _source(fake, sleep)
    stream = source.stream("contacts")
    assert isinstance(stream, HubSpotStream)
    stream.search_cap = 6
    with pytest.raises(PermanentError, match=r"more than 6 objects modified at one lastmodifieddate value"):
        _pull(source, None)


def _tied_at_a_cap_of_6(sleep: FakeSleep, tied: int) -> tuple[FakeHubSpot, HubSpotSource]:
    """`tied` contacts in one millisecond, against a search that refuses a page reaching past 6 results."""
    fake = FakeHubSpot(cap=6)
    for n in range(tied):
        fake.put("contacts", f"{n}", BASE_MS)
    source = _source(fake, sleep)
    stream = source.stream("contacts")
    assert isinstance(stream, HubSpotStream)
    stream.search_cap = 6
    return fake, source


def test_a_tie_as_large_as_the_search_cap_is_pulled_whole(sleep: FakeSleep) -> None:
    fake, source = _tied_at_a_cap_of_6(sleep, 6)
    assert sorted(k[1] for k in keys(_pull(source, None))) == [str(n) for n in range(6)]
    assert [b.get("after") for b in fake.search_bodies] == [None, None, "3"]


def test_a_tie_one_larger_than_the_search_cap_is_the_error(sleep: FakeSleep) -> None:
    fake, source = _tied_at_a_cap_of_6(sleep, 7)
    with pytest.raises(PermanentError, match=r"more than 6 objects modified at one lastmodifieddate value"):
        _pull(source, None)
    assert [b.get("after") for b in fake.search_bodies] == [None, None, "3"]  # never past the cap


def test_companies_use_hs_lastmodifieddate(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    fake.put("companies", "c1", BASE_MS, name="Acme")
    source = _source(fake, sleep, objects=["contacts", "companies"])
    assert [s.name for s in source.streams] == ["contacts", "companies"]
    batches = _pull(source, None, "companies")
    assert [k[1] for k in keys(batches)] == ["c1"]
    assert fake.search_bodies[0]["filterGroups"][0]["filters"][0]["propertyName"] == "hs_lastmodifieddate"


def test_search_is_throttled_by_both_buckets(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    for n in range(8, 40):
        fake.put("contacts", f"{n}", BASE_MS + 10_000 + n)
    source = _source(fake, sleep, page_size=2, requests_per_second=9.0, search_requests_per_second=4.0)
    batches = _pull(source, None)
    searches = sum(b.requests for b in batches) - 1
    # The properties read goes at once, the first search 1/9 s later (the overall bucket), then the
    # 4/s search bucket sets the pace: one search every quarter second, never 5 in one second.
    assert searches == 38
    assert sleep.now - 1000.0 == pytest.approx(1 / 9 + (searches - 1) / 4.0, abs=0.01)


def test_429_on_search_honours_retry_after(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    source = _source(fake, sleep)
    source.property_definitions("contacts")
    fake.fail_next(httpx.Response(429, headers={"Retry-After": "2"}, json={"errorType": "RATE_LIMIT"}))
    batches = _pull(source, None)
    assert 2.0 in sleep.calls and len(keys(batches)) == 7


def test_5xx_and_timeouts_are_retried(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    source = _source(fake, sleep)
    source.property_definitions("contacts")
    fake.fail_next(httpx.Response(502, text="bad gateway"), httpx.ReadTimeout("slow"))
    assert len(keys(_pull(source, None))) == 7
    assert len([s for s in sleep.calls if s > 0.3]) >= 2


def test_wrong_token_is_permanent_with_a_clear_message(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    fake.token = "Bearer other"
    with pytest.raises(
        PermanentError, match=r"hubspot: .*authentication failed \(401\).*connectors.hubspot.api_key_env"
    ):
        _pull(_source(fake, sleep), None)


def test_a_malformed_page_is_a_clear_error(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    source = _source(fake, sleep)
    source.property_definitions("contacts")
    fake.fail_next(httpx.Response(200, text="not json"))
    with pytest.raises(MalformedPageError, match=r"hubspot: contacts search: malformed page"):
        _pull(source, None)
    fake.fail_next(httpx.Response(200, json={"results": [{"id": "1", "properties": {}}]}))
    with pytest.raises(MalformedPageError, match=r"lacks id or lastmodifieddate"):
        _pull(source, None)


def test_the_cursor_stays_behind_the_search_index_lag(fake: FakeHubSpot, sleep: FakeSleep) -> None:
    now_ms = int(NOW.timestamp() * 1000)
    fake.put("contacts", "20", now_ms - 5_000)
    source = _source(fake, sleep)
    cursor = _pull(source, None)[-1].cursor
    state = json.loads(cursor or "")
    assert state["since"] == now_ms - 30_000
    assert state["seen"] == {"20": now_ms - 5_000}
    # Indexed late: modified before contact 20 but visible only now; it is not missed.
    fake.put("contacts", "21", now_ms - 10_000)
    again = _pull(source, cursor)
    assert [k[1] for k in keys(again)] == ["21"]
    assert keys(_pull(source, again[-1].cursor)) == []


def test_a_contact_edited_between_pages_shifts_no_other_past_the_pull(
    fake: FakeHubSpot, sleep: FakeSleep
) -> None:
    pulled: list[str] = []
    for n, batch in enumerate(_source(fake, sleep).stream("contacts").pull(None, now=NOW)):
        pulled.extend(r.external_id for r in batch.records)
        if n == 0:
            # Moves to the end of the ascending search: an offset would now skip contact 4.
            fake.put("contacts", "2", BASE_MS + 9000, email="edited@x.io")
    assert sorted(set(pulled)) == ["1", "2", "3", "4", "5", "6", "7"]
    assert pulled[-1] == "2"


def _source_for(token: str, base_url: str, sleep: FakeSleep) -> HubSpotSource:
    connectors = ConnectorsConfig(hubspot=HubSpotConfig(enabled=True, base_url=base_url))
    source = build_source("hubspot", connectors, token, httpx.Client(), sleep=sleep, clock=sleep.clock)
    assert isinstance(source, HubSpotSource)
    return source


def test_sources_of_one_portal_draw_from_the_same_buckets(sleep: FakeSleep) -> None:
    # The server's webhook reads, a sync run and the push each build a Source for one portal.
    first, second = (_source_for("pat-1", HUBSPOT_URL, sleep) for _ in range(2))
    assert first.api.overall_bucket is second.api.overall_bucket
    assert first.api.search_bucket is second.api.search_bucket
    assert first.api.search_bucket is not first.api.overall_bucket


@pytest.mark.parametrize(
    ("token", "base_url"), [("pat-2", HUBSPOT_URL), ("pat-1", "https://eu1.hubspot.test")]
)
def test_another_token_or_host_has_buckets_of_its_own(sleep: FakeSleep, token: str, base_url: str) -> None:
    first, other = _source_for("pat-1", HUBSPOT_URL, sleep), _source_for(token, base_url, sleep)
    assert first.api.overall_bucket is not other.api.overall_bucket
    assert first.api.search_bucket is not other.api.search_bucket


def test_a_search_through_one_source_takes_the_token_of_the_other(
    fake: FakeHubSpot, sleep: FakeSleep
) -> None:
    first, second = _source(fake, sleep), _source(fake, sleep)
    first.property_definitions("contacts")
    assert sleep.calls == []
    second.property_definitions("contacts")
    # The one token the shared bucket held went to the first Source: the second waited for its own.
    assert len(sleep.calls) == 1
