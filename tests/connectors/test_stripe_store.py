"""Stripe pulls stored by the sync engine: a re-list ends with Stripe's deletions in the store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from connectors import ConnectorsConfig, Source, build_source
from connectors.config import StripeConfig
from field_mapping.config import FieldMappingConfig
from field_mapping.mapper import Mapper
from sync.engine import RunReport, SyncEngine
from sync.ingest import PageStore
from sync.store.tables import quarantine, records
from tests.connectors.fakes import NOW, NOW_TS, STRIPE_URL, FakeSleep, FakeStripe

DAY = 86_400


def _source(fake: FakeStripe) -> Source:
    config = ConnectorsConfig(stripe=StripeConfig(enabled=True, base_url=STRIPE_URL, page_size=3))
    sleep = FakeSleep()
    return build_source(
        "stripe", config, "sk_test_1", fake.client(fake.router()), sleep=sleep, clock=sleep.clock
    )


def _sync(engine: Engine, fake: FakeStripe, now: datetime, *, full: bool = False) -> RunReport:
    report = SyncEngine(engine, PageStore(Mapper(FieldMappingConfig()))).run(
        [_source(fake)], now=now, full=full, streams=["stripe.customers"]
    )
    assert report.status == "succeeded", [s.error for s in report.streams]
    return report


def _deleted(engine: Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(records.c.external_id, records.c.deleted).where(records.c.stream == "customers")
        )
        return {external_id: deleted for external_id, deleted in rows}


def _customer(n: int, created: int) -> dict[str, object]:
    return {"id": f"cus_{n:03d}", "object": "customer", "created": created, "email": f"c{n}@x.io"}


def _delete(fake: FakeStripe, customer_id: str, at: int) -> None:
    """As Stripe does: the customer leaves the list and a `customer.deleted` event is kept 30 days."""
    fake.objects["customers"] = [c for c in fake.objects["customers"] if c["id"] != customer_id]
    fake.event("customer.deleted", {"id": customer_id, "object": "customer", "deleted": True}, at)


@pytest.mark.parametrize(("first_sync_days_ago", "full"), [(45, False), (12, True)], ids=["fallback", "full"])
def test_a_customer_deleted_since_the_last_sync_ends_deleted_after_a_re_list(
    engine: Engine, first_sync_days_ago: int, full: bool
) -> None:
    fake = FakeStripe()
    for n in range(4):
        fake.add("customers", _customer(n, NOW_TS - 60 * DAY + n))
    _sync(engine, fake, NOW - timedelta(days=first_sync_days_ago))
    assert _deleted(engine) == dict.fromkeys(["cus_000", "cus_001", "cus_002", "cus_003"], False)
    _delete(fake, "cus_002", NOW_TS - 10 * DAY)
    # 45 days on, the events cursor is past Stripe's 30 days and the stream re-lists; or --full does.
    report = _sync(engine, fake, NOW, full=full)
    assert report.streams[0].full
    assert _deleted(engine) == {"cus_000": False, "cus_001": False, "cus_002": True, "cus_003": False}


def test_a_deletion_of_a_customer_never_stored_leaves_only_its_tombstone(engine: Engine) -> None:
    fake = FakeStripe()
    fake.add("customers", _customer(0, NOW_TS - 60 * DAY))
    # Created and deleted between two syncs: no list ever showed it.
    fake.event("customer.created", _customer(7, NOW_TS - 3 * DAY), NOW_TS - 3 * DAY)
    _delete(fake, "cus_007", NOW_TS - 2 * DAY)
    _sync(engine, fake, NOW)
    assert _deleted(engine) == {"cus_000": False, "cus_007": True}
    with engine.connect() as conn:
        linked = conn.execute(select(records.c.contact_id).where(records.c.external_id == "cus_007")).scalar()
        assert linked is None
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 0
