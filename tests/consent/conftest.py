"""A migrated store, consent-requiring segments, the sources' consent fields and a fan-out to endpoints."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import Connection, Engine, func, select

from connectors import Batch, Record
from field_mapping.config import FieldMappingConfig
from field_mapping.mapper import Mapper
from sync.consent import ConsentConfig, ConsentSource, opt_in
from sync.ingest import PageStore
from sync.segments import EvaluationReport, SegmentsConfig, evaluate_segments
from sync.store import write_transaction
from sync.store.tables import (
    consent_records,
    deliveries,
    memberships,
    merge_log,
    outbox,
    segments,
    suppressions,
    transitions,
)
from webhooks import WebhooksConfig
from webhooks.eligibility import NO_ENTRY
from webhooks.fanout import fan_out

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(days=30)

SEGMENTS = TypeAdapter(SegmentsConfig).validate_python(
    {
        "sms_offers": {
            "name": "SMS offers",
            "requires_consent": "sms",
            "all": [{"field": "email", "op": "exists"}],
        },
        "newsletter": {
            "name": "Newsletter",
            "requires_consent": "email",
            "all": [{"field": "email", "op": "exists"}],
        },
        "everyone": {"name": "Everyone", "all": [{"field": "email", "op": "exists"}]},
    }
)
CONSENT = ConsentConfig.model_validate(
    {
        "sources": [
            {
                "source": "hubspot",
                "stream": "contacts",
                "path": "properties.hs_email_optout",
                "channel": "email",
                "opted_out": ["true"],
            },
            {
                "source": "typeform",
                "typeform_ref": "consent",
                "channel": "sms",
                "opted_in": ["true"],
                "opted_out": ["false"],
            },
        ]
    }
)
WEBHOOKS = WebhooksConfig.model_validate(
    {
        "endpoints": {
            "texter": {
                "url": "https://texter.example/hook",
                "secret_envs": ["TEXTER_SECRET"],
                "messaging": True,
                "requires_consent": "sms",
                "segments": ["sms_offers"],
            },
            "mailer": {
                "url": "https://mailer.example/hook",
                "secret_envs": ["MAILER_SECRET"],
                "messaging": True,
                "requires_consent": "email",
                "segments": ["newsletter"],
            },
        }
    }
)
# Channel -> the endpoints that need it, as crmhub builds it from [webhooks].
ENDPOINTS = {"sms": ["texter"], "email": ["mailer"]}


def evaluate(
    conn: Connection, *, now: datetime, run_id: int | None, contact_ids: Collection[int] | None
) -> EvaluationReport:
    """The segments above, evaluated as crmhub's wiring does."""
    return evaluate_segments(conn, SEGMENTS, now=now, run_id=run_id, contact_ids=contact_ids)


def page_store() -> PageStore:
    """The page store a sync uses, with consent sources, evaluation and endpoints."""
    return PageStore(Mapper(FieldMappingConfig()), consent=CONSENT, evaluate=evaluate, endpoints=ENDPOINTS)


def segmentio_page_store(opted_in: Collection[str] = ()) -> PageStore:
    """`page_store()`, also reading an identify's `traits.sms_optout` as an SMS opt-out (or `opted_in`)."""
    rule = ConsentSource(
        source="segmentio", path="traits.sms_optout", channel="sms", opted_out=["true"], opted_in=[*opted_in]
    )
    consent = ConsentConfig(sources=[*CONSENT.sources, rule])
    return PageStore(Mapper(FieldMappingConfig()), consent=consent, evaluate=evaluate, endpoints=ENDPOINTS)


def identify(user_id: str, at: datetime, **traits: Any) -> Record:
    """A Segment.com identify of `user_id` with `traits`, as POST /v1/identify stores it."""
    payload = {"type": "identify", "userId": user_id, "traits": traits, "messageId": f"msg_{at:%H%M%S}"}
    return Record("segmentio", "users", user_id, at, payload)


def merge_in_sms_opt_out(engine: Engine, contact_id: int) -> None:
    """An SMS opt-out held by a contact of its own (a Segment.com user), then merged into `contact_id`.

    The opt-out (at NOW) names only the user id: a new contact holds it. The user's next identify
    (at LATER) gives Jane's e-mail: the two are one person, kept as `contact_id`, the older one.
    """
    store = segmentio_page_store()
    store_page(engine, store, identify("u_000262", NOW, sms_optout=True))
    with engine.connect() as conn:
        assert contact_id in members(conn, "sms_offers"), "the opt-out is not the person's yet"
        assert conn.execute(select(func.count()).select_from(suppressions)).scalar_one() == 0
    store_page(engine, store, identify("u_000262", LATER, email="Jane.Doe@example.com"), now=LATER)
    with engine.connect() as conn:
        assert conn.execute(select(merge_log.c.kept_contact_id)).scalar_one() == contact_id


def store_page(engine: Engine, store: PageStore, *records: Record, now: datetime = NOW) -> None:
    """Store one page of records in its own transaction, as the sync engine does."""
    by_stream = {(r.source, r.stream) for r in records}
    assert len(by_stream) == 1
    source, stream = next(iter(by_stream))
    with write_transaction(engine) as conn:
        store(conn, Batch(source, stream, list(records)), run_id=_run(conn, now), now=now)


def _run(conn: Connection, now: datetime) -> int:
    from sync.runs import start_run

    return start_run(conn, source=None, trigger="manual", now=now)


def typeform_response(
    token: str, *, email: str, phone: str, consent: bool, at: datetime = EARLIER, name: str = "Jane Doe"
) -> Record:
    """A Typeform response with e-mail, phone, name and the yes/no consent question."""

    def answer(ref: str, question: str, kind: str, value: Any) -> dict[str, Any]:
        return {"field": {"id": f"fld_{ref}", "type": question, "ref": ref}, "type": kind, kind: value}

    payload = {
        "token": token,
        "response_id": token,
        "form_id": "crmhubNPS",
        "submitted_at": at.isoformat(),
        "hidden": {},
        "answers": [
            answer("consent", "yes_no", "boolean", consent),
            answer("name", "short_text", "text", name),
            answer("email", "email", "email", email),
            answer("phone", "phone_number", "phone_number", phone),
        ],
    }
    return Record("typeform", "responses", token, at, payload)


def hubspot_contact(hubspot_id: str, *, email: str, optout: str, at: datetime = NOW) -> Record:
    """A HubSpot contact with `hs_email_optout`."""
    props = {"email": email, "firstname": "Jane", "lastname": "Doe", "hs_email_optout": optout}
    payload = {"id": hubspot_id, "properties": props, "updatedAt": at.isoformat()}
    return Record("hubspot", "contacts", hubspot_id, at, payload)


def stripe_customer(customer_id: str, *, email: str, phone: str, at: datetime = NOW) -> Record:
    """A Stripe customer."""
    payload = {"id": customer_id, "object": "customer", "email": email, "phone": phone, "name": "Jane Doe"}
    return Record("stripe", "customers", customer_id, at, payload)


def members(conn: Connection, key: str) -> set[int]:
    """The contact ids in segment `key`."""
    sid = select(segments.c.id).where(segments.c.key == key).scalar_subquery()
    return set(
        conn.execute(select(memberships.c.contact_id).where(memberships.c.segment_id == sid)).scalars()
    )


def left_reasons(conn: Connection, contact_id: int) -> dict[str, str]:
    """segment key -> the reason of the contact's latest `left` transition."""
    rows = conn.execute(
        select(segments.c.key, transitions.c.reason)
        .join(segments, segments.c.id == transitions.c.segment_id)
        .where(transitions.c.contact_id == contact_id, transitions.c.kind == "left")
        .order_by(transitions.c.id)
    )
    return dict(rows.tuples().all())


def delivery_statuses(conn: Connection, contact_id: int) -> dict[tuple[str, str], str]:
    """(endpoint, transition kind) -> the delivery status, for the contact's latest transitions."""
    rows = conn.execute(
        select(deliveries.c.endpoint, transitions.c.kind, deliveries.c.status)
        .join(transitions, transitions.c.id == deliveries.c.transition_id)
        .where(transitions.c.contact_id == contact_id)
        .order_by(deliveries.c.id)
    )
    return {(endpoint, kind): status for endpoint, kind, status in rows}


def delivery_rows(conn: Connection, contact_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    """(endpoint, transition kind) -> the delivery, for the contact's latest transitions."""
    rows = conn.execute(
        select(deliveries, transitions.c.kind)
        .join(transitions, transitions.c.id == deliveries.c.transition_id)
        .where(transitions.c.contact_id == contact_id)
        .order_by(deliveries.c.id)
    )
    return {(row["endpoint"], row["kind"]): dict(row) for row in rows.mappings()}


def dispatch(engine: Engine, now: datetime = NOW) -> None:
    """Turn outbox rows into deliveries, as the delivery worker's dispatcher does."""
    fan_out(engine, WEBHOOKS, now)


LATER = NOW + timedelta(hours=1)


def opted_in_jane(engine: Engine) -> int:
    """Jane, opted in to SMS by a form and to e-mail by an API call, in every segment, not fanned out."""
    store_page(
        engine,
        page_store(),
        typeform_response("t1", email="jane.doe@example.com", phone="+14155552671", consent=True),
    )
    with write_transaction(engine) as conn:
        contact_id = int(conn.execute(select(consent_records.c.contact_id)).scalar_one())
        opt_in(
            conn,
            contact_id=contact_id,
            channel="email",
            source="api",
            proof={"by": "test"},
            now=EARLIER,
            evaluate=evaluate,
        )
    return contact_id


@pytest.fixture
def jane(engine: Engine) -> int:
    """Jane, opted in to SMS by a form and to e-mail by an API call, in every segment, entries pending."""
    contact_id = opted_in_jane(engine)
    dispatch(engine, EARLIER)
    with engine.connect() as conn:
        for key in ("sms_offers", "newsletter", "everyone"):
            assert members(conn, key) == {contact_id}
        assert delivery_statuses(conn, contact_id) == {
            ("texter", "entered"): "pending",
            ("mailer", "entered"): "pending",
        }
    return contact_id


def assert_unsubscribed(engine: Engine, contact_id: int, segment: str, endpoint: str, kept: str) -> None:
    with engine.connect() as conn:
        assert contact_id not in members(conn, segment)
        assert contact_id in members(conn, kept)
        assert left_reasons(conn, contact_id) == {segment: "unsubscribed"}
        left = select(transitions.c.id).where(
            transitions.c.contact_id == contact_id, transitions.c.kind == "left"
        )
        assert (
            conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.transition_id.in_(left))
            ).scalar_one()
            == 1
        )
        assert delivery_statuses(conn, contact_id)[(endpoint, "entered")] == "cancelled"
        assert conn.execute(select(func.count()).select_from(suppressions)).scalar_one() >= 1
    dispatch(engine, NOW)
    with engine.connect() as conn:
        # The entry was cancelled before it went out: the endpoint never heard of the person, so it
        # is not sent their `segment.left` either (test_left_after_a_sent_entry: one that was, is).
        stop = delivery_rows(conn, contact_id)[(endpoint, "left")]
        assert (stop["status"], stop["reason"]) == ("suppressed", NO_ENTRY)


def assert_reimport_stays_out(engine: Engine, contact_id: int, segment: str) -> None:
    store = page_store()
    # A new external id, the e-mail in capitals, the phone formatted differently, a stale form opt-in.
    store_page(
        engine,
        store,
        stripe_customer("cus_new", email="  JANE.DOE@EXAMPLE.COM", phone="(415) 555-2671"),
        now=LATER,
    )
    store_page(
        engine,
        store,
        typeform_response("t1", email="Jane.Doe@example.com", phone="415.555.2671", consent=True),
        now=LATER,
    )
    with write_transaction(engine) as conn:
        evaluate(conn, now=LATER, run_id=None, contact_ids=None)
        assert members(conn, segment) == set()


def merged_jane(engine: Engine) -> tuple[int, int]:
    """Jane known by phone (Stripe) and by e-mail (HubSpot), merged by her form answer: (kept, merged)."""
    store = page_store()
    store_page(engine, store, stripe_customer("cus_1", email="", phone="(415) 555-2671"))
    store_page(engine, store, hubspot_contact("501", email="Jane.Doe@Example.com", optout="false"))
    store_page(
        engine,
        store,
        typeform_response("t1", email="jane.doe@example.com", phone="+1 415 555 2671", consent=True),
    )
    with engine.connect() as conn:
        row = conn.execute(select(merge_log.c.kept_contact_id, merge_log.c.merged_contact_id)).one()
    return int(row[0]), int(row[1])


# The configuration of the commands' tests: the segments and endpoints above, in TOML.
CLI_CONFIG = """
[database]
url = "{url}"

[segments.sms_offers]
name = "SMS offers"
requires_consent = "sms"
all = [{{ field = "email", op = "exists" }}]

[segments.newsletter]
name = "Newsletter"
requires_consent = "email"
all = [{{ field = "email", op = "exists" }}]

[segments.everyone]
name = "Everyone"
all = [{{ field = "email", op = "exists" }}]

[webhooks.endpoints.texter]
url = "https://texter.example/hook"
secret_envs = ["TEXTER_SECRET"]
messaging = true
requires_consent = "sms"
segments = ["sms_offers"]

[webhooks.endpoints.mailer]
url = "https://mailer.example/hook"
secret_envs = ["MAILER_SECRET"]
messaging = true
requires_consent = "email"
segments = ["newsletter"]
"""


def cli_config(tmp_path: Path, engine: Engine) -> Path:
    """A crmhub.toml with the segments and endpoints above, on `engine`'s store."""
    path = tmp_path / "crmhub.toml"
    path.write_text(CLI_CONFIG.format(url=engine.url.render_as_string(hide_password=False)), encoding="utf-8")
    return path
