"""`crmhub sync --json` on the sandbox: the segments it reports moved are what the store holds."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.demo import Demo


def test_a_first_sync_reports_every_member_who_entered(tmp_path: Path) -> None:
    # A HubSpot opt-out in a page re-evaluates its contacts mid-sync, which gives the segments
    # their first evaluation there; the run's report must count those entries too.
    demo = Demo(tmp_path, people=120, seed=2)
    demo.start()
    try:
        result = CliRunner().invoke(
            app, ["--config", str(demo.config_path), "sync", "--json"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        reported = {s["segment"]: (s["entered"], s["left"]) for s in json.loads(result.stdout)["segments"]}
        sizes = demo.segment_sizes()
    finally:
        demo.stop()
    assert set(reported) == set(sizes) and any(sizes.values())
    assert reported == {key: (members, 0) for key, members in sizes.items()}
