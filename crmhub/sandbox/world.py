"""The sandbox's state: seeded data for every source, its clock, and `tick` that moves both forward."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from crmhub.sandbox.hubspot_store import HubSpotStore, lifecycle_stages
from crmhub.sandbox.people import Person, generate_people, messy_email
from crmhub.sandbox.stripe_store import EVENT_RETENTION_SECONDS, StripeObject, StripeStore, plan_of
from crmhub.sandbox.typeform_store import FORM_ID, TypeformStore, build_form, iso_seconds

# The sandbox clock starts here (2026-11-01T00:00:00Z) by default, so that data is the same whenever
# it runs; a sandbox that crmhub syncs on the real clock starts at `start_before(now)` instead.
EPOCH = 1_793_491_200
DAY = 86_400
# How far before the real clock such a sandbox starts: `tick` moves its clock a day at a time, and
# a week of ticks stays in the past, as a real provider's data always is.
RECENT_DAYS = 7
# Of those, the days `crmhub sandbox serve` lives through before it answers: a first sync on the
# real clock finds the last days' payments, failures and answers ("paid in the last 7 days" has
# members), and three days of `tick` are left before the sandbox's clock passes today's.
LIVED_DAYS = 4


def start_before(now: float) -> int:
    """A start `RECENT_DAYS` before the UTC day of `now` (unix seconds): a provider's clock is today.

    crmhub reads the real clock, and Stripe keeps events for 30 days; against a sandbox whose clock
    stood at EPOCH, every sync from 2026-11-28 on found its events cursor too old and re-listed
    everything, and time windows ("paid in the last 7 days") held nobody.
    """
    return int(now) // DAY * DAY - RECENT_DAYS * DAY


SUBSCRIPTION_STATUSES = (
    "active",
    "trialing",
    "past_due",
    "canceled",
    "unpaid",
    "incomplete",
    "incomplete_expired",
    "paused",
)
_STATUS_WEIGHTS = (50, 10, 8, 12, 4, 4, 3, 4)
_PLANS = (("Basic", 900, "basic"), ("Pro", 2900, "pro"), ("Enterprise", 9900, "enterprise"))
_INVOICE_HISTORY_MONTHS = 6
# Stripe sends `invoice.upcoming` this many days before a subscription invoices (an account setting).
UPCOMING_DAYS = 3
_PRODUCT_EVENTS = ("Logged In", "Feature Used", "Report Exported", "Order Completed", "Invite Sent")


@dataclass
class Notification:
    """A change a provider would announce by webhook: which provider and the payload it sends."""

    provider: str
    payload: Any


@dataclass
class TickReport:
    """What one `tick` changed."""

    days: int
    now: int
    changes: dict[str, int] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        """Add `n` to the tally of `what`."""
        self.changes[what] = self.changes.get(what, 0) + n

    def summary(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"days": self.days, "now": self.now, "changes": dict(sorted(self.changes.items()))}


class World:
    """Everything the look-alikes serve; deterministic for `(people, seed, start)`."""

    def __init__(self, people: int = 200, seed: int = 0, start: int = EPOCH) -> None:
        self.seed = seed
        self.now = start
        self.lock = threading.RLock()
        self.rng = random.Random(f"world:{seed}")
        self.people = generate_people(people, seed, start)
        self.stripe = StripeStore(seed)
        self.hubspot = HubSpotStore()
        self.typeform = TypeformStore(seed)
        self.product_events: list[dict[str, Any]] = []
        self.segmentio_received: list[dict[str, Any]] = []
        self.customer_of: dict[int, str] = {}
        self.contact_of: dict[int, int] = {}
        self.prices: list[StripeObject] = []
        self._generate()

    # -- generation ---------------------------------------------------------------------------------

    def _generate(self) -> None:
        start = self.now - 500 * DAY
        for name, amount, key in _PLANS:
            self.prices.append(self.stripe.new_price(self.stripe.new_product(name, start), amount, key))
        self.typeform.add_form(build_form(start))
        for company in sorted({p.company for p in self.people}):
            domain = f"{company.lower()}.example"
            self.hubspot.new_object("companies", {"name": company, "domain": domain}, start * 1000)
        ordered = sorted(self.people, key=lambda p: (p.created, p.index))
        # The first subscribers get one of each status, so even a tiny sandbox shows them all.
        forced = iter(SUBSCRIPTION_STATUSES)
        for person in ordered:
            self._add_person(person, forced_status=next(forced, None) if person.in_stripe else None)
        self.typeform.responses[FORM_ID].sort(key=lambda r: (r.submitted_at or r.landed_at, r.token))
        self.product_events.sort(key=lambda e: (e["timestamp"], e["messageId"]))
        self.stripe.serialize_all()

    def _add_person(
        self, person: Person, forced_status: str | None = None, report: TickReport | None = None
    ) -> None:
        rng = self.rng
        if person.in_stripe:
            customer = self.stripe.new_customer(person, person.created)
            self.customer_of[person.index] = customer.data["id"]
            self._event("customer.created", customer.data, person.created, report)
            # Most customers subscribe; newcomers during a tick start on a trial or straight away.
            if forced_status or rng.random() < 0.85:
                if forced_status is not None:
                    status = forced_status
                elif report is not None:
                    status = "trialing" if rng.random() < 0.5 else "active"
                else:
                    status = rng.choices(SUBSCRIPTION_STATUSES, weights=_STATUS_WEIGHTS)[0]
                self._subscribe(customer, status, person.created + 60, report)
        if person.in_hubspot:
            self._add_contact(person, report)
        if person.in_typeform and report is None:
            for _ in range(1 + (rng.random() < 0.3)):
                when = rng.randrange(person.created, self.now)
                self.typeform.new_response(FORM_ID, person, when)
        if person.in_segmentio:
            self._product_event(person, "identify", person.created)
            for _ in range(rng.randrange(1, 6)):
                self._product_event(person, "track", rng.randrange(person.created, self.now))

    def _add_contact(self, person: Person, report: TickReport | None) -> None:
        rng = self.rng
        stage = rng.choice(lifecycle_stages()[:4])
        if person.in_stripe:
            stage = "customer"
        props: dict[str, str | None] = {
            "email": person.variants.get("hubspot.email", person.email),
            "firstname": person.first,
            "lastname": person.last,
            "phone": person.variants.get("hubspot.phone"),
            "company": person.company,
            "lifecyclestage": stage,
            "hs_email_optout": "true" if rng.random() < 0.05 else "false",
            "user_id": person.user_id,
        }
        contact = self.hubspot.new_object("contacts", props, person.created * 1000 + rng.randrange(1000))
        self.contact_of[person.index] = contact.id
        if rng.random() < 0.2:
            deal = {
                "dealname": f"{person.company} - {person.last}",
                "amount": str(rng.choice((1200, 3500, 9900))),
                "dealstage": rng.choice(
                    ("appointmentscheduled", "qualifiedtobuy", "closedwon", "closedlost")
                ),
                "pipeline": "default",
                "closedate": None,
            }
            self.hubspot.new_object("deals", deal, contact.created_ms + DAY * 1000)
        if report is not None:
            report.count("hubspot.contacts.created")
            report.notifications.append(
                Notification("hubspot", self._hubspot_event(contact.id, "contact.creation"))
            )

    def _subscribe(
        self, customer: StripeObject, status: str, created: int, report: TickReport | None
    ) -> None:
        price = self.rng.choice(self.prices)
        sub = self.stripe.new_subscription(customer, price, status, created, self.now)
        self._event("customer.subscription.created", sub.data, created, report)
        if status in ("trialing", "incomplete", "incomplete_expired"):
            return
        months = min((self.now - created) // (30 * DAY), _INVOICE_HISTORY_MONTHS)
        failing = status in ("past_due", "unpaid")
        for month in range(months, -1, -1):
            when = self.now - month * 30 * DAY - self.rng.randrange(DAY)
            if when < created:
                continue
            # A renewal is announced; the first invoice, days after subscribing, may not be.
            if when - UPCOMING_DAYS * DAY >= created:
                self._announce(sub, when, report)
            self._invoice(sub, when, paid=not (failing and month == 0), report=report)

    def _announce(self, sub: StripeObject, due: int, report: TickReport | None) -> None:
        """The `invoice.upcoming` of the invoice `sub` makes at `due`, UPCOMING_DAYS before it."""
        at = due - UPCOMING_DAYS * DAY
        # Checked here too, before building the preview: most generated renewals are months old.
        if at >= self.now - EVENT_RETENTION_SECONDS or report is not None:
            self._event("invoice.upcoming", self.stripe.upcoming_invoice(sub, due), at, report)

    def _announce_renewal(self, sub: StripeObject, report: TickReport) -> None:
        """On the day an active or trialing `sub` comes within UPCOMING_DAYS of invoicing, announce it."""
        data = sub.data
        if data["status"] == "active":
            due = data["items"]["data"][0]["current_period_end"]
        elif data["status"] == "trialing":
            due = data["trial_end"]
        else:
            return
        # A tick moves the clock a day at a time, so exactly one day sees each announcement.
        if due is not None and self.now - DAY < due - UPCOMING_DAYS * DAY <= self.now:
            self._announce(sub, due, report)

    def _invoice(self, sub: StripeObject, when: int, paid: bool, report: TickReport | None) -> None:
        # The charge follows its invoice by a minute; neither may be dated after the sandbox clock.
        when = min(when, self.now - 120)
        invoice = self.stripe.new_invoice(sub, when, paid)
        sub.data["latest_invoice"] = invoice.data["id"]
        sub.touch()
        charge = self.stripe.new_charge(invoice, succeeded=paid)
        self._event("invoice.paid" if paid else "invoice.payment_failed", invoice.data, when, report)
        self._event("charge.succeeded" if paid else "charge.failed", charge.data, when + 60, report)

    def _event(
        self,
        kind: str,
        obj: dict[str, Any],
        when: int,
        report: TickReport | None,
        previous: dict[str, Any] | None = None,
    ) -> None:
        # Events older than Stripe's retention are never listed, so generating them would only cost memory.
        if when < self.now - EVENT_RETENTION_SECONDS and report is None:
            return
        event = self.stripe.new_event(kind, obj, when, previous)
        if report is not None:
            report.count(f"stripe.{kind}")
            report.notifications.append(Notification("stripe", event.data))

    def _product_event(self, person: Person, kind: str, when: int) -> None:
        message: dict[str, Any] = {
            "type": kind,
            "userId": person.user_id,
            "messageId": f"sbx-{self.seed}-{len(self.product_events):08d}",
            "timestamp": iso_seconds(when),
        }
        if kind == "identify":
            message["traits"] = {
                "email": messy_email(self.rng, person.email),
                "firstName": person.first,
                "lastName": person.last,
                "phone": person.variants.get("hubspot.phone"),
            }
        else:
            name = self.rng.choice(_PRODUCT_EVENTS)
            message["event"] = name
            props: dict[str, Any] = {"source": "sandbox"}
            if name == "Order Completed":
                props |= {"revenue": self.rng.choice((19.0, 49.5, 120.0)), "currency": "USD"}
            message["properties"] = props
        self.product_events.append(message)

    def _hubspot_event(
        self, object_id: int, kind: str, prop: str | None = None, value: str | None = None
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "eventId": self.rng.randrange(10**9),
            "subscriptionId": 1001 if kind == "contact.creation" else 1002,
            "portalId": self.hubspot.portal_id,
            "appId": 4242,
            "occurredAt": self.now * 1000,
            "subscriptionType": kind,
            "attemptNumber": 0,
            "objectId": object_id,
            "changeSource": "CRM",
        }
        if prop is not None:
            event |= {"propertyName": prop, "propertyValue": value}
        return event

    # -- time ---------------------------------------------------------------------------------------

    def tick(self, days: int = 1) -> TickReport:
        """Advance the clock by `days`, one day at a time, mutating data as customers would."""
        if days < 1:
            raise ValueError("days must be at least 1")
        with self.lock:
            report = TickReport(days=days, now=self.now)
            for _ in range(days):
                self.now += DAY
                self._day(report)
            self.product_events.sort(key=lambda e: (e["timestamp"], e["messageId"]))
            report.now = self.now
            return report

    def _day(self, report: TickReport) -> None:
        rng = self.rng
        subs = list(self.stripe["subscriptions"].items)
        for sub in subs:
            self._advance_subscription(sub, report)
        for _ in range(max(1, len(self.people) // 100)):
            self._new_person(report)
        contacts = list(self.hubspot.objects["contacts"].values())
        for contact in rng.sample(contacts, min(len(contacts), max(1, len(contacts) // 30))):
            stage = rng.choice(lifecycle_stages())
            self._hubspot_change(contact.id, {"lifecyclestage": stage}, report)
        for contact in rng.sample(contacts, min(len(contacts), max(1, len(contacts) // 100))):
            self._hubspot_change(contact.id, {"hs_email_optout": "true"}, report)
            report.count("hubspot.contacts.opted_out")
        respondents = [p for p in self.people if p.in_typeform]
        for person in rng.sample(respondents, min(len(respondents), max(1, len(respondents) // 50))):
            response = self.typeform.new_response(FORM_ID, person, self.now - rng.randrange(DAY))
            report.count("typeform.responses.created")
            if response.submitted_at is not None:
                report.notifications.append(Notification("typeform", self._typeform_payload(response.body)))
        users = [p for p in self.people if p.in_segmentio]
        for person in rng.sample(users, min(len(users), max(1, len(users) // 20))):
            self._product_event(person, "track", self.now - rng.randrange(1, DAY))
            report.count("segmentio.product_events.created")
        if rng.random() < 0.3:
            self._delete_a_customer(report)

    def _advance_subscription(self, sub: StripeObject, report: TickReport) -> None:
        self._announce_renewal(sub, report)
        data, rng = sub.data, self.rng
        status = data["status"]
        previous: dict[str, Any] = {}
        if status == "trialing" and data["trial_end"] is not None and data["trial_end"] <= self.now:
            previous = {"status": status}
            data["status"] = "active" if rng.random() < 0.7 else "past_due"
            self._invoice(sub, self.now, paid=data["status"] == "active", report=report)
        elif status == "active":
            roll = rng.random()
            if roll < 0.01:
                previous = {"status": status, "canceled_at": None, "ended_at": None}
                data |= {"status": "canceled", "canceled_at": self.now, "ended_at": self.now}
                data["cancellation_details"] = {
                    "comment": None,
                    "feedback": "too_expensive",
                    "reason": "cancellation_requested",
                }
                report.count("stripe.subscriptions.canceled")
                self._event("customer.subscription.deleted", data, self.now, report, previous)
                sub.touch()
                return
            if roll < 0.03:
                self._change_price(sub, report)
                return
            item = data["items"]["data"][0]
            if item["current_period_end"] <= self.now:
                previous = {"items": {"data": [{"current_period_start": item["current_period_start"]}]}}
                item["current_period_start"] = item["current_period_end"]
                item["current_period_end"] += 30 * DAY
                self._invoice(sub, self.now, paid=rng.random() >= 0.05, report=report)
        elif status == "past_due" and rng.random() < 0.2:
            previous = {"status": status}
            data["status"] = "active" if rng.random() < 0.6 else "unpaid"
        if previous:
            sub.touch()
            self._event("customer.subscription.updated", data, self.now, report, previous)

    def _change_price(self, sub: StripeObject, report: TickReport) -> None:
        item = sub.data["items"]["data"][0]
        old = item["price"]
        ranked = sorted(self.prices, key=lambda p: p.data["unit_amount"])
        position = next(i for i, p in enumerate(ranked) if p.data["id"] == old["id"])
        step = 1 if position < len(ranked) - 1 else -1
        item["price"] = dict(ranked[position + step].data)
        item["plan"] = plan_of(item["price"])
        sub.touch()
        report.count("stripe.subscriptions.upgraded" if step > 0 else "stripe.subscriptions.downgraded")
        previous = {"items": {"data": [{"price": old}]}}
        self._event("customer.subscription.updated", sub.data, self.now, report, previous)

    def _hubspot_change(self, contact_id: int, changes: dict[str, str | None], report: TickReport) -> None:
        contact = self.hubspot.objects["contacts"][contact_id]
        changed = self.hubspot.update(
            "contacts", contact, changes, self.now * 1000 - self.rng.randrange(1, 1000)
        )
        for name, value in changed.items():
            report.count("hubspot.contacts.property_changes")
            report.notifications.append(
                Notification(
                    "hubspot", self._hubspot_event(contact_id, "contact.propertyChange", name, value)
                )
            )

    def _new_person(self, report: TickReport) -> None:
        person = generate_people(1, self.rng.randrange(10**9), self.now, start=len(self.people))[0]
        person.created = self.now - self.rng.randrange(120, DAY)
        self.people.append(person)
        report.count("people.created")
        self._add_person(person, report=report)

    def _delete_a_customer(self, report: TickReport) -> None:
        subs_by_customer: dict[str, list[str]] = {}
        for sub in self.stripe["subscriptions"].items:
            subs_by_customer.setdefault(sub.data["customer"], []).append(sub.data["status"])
        candidates = [
            c
            for c in self.stripe["customers"].items
            if all(s == "canceled" for s in subs_by_customer.get(c.data["id"], []))
        ]
        if not candidates:
            return
        victim = self.rng.choice(candidates).data["id"]
        stub = self.stripe.delete_customer(victim)
        if stub is not None:
            report.count("stripe.customers.deleted")
            self._event("customer.deleted", stub, self.now, report)

    def _typeform_payload(self, body: dict[str, Any]) -> dict[str, Any]:
        form = self.typeform.forms[FORM_ID]
        definition = {"id": form["id"], "title": form["title"], "fields": form["fields"]}
        response = {k: v for k, v in body.items() if k not in ("metadata", "response_type")}
        response |= {
            "form_id": FORM_ID,
            "definition": definition,
            "ending": {"id": "default_tys", "ref": "default_tys"},
        }
        return {"event_id": f"tfe_{body['token']}", "event_type": "form_response", "form_response": response}

    # -- read side ----------------------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Counts of every object kind, per source."""
        with self.lock:
            return {
                "now": self.now,
                "people": len(self.people),
                "stripe": self.stripe.counts(),
                "hubspot": self.hubspot.counts(),
                "typeform": self.typeform.counts(),
                "segmentio": {
                    "product_events": len(self.product_events),
                    "received": len(self.segmentio_received),
                },
            }
