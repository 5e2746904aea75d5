"""A push past what HubSpot refuses: bad inputs isolated and recorded, runs recorded, cursors safe."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import OperationalError

from connectors.exceptions import PermanentError
from connectors.hubspot.client import PropertyDefinition
from field_mapping.config import HubSpotPushConfig
from field_mapping.types import FieldType
from sync.fields import StoredField, create_field, save_values
from sync.hubspot_push import PushReport, push_to_hubspot
from sync.runs import STILL_STORING_MAX_AGE, finish_run, load_cursor, start_run
from sync.store.tables import contact_identities, contacts, hubspot_push_state, sync_runs

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONFIG = HubSpotPushConfig(push=True)


class _HubSpot:
    """HubSpot as a push meets it: batch/update refused whole (400) for one bad input."""

    def __init__(self) -> None:
        self.props: dict[str, tuple[str, str]] = {}
        self.values: dict[str, dict[str, str]] = {}
        self.sent: list[list[str]] = []  # the ids of each batch/update call
        self.gone: set[str] = set()  # contacts deleted in HubSpot: the 400 names them
        self.refused: set[str] = set()  # contacts whose values HubSpot refuses: the 400 names none
        self.answer: Mapping[str, Any] | None = None  # a canned answer to every batch/update

    def create_property_group(self, object_type: str, body: Mapping[str, Any]) -> bool:
        return True

    def create_properties(self, object_type: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        self.props.update({b["name"]: (b["type"], b["fieldType"]) for b in bodies})
        return [b["name"] for b in bodies]

    def properties(self, object_type: str) -> list[PropertyDefinition]:
        return [PropertyDefinition(name, name, *types) for name, types in self.props.items()]

    def update_property(self, object_type: str, name: str, body: Mapping[str, Any]) -> None:
        raise AssertionError("every property has its field's type")

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        ids = [str(i["id"]) for i in inputs]
        self.sent.append(ids)
        if self.answer is not None:
            return self.answer
        gone = [i for i in ids if i in self.gone]
        if gone:
            return _refusal(f"Could not get some contacts objects: {', '.join(gone)}")
        if any(i in self.refused for i in ids):
            return _refusal("Property values were not valid: 'x' is not a valid number")
        self.values.update({i["id"]: dict(i["properties"]) for i in inputs})
        return {"status": "COMPLETE", "results": [{"id": i} for i in ids]}


def _refusal(message: str) -> dict[str, Any]:
    """What HubSpotApi.batch_update answers for HubSpot's 400."""
    return {"status": "error", "message": message, "category": "VALIDATION_ERROR"}


def _store(engine: Engine, count: int) -> StoredField:
    """`count` contacts, HubSpot ids 1001..., each with a `plan`; the field."""
    ids = range(1, count + 1)
    with engine.begin() as conn:
        rows = [{"id": i, "created_at": T0, "updated_at": T0, "changed_at": T0} for i in ids]
        conn.execute(insert(contacts), rows)
        identities = [
            {
                "contact_id": i,
                "kind": "hubspot_contact",
                "value": _hid(i),
                "source": "hubspot",
                "first_seen_at": T0,
            }
            for i in ids
        ]
        conn.execute(insert(contact_identities), identities)
        plan = create_field(
            conn, "plan", FieldType.STRING, now=T0, label="Plan", origin="rule", source="stripe"
        )
        save_values(conn, [(i, plan, f"plan-{i}", "stripe", T0) for i in ids], fresh=set(ids))
    return plan


def _hid(contact_id: int) -> str:
    return str(1000 + contact_id)


def _change(engine: Engine, plan: StoredField, at: datetime, values: Mapping[int, str] | None = None) -> None:
    """Every contact marked changed at `at` (a re-pull); `values` are new plans for some."""
    with engine.begin() as conn:
        conn.execute(update(contacts).values(changed_at=at))
        if values:
            save_values(conn, [(i, plan, v, "stripe", at) for i, v in values.items()])


def _state(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(hubspot_push_state.c.hubspot_id, hubspot_push_state.c.digest))
        return {hubspot_id: digest for hubspot_id, digest in rows}


def _push_runs(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(sync_runs).where(sync_runs.c.trigger == "push").order_by(sync_runs.c.id)
        return [dict(row) for row in conn.execute(query).mappings()]


def test_a_value_hubspot_refuses_is_found_by_halving_and_the_rest_are_written(engine: Engine) -> None:
    plan = _store(engine, 100)
    hubspot = _HubSpot()
    hubspot.refused = {_hid(3), _hid(80)}
    report = push_to_hubspot(engine, hubspot, CONFIG, now=T0)
    assert set(hubspot.values) == {_hid(i) for i in range(1, 101)} - hubspot.refused
    assert (report.contacts_updated, report.contacts_refused) == (98, 2)
    assert set(report.refused_examples) == hubspot.refused
    assert all("not a valid number" in reason for reason in report.refused_examples.values())
    # Halving down to the 2 bad ones: about 2 * log2(100) calls per bad input, not one per input.
    assert len(hubspot.sent) <= 2 * 2 * 7 and max(len(ids) for ids in hubspot.sent) == 100
    assert report.calls == 2 + len(hubspot.sent) + 1  # group, properties listed, plan created, writes
    [run] = _push_runs(engine)
    assert run["status"] == "partial" and run["stats"]["contacts_refused"] == 2
    assert _hid(3) in run["error"] and "not a valid number" in run["error"]
    assert report.warnings == [run["error"]]

    # Re-read without new values (a re-pull): the refused are not sent again, nor the written.
    hubspot.sent.clear()
    _change(engine, plan, T0 + timedelta(hours=1))
    again = push_to_hubspot(engine, hubspot, CONFIG, now=T0 + timedelta(hours=2))
    assert (hubspot.sent, again.contacts_updated, again.contacts_refused) == ([], 0, 0)
    assert _push_runs(engine)[-1]["status"] == "succeeded"

    # A new value is sent again, and HubSpot takes it once it is good.
    hubspot.refused.discard(_hid(3))
    _change(engine, plan, T0 + timedelta(hours=3), {3: "fixed"})
    fixed = push_to_hubspot(engine, hubspot, CONFIG, now=T0 + timedelta(hours=4))
    assert (hubspot.sent, fixed.contacts_updated) == ([[_hid(3)]], 1)
    assert hubspot.values[_hid(3)] == {"crmhub_plan": "fixed"}


def test_ids_hubspot_names_as_unknown_are_left_out_and_the_rest_sent_again_at_once(engine: Engine) -> None:
    _store(engine, 150)
    hubspot = _HubSpot()
    hubspot.gone = {_hid(2), _hid(40)}  # deleted or merged in HubSpot, both in the first batch
    report = push_to_hubspot(engine, hubspot, CONFIG, now=T0)
    assert (report.contacts_updated, report.contacts_refused) == (148, 2)
    assert [len(ids) for ids in hubspot.sent] == [100, 98, 50]  # contacts after the bad batch too
    assert set(hubspot.values) == {_hid(i) for i in range(1, 151)} - hubspot.gone
    assert report.refused_examples == dict.fromkeys(
        [_hid(2), _hid(40)], f"Could not get some contacts objects: {_hid(2)}, {_hid(40)}"
    )
    state = _state(engine)
    assert len(state) == 150 and state[_hid(2)] != state[_hid(1)]


def test_a_207s_errors_are_not_remembered_as_pushed(engine: Engine) -> None:
    plan = _store(engine, 3)
    hubspot = _HubSpot()
    error = {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted or not exist.",
        "context": {"ids": [_hid(2)]},
    }
    hubspot.answer = {"status": "COMPLETE", "results": [{"id": _hid(1)}, {"id": _hid(3)}], "errors": [error]}
    report = push_to_hubspot(engine, hubspot, CONFIG, now=T0)
    assert (report.contacts_updated, report.contacts_refused) == (2, 1)
    assert report.refused_examples == {_hid(2): error["message"]}
    assert _push_runs(engine)[-1]["status"] == "partial"
    # The refused one is not sent again until its values change; then it is.
    hubspot.answer = None
    hubspot.sent.clear()
    _change(engine, plan, T0 + timedelta(hours=1))
    push_to_hubspot(engine, hubspot, CONFIG, now=T0 + timedelta(hours=2))
    assert hubspot.sent == []
    _change(engine, plan, T0 + timedelta(hours=3), {2: "new"})
    push_to_hubspot(engine, hubspot, CONFIG, now=T0 + timedelta(hours=4))
    assert hubspot.sent == [[_hid(2)]]


def test_a_207_error_naming_no_id_fails_the_inputs_hubspot_gave_no_result_for(engine: Engine) -> None:
    _store(engine, 3)
    hubspot = _HubSpot()
    error = {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid"}
    hubspot.answer = {"status": "COMPLETE", "results": [{"id": _hid(1)}], "errors": [error]}
    report = push_to_hubspot(engine, hubspot, CONFIG, now=T0)
    assert (report.contacts_updated, report.contacts_refused) == (1, 2)
    assert set(report.refused_examples) == {_hid(2), _hid(3)}


def test_a_failed_push_records_a_failed_run_with_its_error_and_keeps_the_cursor(engine: Engine) -> None:
    _store(engine, 2)
    hubspot = _HubSpot()

    def refuse(object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        raise PermanentError("hubspot: contacts batch update: authentication failed (401): check it")

    hubspot.batch_update = refuse  # type: ignore[method-assign]
    with pytest.raises(PermanentError, match="authentication failed"):
        push_to_hubspot(engine, hubspot, CONFIG, now=T0)
    [run] = _push_runs(engine)
    assert (run["status"], run["finished_at"]) == ("failed", T0)
    assert "authentication failed (401)" in run["error"]
    with engine.connect() as conn:
        assert load_cursor(conn, "hubspot", "_push") is None


def test_a_property_deleted_after_the_listing_fails_the_push_and_refuses_no_one(engine: Engine) -> None:
    _store(engine, 4)
    hubspot = _HubSpot()
    # HubSpot's own message embeds its list of errors as JSON, quotes escaped.
    hubspot.answer = _refusal(
        'Property values were not valid: [{"isValid":false,"message":"Property \\"crmhub_plan\\" does '
        'not exist","error":"PROPERTY_DOESNT_EXIST","name":"crmhub_plan"}]'
    )
    with pytest.raises(PermanentError, match=r"property crmhub_plan was deleted .* creates it again"):
        push_to_hubspot(engine, hubspot, CONFIG, now=T0)
    assert len(hubspot.sent) == 1 and _state(engine) == {}
    assert _push_runs(engine)[-1]["status"] == "failed"


def test_a_run_still_storing_keeps_the_cursor_below_its_start(engine: Engine) -> None:
    plan = _store(engine, 2)
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    hubspot = _HubSpot()
    assert isinstance(push_to_hubspot(engine, hubspot, CONFIG, now=T0), PushReport)
    with engine.connect() as conn:
        assert load_cursor(conn, "hubspot", "_push") == T0.isoformat()  # no other run: `now`
    with engine.begin() as conn:
        slow = start_run(conn, source="stripe", trigger="schedule", now=t1)  # A: pulling, stores later
    _change(engine, plan, t2, {1: "from-b"})  # B, started after A, stored contact 1 and pushes
    push_to_hubspot(engine, hubspot, CONFIG, now=t2)
    with engine.connect() as conn:
        assert load_cursor(conn, "hubspot", "_push") == (t1 - timedelta(microseconds=1)).isoformat()
    # A stores contact 2 now, stamped with its own start, then ends.
    with engine.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == 2).values(changed_at=t1))
        save_values(conn, [(2, plan, "from-a", "stripe", t1)])
        finish_run(conn, slow, status="succeeded", stats={}, error=None, now=t2)
    hubspot.sent.clear()
    push_to_hubspot(engine, hubspot, CONFIG, now=t2 + timedelta(hours=1))
    # Contact 1 is read again (changed at t2, above the cursor) but its digest skips it.
    assert hubspot.sent == [[_hid(2)]] and hubspot.values[_hid(2)] == {"crmhub_plan": "from-a"}
    with engine.connect() as conn:
        assert load_cursor(conn, "hubspot", "_push") == (t2 + timedelta(hours=1)).isoformat()


def test_a_run_left_running_for_over_a_day_no_longer_holds_the_cursor_back(engine: Engine) -> None:
    _store(engine, 2)
    with engine.begin() as conn:
        # A sync a killed process (on another host, or before runs recorded their holder) left
        # `running`: nothing closes it, and every push would re-read all changed since its start.
        start_run(
            conn, source="stripe", trigger="schedule", now=T0 - STILL_STORING_MAX_AGE - timedelta(hours=1)
        )
    push_to_hubspot(engine, _HubSpot(), CONFIG, now=T0)
    with engine.connect() as conn:
        assert load_cursor(conn, "hubspot", "_push") == T0.isoformat()
    recent = T0 - STILL_STORING_MAX_AGE + timedelta(hours=1)
    with engine.begin() as conn:
        start_run(conn, source="stripe", trigger="schedule", now=recent)  # within the day: still storing
    push_to_hubspot(engine, _HubSpot(), CONFIG, now=T0)
    with engine.connect() as conn:
        assert load_cursor(conn, "hubspot", "_push") == (recent - timedelta(microseconds=1)).isoformat()


def test_a_push_the_store_failed_records_its_error_without_the_statement(engine: Engine) -> None:
    _store(engine, 2)
    hubspot = _HubSpot()
    locked = OperationalError(
        "INSERT INTO hubspot_push_state (hubspot_id, digest) VALUES (?, ?)",
        ("1001", "someone@example.com"),
        sqlite3.OperationalError("database is locked"),
    )

    def busy(object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        raise locked

    hubspot.batch_update = busy  # type: ignore[method-assign]
    with pytest.raises(OperationalError):
        push_to_hubspot(engine, hubspot, CONFIG, now=T0)
    [run] = _push_runs(engine)
    assert (run["status"], run["error"]) == ("failed", "OperationalError: database is locked")
