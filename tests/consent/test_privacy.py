"""Export holds everything about a person; erase leaves nothing personal in any table but the hashes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import JSON, Engine, String, Text, event, func, insert, select

from sync.consent import identity_hash
from sync.privacy import contact_export, erase_contact, find_person
from sync.store import create_store_engine, upgrade, write_transaction
from sync.store.checkpoint import truncate_wal
from sync.store.tables import (
    contact_identities,
    erasure_log,
    hubspot_push_state,
    merge_log,
    metadata,
    quarantine,
    records,
    suppressions,
    sync_runs,
)
from tests.consent.conftest import (
    NOW,
    dispatch,
    evaluate,
    hubspot_contact,
    members,
    merged_jane,
    page_store,
    store_page,
    stripe_customer,
    typeform_response,
)

EMAIL, PHONE_DIGITS, NAME = "jane.doe@example.com", "4155552671", "jane doe"
LATER = NOW + timedelta(hours=1)


def _merged_jane(engine: Engine) -> int:
    """Jane known first by phone (Stripe) and by e-mail (HubSpot), then merged by her form answer."""
    store = page_store()
    store_page(engine, store, stripe_customer("cus_1", email="", phone="(415) 555-2671"))
    store_page(engine, store, hubspot_contact("501", email="Jane.Doe@Example.com", optout="false"))
    store_page(engine, store, typeform_response("t1", email=EMAIL, phone="+1 415 555 2671", consent=True))
    with write_transaction(engine) as conn:
        evaluate(conn, now=NOW, run_id=None, contact_ids=None)
        assert conn.execute(select(func.count()).select_from(merge_log)).scalar_one() == 1
        found = find_person(conn, "JANE.DOE@example.com")
    assert found is not None
    dispatch(engine)
    return found


def _mentions(engine: Engine) -> list[str]:
    """Every table.column holding the e-mail, the phone's digits or the name, in any case."""
    hits = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for column in table.columns:
                if not isinstance(column.type, String | Text | JSON) and "JSON" not in repr(column.type):
                    continue
                for value in conn.execute(select(column).where(column.is_not(None))).scalars():
                    text = (json.dumps(value) if not isinstance(value, str) else value).lower()
                    digits = "".join(ch for ch in text if ch.isdigit())
                    if EMAIL in text or NAME in text or PHONE_DIGITS in digits:
                        hits.append(f"{table.name}.{column.name}")
    return hits


def test_export_holds_identities_fields_consent_and_segments(engine: Engine) -> None:
    jane = _merged_jane(engine)
    with engine.connect() as conn:
        data = contact_export(conn, jane)
        assert find_person(conn, "(415) 555-2671") == jane
    assert {(i["kind"], i["value"]) for i in data["identities"]} >= {
        ("email", EMAIL),
        ("phone", "+14155552671"),
    }
    assert [(c["channel"], c["status"], c["source"]) for c in data["consent"]] == [
        ("sms", "opted_in", "typeform")
    ]
    assert data["consent"][0]["proof"]["record_id"] == "t1"
    assert {m["segment"] for m in data["memberships"]} == {"sms_offers", "everyone"}
    assert {r["source"] for r in data["records"]} == {"stripe", "hubspot", "typeform"}
    assert data["merges"] and data["deliveries"]
    assert "consent_confirmed_at" in data["fields"]
    json.dumps(data)


def test_erase_leaves_nothing_personal_in_any_table(engine: Engine) -> None:
    jane = _merged_jane(engine)
    assert _mentions(engine)  # the scan does find her before
    with write_transaction(engine) as conn:
        counts = erase_contact(conn, jane, now=NOW)
    assert counts["contacts"] == 1 and counts["records"] == 3 and counts["consent_records"] == 1
    assert _mentions(engine) == []
    with engine.connect() as conn:
        hashes = set(conn.execute(select(suppressions.c.value_hash)).scalars())
        assert hashes == {identity_hash(EMAIL), identity_hash("+14155552671")}
        logs = list(conn.execute(select(erasure_log).order_by(erasure_log.c.id)).mappings())
    # Her own row with the counts, and one for the contact merged into her: both numbers stay taken.
    assert [log["contact_id"] for log in logs] == [jane, jane + 1]
    assert {log["subject_hash"] for log in logs} == {identity_hash(EMAIL)}
    assert logs[1]["counts"] == {"merged_into": jane}


def test_erase_and_export_find_unlinked_payloads_however_they_write_the_person(engine: Engine) -> None:
    jane = _merged_jane(engine)
    accented = "jané@example.com"
    with write_transaction(engine) as conn:
        for kind, value in (("email", accented), ("stripe_customer", "cus_NffrFeUfNV2Hib")):
            conn.execute(
                insert(contact_identities).values(
                    contact_id=jane, kind=kind, value=value, source="test", first_seen_at=NOW
                )
            )
        quarantined = [
            {"phone": "(415) 555-2671", "name": "Jane Doe"},  # the number as people write it
            {"customer": "cus_NffrFeUfNV2Hib", "note": "no identity"},  # her Stripe id
            {"phone": "(212) 555-0000"},  # someone else
        ]
        conn.execute(
            insert(quarantine),
            [
                {"source": "stripe", "stream": "charges", "reason": "test", "payload": p, "created_at": NOW}
                for p in quarantined
            ],
        )
        conn.execute(
            insert(records).values(
                source="segmentio",
                stream="users",
                external_id="u9",
                updated_at=NOW,
                deleted=False,
                payload={"traits": {"email": accented}},
                stored_at=NOW,
            )
        )
        conn.execute(insert(hubspot_push_state).values(hubspot_id="501", digest="d", pushed_at=NOW))
        warned = {"widenings": ["phone_note: '+1 (415) 555-2671' does not fit, kept as text", "all fine"]}
        run_id = conn.execute(
            insert(sync_runs)
            .values(
                trigger="manual",
                status="failed",
                started_at=NOW,
                stats=warned,
                error="bad row Jane.Doe@Example.com",
            )
            .returning(sync_runs.c.id)
        ).scalar_one()
        exported = contact_export(conn, jane)
        assert [r["external_id"] for r in exported["unlinked_records"]] == ["u9"]
        assert sorted(json.dumps(q["payload"], sort_keys=True) for q in exported["quarantine"]) == sorted(
            json.dumps(p, sort_keys=True) for p in quarantined[:2]
        )
        counts = erase_contact(conn, jane, now=NOW)
    assert (counts["quarantine"], counts["hubspot_push_state"], counts["sync_runs_scrubbed"]) == (2, 1, 1)
    assert _mentions(engine) == []
    with engine.connect() as conn:
        assert conn.execute(select(quarantine.c.payload)).scalars().all() == [quarantined[2]]
        assert conn.execute(select(func.count()).select_from(hubspot_push_state)).scalar_one() == 0
        assert conn.execute(select(func.count()).where(records.c.external_id == "u9")).scalar_one() == 0
        scrubbed = conn.execute(
            select(sync_runs.c.stats, sync_runs.c.error).where(sync_runs.c.id == run_id)
        ).one()
    assert scrubbed.stats == {"widenings": ["phone_note: '[erased]' does not fit, kept as text", "all fine"]}
    assert scrubbed.error == "bad row [erased]"


def test_no_number_an_erased_person_had_is_given_to_someone_new(engine: Engine) -> None:
    jane = _merged_jane(engine)  # contacts 1 (Stripe) and 2 (HubSpot), merged into 1
    with write_transaction(engine) as conn:
        erase_contact(conn, jane, now=NOW)
    store_page(engine, page_store(), stripe_customer("cus_2", email="bob@example.com", phone=""), now=LATER)
    with engine.connect() as conn:
        bob = find_person(conn, "bob@example.com")
    assert bob == jane + 2  # not 2, which senders' feedback knew as Jane's HubSpot contact


def test_erase_zeroes_the_bytes_in_the_sqlite_file_on_builds_that_keep_them(tmp_path: Path) -> None:
    """With SQLite's secure_delete off, as many builds have it, deleting only unlinks the rows."""
    path = tmp_path / "crmhub.db"
    engine = create_store_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", lambda dbapi, _: dbapi.execute("PRAGMA secure_delete=OFF"))
    upgrade(engine)
    jane = _merged_jane(engine)
    with write_transaction(engine) as conn:
        erase_contact(conn, jane, now=NOW)
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar_one() == 0  # as it was
    with engine.connect() as conn:
        assert truncate_wal(conn)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("crmhub.db")]
    held = b"".join(p.read_bytes() for p in files).lower()
    assert len(held) > 100_000 and held.count(b"jane") == held.count(b"4155552671") == 0
    engine.dispose()


def test_a_reimport_after_erase_is_a_new_contact_kept_out(engine: Engine) -> None:
    jane = _merged_jane(engine)
    with write_transaction(engine) as conn:
        erase_contact(conn, jane, now=NOW)
    store = page_store()
    # The old form answer (consent yes) is pulled again, with a new Stripe id, other case and format.
    store_page(
        engine,
        store,
        typeform_response("t1", email="Jane.Doe@EXAMPLE.com", phone="415-555-2671", consent=True),
        now=LATER,
    )
    store_page(
        engine,
        store,
        stripe_customer("cus_9", email="JANE.DOE@example.com", phone="+1 (415) 555 2671"),
        now=LATER,
    )
    with write_transaction(engine) as conn:
        evaluate(conn, now=LATER, run_id=None, contact_ids=None)
        again = find_person(conn, EMAIL)
        assert again is not None and again != jane
        assert members(conn, "sms_offers") == set()
        assert again in members(conn, "everyone")
        consent = contact_export(conn, again)["consent"]
    assert {(c["channel"], c["status"]) for c in consent if c["source"] == "suppression"} == {
        ("email", "opted_out"),
        ("sms", "opted_out"),
    }


def test_find_person_follows_a_merge_and_finds_nobody_for_what_no_contact_can_be(engine: Engine) -> None:
    kept, merged = merged_jane(engine)
    with engine.connect() as conn:
        assert find_person(conn, f" {merged} ") == kept
        assert find_person(conn, "415-555-2671") == find_person(conn, "jane.doe@EXAMPLE.com") == kept
        # Digits alone, as SMS tools show numbers: no contact has that id, so it is the phone.
        assert find_person(conn, "4155552671") == find_person(conn, "14155552671") == kept
        # Beyond 64 bits a driver refuses to bind the number; PostgreSQL text cannot hold NUL.
        for nobody in (str(2**63), "9" * 40, "jane\x00@example.com", "", "nobody"):
            assert find_person(conn, nobody) is None, nobody
