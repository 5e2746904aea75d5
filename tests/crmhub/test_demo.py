"""`crmhub demo` runs the real job end to end on the sandbox and reports what the store holds."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmhub.cli import app


def test_the_demo_syncs_creates_fields_ticks_and_syncs_incrementally(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--people", "60", "--days", "2", "--dir", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = result.output
    contacts = int(re.search(r"became ([\d,]+) contacts", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 40 <= contacts <= 80  # 60 people, the same person across sources resolved to one contact
    fields = int(re.search(r"(\d+) fields: ", out).group(1))  # type: ignore[union-attr]
    assert fields > 20
    assert re.search(r"[1-9][\d,]* changed records pulled with \d+ requests; \d+ new fields", out)
    assert (tmp_path / "crmhub.toml").is_file() and (tmp_path / "crmhub.db").is_file()
    # Segments were filled and every transition reached the receiver with a valid signature.
    assert re.search(r"customers_not_opted_out\s+│\s+[1-9]", out)
    # After the first sync every member entered in it, also where an opt-out in a page gave a
    # segment its first evaluation mid-sync.
    first_table = out.split("3. segments computed", 1)[1].split("4. webhooks", 1)[0]
    rows = re.findall(r"(\w+)\s+│\s+([\d,]+)\s+│\s+([\d,]+)\s+│\s+([\d,]+)", first_table)
    assert rows and all(members == entered and left == "0" for _, members, entered, left in rows), rows
    verified = [
        int(n.replace(",", "")) for n in re.findall(r"the receiver verified\s+([\d,]+)\s+signatures", out)
    ]
    assert verified and verified[0] > 0 and verified[-1] >= verified[0]
    assert "rejected 0" in out and "HubSpot: group created" in out
    assert re.search(r"why is contact \d+ in \w+\?", out)
    # The real-time step: a signed webhook through a real `crmhub serve` came out as segment.entered.
    assert re.search(r"delivered\s+segment\.entered\s+\(paid_last_7_days\)\s+to the receiver", out)


def test_the_demo_without_a_dir_leaves_no_temp_dir_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    result = CliRunner().invoke(app, ["demo", "--people", "40", "--days", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "`--dir DIR` keeps them" in result.output
    assert list(tmp_path.glob("crmhub-demo-*")) == []
