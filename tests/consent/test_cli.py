"""`crmhub consent`, `crmhub contact` and `crmhub hygiene` through the CLI runner, on both backends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner, Result

from crmhub.cli.app import app
from sync.consent import opt_out
from sync.store import write_transaction
from sync.store.tables import consent_records, contacts, erasure_log, suppressions
from tests.consent.conftest import (
    EARLIER,
    ENDPOINTS,
    NOW,
    assert_reimport_stays_out,
    assert_unsubscribed,
    cli_config,
    evaluate,
    members,
    merged_jane,
)

runner = CliRunner()


def _invoke(config: Path, *args: str) -> Result:
    return runner.invoke(app, ["--config", str(config), *args])


def _run(config: Path, *args: str) -> str:
    result = _invoke(config, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _stored(engine: Engine) -> tuple[int, int]:
    """How many consent records and suppressions the store holds."""
    with engine.connect() as conn:
        records = conn.execute(select(func.count()).select_from(consent_records)).scalar_one()
        listed = conn.execute(select(func.count()).select_from(suppressions)).scalar_one()
    return records, listed


def _consent_node(config: Path, contact: str, segment: str) -> dict[str, Any]:
    """`crmhub explain`'s requires_consent node for the contact and segment."""
    tree = json.loads(_run(config, "explain", "--contact", contact, "--segment", segment, "--json"))
    [node] = [c for c in tree["children"] if c["rule"].startswith("requires_consent")]
    return dict(node["detail"]) | {"member": tree["member"]}


def test_opt_out_on_the_command_line_acts_at_once_and_show_lists_the_history(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    config = cli_config(tmp_path, engine)
    at = NOW.isoformat()
    out = _run(
        config,
        "consent",
        "opt-out",
        "JANE.DOE@Example.com",
        "--channel",
        "sms",
        "--reason",
        "asked",
        "--now",
        at,
    )
    assert f"contact {jane} opted out of sms" in out and "left 1 segment(s)" in out
    assert_unsubscribed(engine, jane, "sms_offers", "texter", kept="newsletter")
    assert_reimport_stays_out(engine, jane, "sms_offers")

    shown = _run(config, "contact", "show", str(jane))
    assert "consent history" in shown and "opted_out" in shown and "asked" in shown
    data = json.loads(_run(config, "contact", "show", "+1 (415) 555-2671", "--json"))
    history = [(c["channel"], c["status"], c["source"]) for c in data["consent"]]
    assert history == [
        ("sms", "opted_in", "typeform"),
        ("email", "opted_in", "api"),
        ("sms", "opted_out", "cli"),
    ]
    assert {m["segment"] for m in data["memberships"]} == {"newsletter", "everyone"}
    assert any(t["reason"] == "unsubscribed" for t in data["transitions"])


def test_export_then_erase_on_the_command_line(tmp_path: Path, engine: Engine, jane: int) -> None:
    config = cli_config(tmp_path, engine)
    exported = json.loads(_run(config, "contact", "export", "jane.doe@example.com"))
    assert exported["contact"]["id"] == jane and exported["records"] and exported["consent"]
    erased = json.loads(_run(config, "contact", "erase", str(jane), "--yes", "--json"))
    assert erased["deleted"]["contacts"] == 1 and erased["wal_emptied"] is True
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(erasure_log)).scalar_one() == 1
    missing = runner.invoke(app, ["--config", str(config), "contact", "show", "jane.doe@example.com"])
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_hygiene_report_shows_each_policy(tmp_path: Path, engine: Engine, jane: int) -> None:
    config = cli_config(tmp_path, engine)
    later = "2027-08-01T00:00:00"
    before = json.loads(_run(config, "hygiene", "report", "--now", later, "--json"))
    assert {p["policy"]: p["would"] for p in before["policies"]}["dormant"] == 1
    assert before["last_run"] is None
    _run(config, "hygiene", "run", "--now", later)
    after = json.loads(_run(config, "hygiene", "report", "--now", later, "--json"))
    policies = {p["policy"]: p for p in after["policies"]}
    assert policies["dormant"]["did"] == 1 and policies["dormant"]["would"] == 0
    assert policies["reconfirm"]["would"] == 1
    assert "dormant" in _run(config, "hygiene", "report", "--now", later)


def test_a_channel_in_capitals_is_the_configured_one_and_the_contact_leaves_its_segment(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    config = cli_config(tmp_path, engine)
    out = _run(config, "consent", "opt-out", str(jane), "--channel", "SMS")
    assert f"contact {jane} opted out of sms" in out and "left 1 segment(s)" in out
    node = _consent_node(config, str(jane), "sms_offers")
    assert (node["latest"], node["member"]) == ("opted_out", False)


@pytest.mark.parametrize("command", ["opt-out", "opt-in"])
@pytest.mark.parametrize("channel", ["", "fax", "e-mail"])
def test_an_unknown_channel_is_refused_with_the_channels_and_changes_nothing(
    tmp_path: Path, engine: Engine, jane: int, command: str, channel: str
) -> None:
    config = cli_config(tmp_path, engine)
    before = _stored(engine)
    result = _invoke(config, "consent", command, str(jane), "--channel", channel)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"found {channel!r}" in message and "(email, sms)" in message
    assert "add the channel to [consent] channels" in message and "Traceback" not in result.output
    assert result.stdout == "" and _stored(engine) == before


def test_a_now_in_the_future_is_refused_and_records_nothing(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    config = cli_config(tmp_path, engine)
    before = _stored(engine)
    for command in ("opt-out", "opt-in"):
        result = _invoke(config, "consent", command, str(jane), "--channel", "sms", "--now", "2100-01-01")
        assert result.exit_code == 2, result.output
        message = " ".join(result.stderr.split())
        assert "--now 2100-01-01T00:00:00+00:00 is in the future" in message and "leave --now out" in message
    assert _stored(engine) == before
    # A minute ahead is another host's clock, not a date in the future.
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert f"contact {jane} opted in to sms" in _run(
        config, "consent", "opt-in", str(jane), "--channel", "sms", "--now", soon
    )


def test_an_opt_in_outranked_by_a_newer_opt_out_says_so(tmp_path: Path, engine: Engine, jane: int) -> None:
    config = cli_config(tmp_path, engine)
    # An opt-out dated 2030, as the command stored before such a --now was refused.
    with write_transaction(engine) as conn:
        opt_out(
            conn,
            contact_id=jane,
            channel="sms",
            source="cli",
            proof={},
            now=datetime(2030, 1, 1, tzinfo=UTC),
            evaluate=evaluate,
            endpoints=ENDPOINTS["sms"],
        )
    out = " ".join(_run(config, "consent", "opt-in", str(jane), "--channel", "sms").split())
    assert (
        f"contact {jane}: opt-in to sms recorded, but an opt-out recorded at 2030-01-01T00:00:00+00:00 "
        "is newer and stays in force"
    ) in out
    assert "opted in to" not in out
    node = _consent_node(config, str(jane), "sms_offers")
    assert (node["latest"], node["recorded_at"], node["member"]) == (
        "opted_out",
        "2030-01-01T00:00:00+00:00",
        False,
    )
    assert _stored(engine)[1] == 1  # the opt-out's suppression of her phone stays


def test_an_opt_in_at_the_moment_of_an_opt_out_says_the_opt_out_outranks_it(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    config = cli_config(tmp_path, engine)
    _run(config, "consent", "opt-out", str(jane), "--channel", "sms", "--now", EARLIER.isoformat())
    out = " ".join(
        _run(config, "consent", "opt-in", str(jane), "--channel", "sms", "--now", EARLIER.isoformat()).split()
    )
    assert (
        f"contact {jane}: opt-in to sms recorded, but an opt-out recorded at the same moment "
        f"({EARLIER.isoformat()}) outranks it and stays in force"
    ) in out
    assert "is newer" not in out
    assert _consent_node(config, str(jane), "sms_offers")["latest"] == "opted_out"


def test_a_backdated_opt_out_outranked_by_a_newer_opt_in_says_so(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    config = cli_config(tmp_path, engine)
    before = (EARLIER - timedelta(days=1)).isoformat()
    out = " ".join(_run(config, "consent", "opt-out", str(jane), "--channel", "sms", "--now", before).split())
    assert (
        f"contact {jane}: opt-out of sms recorded, but an opt-in recorded at {EARLIER.isoformat()} "
        "is newer and stays in force; its identities are suppressed all the same"
    ) in out
    assert "suppressed 1 identity(ies)" in out
    assert _consent_node(config, str(jane), "sms_offers")["latest"] == "opted_in"


def test_every_command_finds_a_merged_contact_by_its_old_id_e_mail_or_phone(
    tmp_path: Path, engine: Engine
) -> None:
    kept, merged = merged_jane(engine)
    config = cli_config(tmp_path, engine)
    note = f"contact {merged} was merged into {kept}"
    for ref in (str(merged), "+14155552671", "415.555.2671", "JANE.DOE@example.com"):
        asks = {
            "show": ("contact", "show", ref, "--json"),
            "history": ("history", "--contact", ref, "--json"),
            "explain": ("explain", "--contact", ref, "--segment", "sms_offers", "--json"),
        }
        for name, args in asks.items():
            result = _invoke(config, *args)
            assert result.exit_code == 0, (name, ref, result.output)
            body = json.loads(result.stdout)
            assert (body["contact"]["id"] if name == "show" else body["contact_id"]) == kept, (name, ref)
            assert (note in result.stderr) == (ref == str(merged)), (name, ref)
    out = _invoke(config, "consent", "opt-out", str(merged), "--channel", "sms")
    assert out.exit_code == 0 and f"contact {kept} opted out of sms" in out.stdout and note in out.stderr
    with engine.connect() as conn:
        assert kept not in members(conn, "sms_offers")


def test_an_opt_in_says_which_suppressions_it_could_not_lift_and_answers_json(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    config = cli_config(tmp_path, engine)
    _run(config, "consent", "opt-out", str(jane), "--channel", "sms")
    with write_transaction(engine) as conn:  # the number is also reported invalid by a sender
        conn.execute(update(suppressions).values(reason="invalid_number"))
    out = " ".join(_run(config, "consent", "opt-in", str(jane), "--channel", "sms").split())
    assert (
        "note the contact's sms identities are still on the suppression list (invalid_number): entries "
        "to endpoints reaching them are held back"
    ) in out
    answer = json.loads(_run(config, "consent", "opt-out", str(jane), "--channel", "sms", "--json"))
    assert (answer["contact_id"], answer["status"], answer["still_listed"]) == (jane, "opted_out", [])


def test_an_erase_with_no_one_to_answer_its_question_erases_nothing_and_says_why(
    tmp_path: Path, engine: Engine, jane: int
) -> None:
    result = _invoke(cli_config(tmp_path, engine), "contact", "erase", str(jane))  # no input: end of file
    assert result.exit_code == 2
    assert "nothing erased: answer yes, or pass --yes" in result.output and "Aborted" not in result.output
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(contacts.c.id == jane)).scalar_one() == 1


def test_a_time_that_is_not_iso_is_refused_with_the_form_expected(tmp_path: Path, engine: Engine) -> None:
    config = cli_config(tmp_path, engine)
    for args in (
        ("hygiene", "report", "--now", "tomorrow"),
        ("consent", "opt-in", "1", "--channel", "sms", "--now", "soon"),
    ):
        result = _invoke(config, *args)
        said = " ".join(result.output.replace("│", " ").split())
        assert result.exit_code == 2 and "expected an ISO date or time such as 2026-04-01" in said, said
    json.loads(_run(config, "hygiene", "report", "--now", "2026-11-23T09:00Z", "--json"))  # a zone is fine


def test_an_opt_out_that_suppresses_nothing_says_why(tmp_path: Path, engine: Engine, jane: int) -> None:
    config = cli_config(tmp_path, engine)
    with write_transaction(engine) as conn:
        row = {"created_at": NOW, "updated_at": NOW, "changed_at": NOW}
        bare = int(conn.execute(contacts.insert().values(row).returning(contacts.c.id)).scalar_one())
    said = " ".join(_run(config, "consent", "opt-out", str(bare), "--channel", "sms").split())
    assert "suppressed 0 identity(ies)" in said
    assert "nothing newly suppressed: the contact has no phone to reach sms by" in said
    listed = " ".join(_run(config, "consent", "opt-out", str(jane), "--channel", "sms").split())
    assert "suppressed 1 identity(ies)" in listed and "nothing newly suppressed" not in listed
