"""Two consent records of one channel at the same moment: the one that is not an opt-in is in force."""

from __future__ import annotations

from sqlalchemy import Engine, select

from sync.consent.records import in_force, latest_statuses
from sync.privacy import contact_export
from sync.segments import RuleCompiler, SegmentConfig, evaluate_segments, load_catalog
from sync.segments.explain import Explainer, load_contact
from sync.store.tables import contacts, memberships
from tests.segments.conftest import NOW, Seeder
from webhooks.eligibility import consenting


def _tied(engine: Engine) -> tuple[int, int]:
    """A contact whose opt-in was stored after an opt-out of the same moment, and one opted in only."""
    with engine.begin() as conn:
        seeder = Seeder(conn)
        tied, plain = seeder.contact(), seeder.contact()
        seeder.consent(tied, "sms", "opted_out")
        seeder.consent(tied, "sms", "opted_in")  # arrives last, with the same time
        seeder.consent(plain, "sms", "opted_in")
    return tied, plain


def test_every_reader_of_consent_keeps_the_opt_out_of_a_tie(engine: Engine) -> None:
    tied, plain = _tied(engine)
    segment = SegmentConfig.model_validate({"name": "SMS", "all": [{"consent": "sms"}]})
    with engine.begin() as conn:
        report = evaluate_segments(conn, {"sms_ok": segment}, now=NOW)
        sid = next(r.segment_id for r in report.segments if r.key == "sms_ok")
        members = set(
            conn.execute(select(memberships.c.contact_id).where(memberships.c.segment_id == sid)).scalars()
        )
        assert members == {plain}
        catalog, dialect = load_catalog(conn), conn.dialect.name
        for correlated in (False, True):
            compiler = RuleCompiler(catalog, now=NOW, dialect=dialect, correlated=correlated)
            test = compiler.consented("sms")
            found = set(
                conn.execute(select(contacts.c.id).select_from(compiler.source()).where(test)).scalars()
            )
            assert found == {plain}, f"correlated={correlated}"
        assert consenting(conn, [tied, plain], "sms") == {plain}
        held = in_force(conn, tied, "sms")
        assert held is not None and held.status == "opted_out"
        assert latest_statuses(conn, [tied, plain]) == {
            (tied, "sms"): "opted_out",
            (plain, "sms"): "opted_in",
        }
        data = load_contact(conn, tied)
        assert data is not None
        assert not Explainer({"sms_ok": segment}, data, now=NOW).segment("sms_ok").result
        exported = contact_export(conn, tied)
        assert (
            exported is not None and exported["consent"][-1]["status"] == "opted_out"
        )  # the last is in force
