"""The generator: deterministic, overlapping identities, messy formats, every status and answer type."""

from __future__ import annotations

import re

from crmhub.sandbox import World, start_before
from crmhub.sandbox.world import SUBSCRIPTION_STATUSES


def _fingerprint(world: World) -> list[object]:
    return [
        [c.data["id"] for c in world.stripe["customers"].items],
        [c.properties["email"] for c in world.hubspot.objects["contacts"].values()],
        [r.token for r in world.typeform.responses["crmhubNPS"]],
        [e["messageId"] for e in world.product_events],
    ]


def test_same_people_and_seed_same_data() -> None:
    assert _fingerprint(World(80, seed=5)) == _fingerprint(World(80, seed=5))
    assert _fingerprint(World(80, seed=5)) != _fingerprint(World(80, seed=6))


def test_ticks_are_deterministic_too() -> None:
    first, second = World(60, seed=2), World(60, seed=2)
    assert first.tick(5).summary() == second.tick(5).summary()
    assert _fingerprint(first) == _fingerprint(second)


def test_every_subscription_status_even_for_few_people() -> None:
    world = World(10, seed=1)
    statuses = {s.data["status"] for s in world.stripe["subscriptions"].items}
    assert statuses == set(SUBSCRIPTION_STATUSES)


def test_people_overlap_with_messy_emails_and_phones() -> None:
    world = World(400, seed=9)
    everywhere = [p for p in world.people if p.in_stripe and p.in_hubspot and p.in_typeform]
    assert len(everywhere) > 50
    stripe_emails = {c.data["email"] for c in world.stripe["customers"].items}
    hubspot_emails = {c.properties["email"] for c in world.hubspot.objects["contacts"].values()}
    assert any(e != e.strip() for e in stripe_emails | hubspot_emails if e)
    assert any(e != e.lower() for e in stripe_emails | hubspot_emails if e)
    phones = [
        c.properties["phone"] for c in world.hubspot.objects["contacts"].values() if c.properties["phone"]
    ]
    assert any(re.fullmatch(r"\+1\d{10}", p) for p in phones)
    assert any(re.fullmatch(r"\(\d{3}\) \d{3} \d{4}", p) for p in phones)
    assert any(re.fullmatch(r"\d{3}-\d{3}-\d{4}", p) for p in phones)
    assert any(not p.email_valid for p in world.people) and any(not p.phone_valid for p in world.people)


def test_people_a_tick_adds_take_no_one_elses_e_mail_or_phone() -> None:
    world = World(50, seed=3)
    world.tick(10)
    assert len(world.people) > 50
    emails = [p.email for p in world.people]
    phones = [p.phone_e164 for p in world.people if p.phone_e164 and p.phone_valid]
    assert len(set(emails)) == len(emails)
    assert len(set(phones)) == len(phones)
    assert [p.index for p in world.people] == list(range(len(world.people)))


def test_invoices_and_charges_spread_over_months() -> None:
    world = World(100, seed=4)
    created = [i.data["created"] for i in world.stripe["invoices"].items]
    assert max(created) - min(created) > 120 * 86400
    assert len(world.stripe["charges"]) == len(world.stripe["invoices"])
    assert {c.data["status"] for c in world.stripe["charges"].items} == {"succeeded", "failed"}


def test_tick_changes_plans_and_opts_out() -> None:
    world = World(300, seed=8)
    report = world.tick(10)
    changes = report.changes
    assert changes["stripe.subscriptions.upgraded"] + changes.get("stripe.subscriptions.downgraded", 0) > 0
    assert changes["stripe.subscriptions.canceled"] > 0
    assert changes["hubspot.contacts.opted_out"] > 0
    assert changes["people.created"] == 30
    assert changes["segmentio.product_events.created"] > 0
    assert world.now == 1_793_491_200 + 10 * 86400
    kinds = {n.provider for n in report.notifications}
    assert kinds == {"stripe", "hubspot", "typeform"}


def test_a_recent_sandbox_starts_a_week_before_the_real_day_at_midnight() -> None:
    now = 1_796_204_730  # 2026-12-02T09:45:30Z
    start = start_before(now)
    assert start == 1_795_564_800  # 2026-11-25T00:00:00Z
    world = World(20, seed=1, start=start)
    world.tick(7)
    # A week of ticks reaches today's midnight and is still not after the real clock.
    assert world.now == 1_796_169_600 <= now
