"""Built-in fields have types, and rule literals are compared in the form the store holds values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, insert, select
from typer.testing import CliRunner

from crmhub.cli import app
from sync.segments import Rule, RuleCompiler, evaluate_segments, load_catalog
from sync.segments.explain import Explainer, load_contact
from sync.store import create_store_engine, upgrade
from sync.store.tables import contact_identities, contacts
from tests.segments.conftest import NOW, Seeder, segments_from


def _segment(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"name": "s", "all": list(rules)}


def _phone(conn: Connection, contact_id: int, number: str) -> None:
    row = {"contact_id": contact_id, "kind": "phone", "value": number, "source": "test", "first_seen_at": NOW}
    conn.execute(insert(contact_identities).values(**row))


def _match(conn: Connection, raw: dict[str, Any], *, region: str = "US") -> set[int]:
    """The contacts `raw` matches; both SQL strategies and explain must agree."""
    rule = Rule.model_validate(raw)
    catalog, dialect = load_catalog(conn), conn.dialect.name
    by_sql = []
    for correlated in (False, True):
        compiler = RuleCompiler(catalog, now=NOW, dialect=dialect, correlated=correlated, region=region)
        test = compiler.compile(rule)
        by_sql.append(
            set(conn.execute(select(contacts.c.id).select_from(compiler.source()).where(test)).scalars())
        )
    by_python = set()
    for cid in conn.execute(select(contacts.c.id)).scalars():
        data = load_contact(conn, cid)
        assert data is not None
        if Explainer({}, data, now=NOW, region=region).rule(rule).result:
            by_python.add(cid)
    assert by_sql[0] == by_sql[1] == by_python, (raw, by_sql, by_python)
    return by_python


# --- 1. built-in fields have types ------------------------------------------------------------------

BUILT_IN_MISTAKES = {
    "created_num": _segment({"field": "created_at", "op": "gt", "value": 5}),
    "created_ne": _segment({"field": "created_at", "op": "ne", "value": 5}),
    "email_window": _segment({"field": "email", "op": "within_last", "value": "7d"}),
    "phone_before": _segment({"field": "phone", "op": "before", "value": "2026-01-01"}),
    "score_word": _segment({"field": "lead_score", "op": "gte", "value": "high"}),
}
FINE = {"fine": _segment({"field": "created_at", "op": "within_last", "value": "30d"})}


def test_type_mistakes_on_built_in_fields_hold_the_segment(engine: Engine) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.email(ann, "ann@example.com")
        report = evaluate_segments(conn, segments_from(BUILT_IN_MISTAKES | FINE), now=NOW, declared=set())
    assert [r.key for r in report.segments] == ["fine"]
    assert report.held == {
        "created_num": [
            "segments.created_num.all[0]: 5 is not a time, as created_at (datetime) holds: it matches nothing"
        ],
        "created_ne": [
            "segments.created_ne.all[0]: 5 is not a time, as created_at (datetime) holds: "
            "it matches every contact with a value"
        ],
        "email_window": [
            'segments.email_window.all[0]: "within_last" does not apply to email, '
            "an email field (text values)"
        ],
        "phone_before": [
            'segments.phone_before.all[0]: "before" does not apply to phone, a phone field (text values)'
        ],
        "score_word": [
            "segments.score_word.all[0]: 'high' is not a number, as lead_score (decimal) holds: "
            "it matches nothing"
        ],
    }


def _config(tmp_path: Path, segments: dict[str, Any], region: str = "US") -> Path:
    lines = [
        "[database]",
        f'url = "sqlite:///{tmp_path / "hub.db"}"',
        "[field_mapping.identity]",
        f'default_region = "{region}"',
    ]
    for key, segment in segments.items():
        rules = ", ".join(_inline(r) for r in segment["all"])
        lines += [f"[segments.{key}]", f'name = "{segment["name"]}"', f"all = [{rules}]"]
    path = tmp_path / "crmhub.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _inline(rule: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in rule.items()) + " }"


def _check(config: Path) -> dict[str, str]:
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--json"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    return {p["path"]: p["message"] for p in json.loads(result.stdout)["problems"]}


@pytest.mark.parametrize("store", ["none yet", "with fields"])
def test_check_reports_type_mistakes_on_built_in_fields_with_their_path(tmp_path: Path, store: str) -> None:
    config = _config(tmp_path, BUILT_IN_MISTAKES | FINE)
    if store == "with fields":
        engine = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}")
        upgrade(engine)
        with engine.begin() as conn:
            Seeder(conn).field("plan", "string")
        engine.dispose()
    problems = _check(config)
    assert sorted(problems) == [f"segments.{key}.all[0]" for key in sorted(BUILT_IN_MISTAKES)]
    assert problems["segments.created_num.all[0]"] == (
        "5 is not a time, as created_at (datetime) holds: it matches nothing "
        "(a sync would hold the segment back)"
    )
    assert problems["segments.email_window.all[0]"].startswith('"within_last" does not apply to email')


# --- 2. literals in the stored form -------------------------------------------------------------------


def test_e_mail_literals_match_a_custom_e_mail_field_in_lower_case(engine: Engine) -> None:
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        s.value(ann, "billing_email", "email", "ann@example.com")
        s.value(bob, "billing_email", "email", "bob@corp.test")
        assert _match(conn, {"field": "billing_email", "op": "eq", "value": "Ann@Example.com"}) == {ann}
        assert _match(conn, {"field": "billing_email", "op": "in", "value": [" ANN@example.COM "]}) == {ann}
        assert _match(conn, {"field": "billing_email", "op": "ne", "value": "ANN@EXAMPLE.COM"}) == {bob}
        assert _match(conn, {"field": "billing_email", "op": "ends_with", "value": "@Corp.Test"}) == {bob}
        trans.rollback()


def test_phone_literals_match_as_stored_numbers(engine: Engine) -> None:
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        ann, bob, cy = s.contact(), s.contact(), s.contact()
        _phone(conn, ann, "+14155552671")
        _phone(conn, bob, "+14155550100;ext=12")  # an office line: the identity keeps the extension
        s.value(ann, "mobile", "phone", "+14155552671")
        s.value(bob, "mobile", "phone", "+14155550100")  # a phone field holds the number to dial
        s.value(cy, "mobile", "phone", "+33612345678")
        assert _match(conn, {"field": "phone", "op": "eq", "value": "(415) 555-2671"}) == {ann}
        assert _match(conn, {"field": "phone", "op": "eq", "value": "415-555-0100 ext. 12"}) == {bob}
        assert _match(conn, {"field": "phone", "op": "ne", "value": "+1 415 555 2671"}) == {bob}
        assert _match(conn, {"field": "mobile", "op": "in", "value": ["415.555.2671", 4155550100]}) == {
            ann,
            bob,
        }
        assert _match(conn, {"field": "mobile", "op": "not_in", "value": ["(415) 555-2671"]}) == {bob, cy}
        # Only whole-value tests read the literal as a number; a part of one stays as written.
        assert _match(conn, {"field": "mobile", "op": "starts_with", "value": "+1415"}) == {ann, bob}
        # National numbers are read in the configured region.
        french = {"field": "mobile", "op": "eq", "value": "06 12 34 56 78"}
        assert _match(conn, french, region="FR") == {cy}
        assert _match(conn, french, region="US") == set()
        trans.rollback()


def test_a_sync_reads_national_numbers_in_the_configured_region_as_check_does(engine: Engine) -> None:
    french = segments_from({"paris": _segment({"field": "mobile", "op": "eq", "value": "06 12 34 56 78"})})
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        cy = s.contact()
        s.value(cy, "mobile", "phone", "+33612345678")
        # In the US the literal is no number: the segment is held, as `crmhub check` says there.
        us = evaluate_segments(conn, french, now=NOW, declared=["mobile"])
        assert "paris" in us.held
        fr = evaluate_segments(conn, french, now=NOW, declared=["mobile"], region="FR")
        assert fr.held == {} and fr.segments[0].entered_examples == [cy]
        trans.rollback()


INVALID_PHONE = {
    "bad_phone": _segment({"field": "phone", "op": "eq", "value": "555-12"}),
    "bad_mobile": _segment({"field": "mobile", "op": "not_in", "value": ["+14155552671", "n/a"]}),
}


def test_a_phone_literal_that_is_no_number_holds_the_segment(engine: Engine) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "mobile", "phone", "+14155552671")
        report = evaluate_segments(conn, segments_from(INVALID_PHONE | FINE), now=NOW, declared=set())
    assert [r.key for r in report.segments] == ["fine"]
    assert report.held == {
        "bad_mobile": [
            "segments.bad_mobile.all[0]: 'n/a' is not a valid phone number (read in region US), as mobile "
            "(phone) holds: it matches every contact with a value"
        ],
        "bad_phone": [
            "segments.bad_phone.all[0]: '555-12' is not a valid phone number (read in region US), as phone "
            "(phone) holds: it matches nothing"
        ],
    }


def test_check_reports_a_phone_literal_that_is_no_number_in_the_configured_region(tmp_path: Path) -> None:
    french = {"fr": _segment({"field": "phone", "op": "eq", "value": "06 12 34 56 78"})}
    problems = _check(_config(tmp_path, INVALID_PHONE | french, region="GB"))
    assert sorted(problems) == ["segments.bad_phone.all[0]", "segments.fr.all[0]"]
    assert problems["segments.fr.all[0]"].startswith(
        "'06 12 34 56 78' is not a valid phone number (read in region GB), as phone (phone) holds"
    )
    # In France the number is one; `mobile` is not known before the first sync, so only a note names it.
    assert sorted(_check(_config(tmp_path, INVALID_PHONE | french, region="FR"))) == [
        "segments.bad_phone.all[0]"
    ]
