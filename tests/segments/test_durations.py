"""A duration past 100 years is a configuration mistake, reported with its path, never a traceback."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, ValidationError
from typer.testing import CliRunner

from crmhub.cli import app
from sync.segments import ScoringConfig, SegmentsConfig

TOO_LONG = (
    'expected a duration of at most 36500d (100 years), found "{}"; leave the window out to mean "ever"'
)


class Root(BaseModel):
    segments: SegmentsConfig = Field(default_factory=dict)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)


@pytest.mark.parametrize(
    ("toml", "path", "found"),
    [
        pytest.param(
            '[segments.s]\nname = "x"\nall = [{ event = "a", within = "999999d" }]',
            "segments.s.all.0.within",
            "999999d",
            id="event-within",
        ),
        pytest.param(
            '[segments.s]\nname = "x"\nall = [{ field = "f", op = "more_than_ago", value = "5215w" }]',
            "segments.s.all.0.value",
            "5215w",
            id="more_than_ago",
        ),
        pytest.param('[scoring]\nhalf_life = "999999w"', "scoring.half_life", "999999w", id="half_life"),
        pytest.param(
            '[scoring]\nevents = [{ event = "a", points = 1, within = "36501d" }]',
            "scoring.events.0.within",
            "36501d",
            id="scoring-within",
        ),
    ],
)
def test_a_duration_over_100_years_is_refused_with_its_path(toml: str, path: str, found: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Root.model_validate(tomllib.loads(toml))
    errors = {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}
    assert TOO_LONG.format(found) in errors[path], errors


def test_100_years_is_still_a_duration() -> None:
    raw = (
        '[segments.s]\nname = "x"\nall = [{ event = "a", within = "36500d" }]\n[scoring]\nhalf_life = "5214w"'
    )
    Root.model_validate(tomllib.loads(raw))


def test_crmhub_check_reports_an_overlong_window_and_half_life(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "hub.db"}"\n\n'
        '[segments.paid]\nname = "Paid"\nall = [{ event = "invoice.paid", within = "999999d" }]\n\n'
        '[scoring]\nhalf_life = "999999w"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(config), "check"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"segments.paid.all[0].within: {TOO_LONG.format('999999d')}" in result.output
    assert f"scoring.half_life: {TOO_LONG.format('999999w')}" in result.output
    assert "Traceback" not in result.output
