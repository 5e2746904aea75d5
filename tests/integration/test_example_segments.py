"""The segments of config.example.toml on sandbox data: chosen contacts in and out, and exits in time.

The sandbox is synced with the example's mapping rules, segments, scoring and consent. What the
sandbox does not generate is added the way it would arrive: HubSpot city, job title and a custom
`age` property written through the HubSpot API, product events pushed as Segment.com `track` calls.
Who should be in each segment is worked out here from the sandbox's own data, not from the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connectors import default_http_client
from connectors.segmentio import parse_messages
from crmhub.demo import Demo
from crmhub.example import example_config_text
from crmhub.sandbox import credentials
from crmhub.sandbox.config import HUBSPOT_PROPERTIES
from crmhub.sandbox.typeform_store import FORM_ID, Response
from crmhub.sandbox.world import World
from crmhub.settings import Settings, load_settings
from crmhub.wiring import build_sources, build_sync_engine, evaluator, pull_source_names
from sync.segments import EvaluationReport
from sync.store.tables import contact_identities, memberships, segments, transitions

DAY = 86_400
# Kept away from window edges, so a minute between a listed payment and its event changes nothing.
MARGIN = 3_600


@dataclass
class Example:
    """A synced sandbox under the example's configuration, and the sandbox clock it was synced at."""

    demo: Demo
    settings: Settings
    now: datetime
    pushed: dict[str, str]  # role in these tests -> user id of the person given those events

    @property
    def world(self) -> World:
        return self.demo.sandbox.world

    def contact(self, kind: str, value: str) -> int:
        ci = contact_identities.c
        with self.demo.engine.connect() as conn:
            found = conn.execute(select(ci.contact_id).where(ci.kind == kind, ci.value == value)).scalars()
            [contact_id] = set(found)
        return int(contact_id)

    def customer(self, customer_id: str) -> int:
        return self.contact("stripe_customer", customer_id)

    def user(self, user_id: str) -> int:
        return self.contact("segmentio_user", user_id)

    def respondent(self, user_id: str) -> int:
        return self.contact("typeform_hidden_id", user_id)

    def members(self, key: str) -> set[int]:
        m, s = memberships.c, segments.c
        query = select(m.contact_id).join(segments, s.id == m.segment_id).where(s.key == key)
        with self.demo.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def left(self, key: str) -> set[int]:
        t, s = transitions.c, segments.c
        query = (
            select(t.contact_id).join(segments, s.id == t.segment_id).where(s.key == key, t.kind == "left")
        )
        with self.demo.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def scheduled(self, at: datetime) -> EvaluationReport:
        """The scheduled re-evaluation at `at`, with no new data."""
        evaluate = evaluator(self.settings)
        assert evaluate is not None
        with self.demo.engine.begin() as conn:
            return evaluate(conn, now=at, run_id=None, contact_ids=None)


def _example_settings(demo: Demo, workdir: Path) -> Settings:
    """The demo's connectors (HubSpot also reading city, job title, age) with the example's rules."""
    path = workdir / "example.toml"
    path.write_text(example_config_text(), encoding="utf-8")
    shipped = load_settings(path)
    hubspot = demo.settings.connectors.hubspot.model_copy(
        update={"properties": [*HUBSPOT_PROPERTIES, "city", "jobtitle", "age"]}
    )
    return demo.settings.model_copy(
        update={
            "connectors": demo.settings.connectors.model_copy(update={"hubspot": hubspot}),
            "field_mapping": shipped.field_mapping,
            "segments": shipped.segments,
            "scoring": shipped.scoring,
            "consent": shipped.consent,
            "hygiene": shipped.hygiene,
        }
    )


# HubSpot contacts given a city, job title and age: (role, city, title, age).
LEADERS = [
    ("leader", "Hamburg", "CTO", 57),
    ("vp", "Hamburg", "VP Engineering", 51),
    ("too_young", "Hamburg", "CTO", 45),
    ("elsewhere", "Berlin", "VP Engineering", 60),
    ("other_role", "Hamburg", "Designer", 58),
]


def _set_leaders(world: World, url: str) -> dict[str, int]:
    """Create HubSpot's custom `age` property, give chosen contacts the LEADERS values; role -> HubSpot id."""
    headers = {"Authorization": f"Bearer {credentials.HUBSPOT_ACCESS_TOKEN}"}
    ids = sorted(world.contact_of[p.index] for p in world.people if p.email_valid and p.in_hubspot)
    chosen = dict(zip([role for role, *_ in LEADERS], ids[:: max(1, len(ids) // 6)], strict=False))
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        created = client.post(
            "/crm/v3/properties/contacts",
            json={
                "name": "age",
                "label": "Age",
                "type": "number",
                "fieldType": "number",
                "groupName": "contactinformation",
            },
        )
        assert created.status_code == 201, created.text
        inputs = [
            {"id": str(chosen[role]), "properties": {"city": city, "jobtitle": title, "age": str(age)}}
            for role, city, title, age in LEADERS
        ]
        updated = client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
        assert updated.status_code == 200, updated.text
    return chosen


def _product_users(world: World) -> list[str]:
    """User ids of people Segment.com knows by a valid e-mail, so their events join their contact."""
    return [p.user_id for p in world.people if p.in_segmentio and p.email_valid]


def _paid_at(world: World) -> dict[str, list[int]]:
    """Every payment time of each Stripe customer, from the sandbox's invoices."""
    paid: dict[str, list[int]] = {}
    for invoice in world.stripe["invoices"].items:
        data = invoice.data
        if data["status"] == "paid":
            paid.setdefault(data["customer"], []).append(int(data["status_transitions"]["paid_at"]))
    return paid


def _pushed_events(world: World, now: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Segment.com track calls for chosen product users: app.used counts and checkouts."""
    paid = _paid_at(world)
    by_user = {p.user_id: world.customer_of.get(p.index) for p in world.people}

    def last_paid(user: str) -> int:
        customer = by_user[user]
        return max(paid.get(customer, [0])) if customer else 0

    users = _product_users(world)
    unpaid = [u for u in users if last_paid(u) < now - 7 * DAY - MARGIN]
    recent = [u for u in users if last_paid(u) > now - 2 * DAY + MARGIN]
    roles = {"power": unpaid[0], "almost": unpaid[1], "abandoned": unpaid[2], "too_soon": unpaid[3]}
    roles["paid_then_checkout"] = recent[0]
    calls: list[dict[str, Any]] = []

    def track(user: str, event: str, at: int) -> None:
        stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
        message_id = f"test-{len(calls)}"
        calls.append(
            {"type": "track", "userId": user, "event": event, "messageId": message_id, "timestamp": stamp}
        )

    for n in range(5):
        track(roles["power"], "app.used", now - (n + 1) * DAY + MARGIN)
    for n in range(4):
        track(roles["almost"], "app.used", now - (n + 1) * DAY + MARGIN)
    track(roles["abandoned"], "checkout.started", now - 4 * 3_600)
    track(roles["too_soon"], "checkout.started", now - 3_600)
    track(roles["paid_then_checkout"], "checkout.started", now - 4 * 3_600)
    return calls, roles


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    workdir = tmp_path_factory.mktemp("example-segments")
    demo = Demo(workdir, people=400, seed=3)
    demo.start()
    try:
        settings = _example_settings(demo, workdir)
        world = demo.sandbox.world
        leaders = _set_leaders(world, demo.server.url)
        now = demo.sandbox_now()
        with default_http_client(settings.connectors) as http:
            sources = build_sources(settings, pull_source_names(settings, None), http)
            report = build_sync_engine(settings, demo.engine).run(sources, now=now)
        assert not report.failed, report.failed
        calls, pushed = _pushed_events(world, world.now)
        pushed |= {role: str(hubspot_id) for role, hubspot_id in leaders.items()}
        batch = parse_messages([*world.product_events, *calls], received_at=now)
        build_sync_engine(settings, demo.engine).ingest(batch, now=now)
        yield Example(demo, settings, now, pushed)
    finally:
        demo.stop()


def test_paid_last_7_days_holds_recent_payers_only(example: Example) -> None:
    now = example.world.now
    paid = _paid_at(example.world)
    recent = {c for c, times in paid.items() if max(times) > now - 7 * DAY + MARGIN}
    earlier = {c for c, times in paid.items() if max(times) < now - 7 * DAY - MARGIN}
    trials = {s.data["customer"] for s in example.world.stripe["subscriptions"].items} - set(paid)
    assert recent and trials
    members = example.members("paid_last_7_days")
    assert {example.customer(c) for c in recent} <= members
    assert not {example.customer(c) for c in earlier | trials} & members


def test_no_payment_in_a_year_holds_those_who_never_paid(example: Example) -> None:
    paid = _paid_at(example.world)
    trials = {s.data["customer"] for s in example.world.stripe["subscriptions"].items} - set(paid)
    members = example.members("no_payment_in_a_year")
    assert trials and {example.customer(c) for c in trials} <= members
    assert not {example.customer(c) for c in paid} & members


def _submitted(world: World) -> dict[str, list[Response]]:
    answered: dict[str, list[Response]] = {}
    for response in world.typeform.responses[FORM_ID]:
        if response.submitted_at is not None:
            answered.setdefault(response.body["hidden"]["user_id"], []).append(response)
    return answered


def _answer(response: Response, ref: str) -> Any:
    for answer in response.body["answers"]:
        if answer["field"]["ref"] == ref:
            return answer[answer["type"]]
    return None


def _only_response(world: World) -> dict[str, Response]:
    """People with exactly one submitted response, by user id (no question of which answer wins)."""
    return {user: rs[0] for user, rs in _submitted(world).items() if len(rs) == 1}


def test_nps_detractors_are_those_who_answered_0_to_6(example: Example) -> None:
    single = _only_response(example.world)
    detractors = {u for u, r in single.items() if _answer(r, "nps") <= 6}
    others = {u for u, r in single.items() if _answer(r, "nps") >= 7}
    assert detractors and others
    members = example.members("nps_detractors")
    assert {example.respondent(u) for u in detractors} <= members
    assert not {example.respondent(u) for u in others} & members


def _last_activities(world: World) -> dict[str, int]:
    """Each user id's latest contact event: Stripe events and payments, forms, product events."""
    latest: dict[str, int] = {}

    def saw(user: str, at: int) -> None:
        latest[user] = max(at, latest.get(user, at))

    user_of = {world.customer_of[p.index]: p.user_id for p in world.people if p.index in world.customer_of}
    for customer, times in _paid_at(world).items():
        for at in times:
            saw(user_of[customer], at)
    for event in world.stripe["events"].items:
        obj = event.data["data"]["object"]
        for customer in {obj.get("customer"), obj.get("id")} & user_of.keys():
            saw(user_of[customer], int(event.data["created"]))
    for user, responses in _submitted(world).items():
        for response in responses:
            saw(user, int(response.submitted_at or 0))
    for message in world.product_events:
        if message["type"] in ("track", "page"):
            sent = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
            saw(message["userId"], int(sent.timestamp()))
    return latest


def test_trial_users_inactive_for_30_days(example: Example) -> None:
    world, now = example.world, example.world.now
    trialing = {
        s.data["customer"] for s in world.stripe["subscriptions"].items if s.data["status"] == "trialing"
    }
    inactive: set[str] = set()
    active: set[str] = set()
    activity = _last_activities(world)
    for person in world.people:
        customer = world.customer_of.get(person.index)
        if customer is None or customer not in trialing or person.user_id in example.pushed.values():
            continue
        last = activity.get(person.user_id)
        if last is not None and last < now - 30 * DAY - MARGIN:
            inactive.add(customer)
        elif last is not None and last > now - 30 * DAY + MARGIN:
            active.add(customer)
    assert inactive and active
    members = example.members("trial_inactive")
    assert {example.customer(c) for c in inactive} <= members
    assert not {example.customer(c) for c in active} & members


def test_engaged_30_days_takes_any_of_its_conditions(example: Example) -> None:
    world, now = example.world, example.world.now
    paid = _paid_at(world)
    payers = {c for c, times in paid.items() if max(times) > now - 7 * DAY + MARGIN}
    # Only in HubSpot, created over 30 days ago: no event, no form, no payment.
    quiet = [
        p
        for p in world.people
        if p.in_hubspot
        and not (p.in_stripe or p.in_typeform or p.in_segmentio)
        and p.email_valid
        and p.created < now - 31 * DAY
    ]
    assert payers and quiet
    members = example.members("engaged_30_days")
    assert {example.customer(c) for c in payers} <= members
    assert not {example.contact("hubspot_contact", str(world.contact_of[p.index])) for p in quiet} & members


def test_power_users_need_five_uses_in_a_week_and_get_a_variant(example: Example) -> None:
    members = example.members("power_users")
    assert example.user(example.pushed["power"]) in members
    assert example.user(example.pushed["almost"]) not in members
    m, s = memberships.c, segments.c
    query = (
        select(m.variant)
        .join(segments, s.id == m.segment_id)
        .where(s.key == "power_users", m.contact_id == example.user(example.pushed["power"]))
    )
    with example.demo.engine.connect() as conn:
        assert conn.execute(query).scalar_one() in {"a", "b", "holdout"}


def test_the_micro_segment_needs_age_city_and_role_together(example: Example) -> None:
    members = example.members("hamburg_leaders_over_50")
    contact = {role: example.contact("hubspot_contact", example.pushed[role]) for role, *_ in LEADERS}
    assert {contact["leader"], contact["vp"]} <= members
    assert not {contact["too_young"], contact["elsewhere"], contact["other_role"]} & members


def test_abandoned_checkout_waits_three_hours_and_skips_payers(example: Example) -> None:
    members = example.members("abandoned_checkout")
    assert example.user(example.pushed["abandoned"]) in members
    assert example.user(example.pushed["too_soon"]) not in members
    assert example.user(example.pushed["paid_then_checkout"]) not in members


def _anniversary_eve(born: str, after: int) -> datetime:
    """Noon two days before the first anniversary of `born` after the time `after`."""
    birthday = dt.date.fromisoformat(born)
    start = datetime.fromtimestamp(after, UTC).date()
    for year in (start.year, start.year + 1):
        day = birthday.replace(year=year)
        if day - timedelta(days=2) > start:
            return datetime.combine(day - timedelta(days=2), dt.time(12), tzinfo=UTC)
    raise AssertionError("unreachable: a later year always has the anniversary")


def test_time_windows_empty_with_a_later_now_and_no_new_data(example: Example) -> None:
    before = {key: example.members(key) for key in ("paid_last_7_days", "abandoned_checkout", "power_users")}
    assert all(before.values())
    later = example.now + timedelta(days=8)
    example.scheduled(later)
    for key, members in before.items():
        assert example.members(key) == set(), key
        assert members <= example.left(key), key
    # "No payment in a year" is not a window that closes: its members stay.
    assert example.members("no_payment_in_a_year")


def test_birthday_this_week_needs_the_date_and_sms_consent(example: Example) -> None:
    single = _only_response(example.world)
    dated = {
        u: r
        for u, r in single.items()
        if _answer(r, "birthday") and not _answer(r, "birthday").endswith("02-29")
    }
    agreed = [u for u, r in dated.items() if _answer(r, "consent") is True]
    refused = [u for u, r in dated.items() if _answer(r, "consent") is False]
    assert agreed and refused
    # After the window test's later clock, in time order: each person's birthday is two days away.
    after = example.world.now + 9 * DAY
    checks = sorted(
        [(_anniversary_eve(_answer(dated[u], "birthday"), after), u, True) for u in agreed[:2]]
        + [(_anniversary_eve(_answer(dated[u], "birthday"), after), u, False) for u in refused[:2]]
    )
    for at, user, expected in checks:
        example.scheduled(at)
        assert (example.respondent(user) in example.members("birthday_this_week")) is expected, (user, at)
