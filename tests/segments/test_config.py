"""Rule mistakes are reported at load with their TOML path and a hint."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError
from typer.testing import CliRunner

from crmhub.cli import app
from sync.segments import (
    ScoringConfig,
    SegmentConfig,
    SegmentsConfig,
    check_fields,
    depends_on_time,
    evaluation_order,
    rule_version,
)


class Root(BaseModel):
    """Stands in for the settings root: `[segments]` and `[scoring]` as the lead wires them."""

    segments: SegmentsConfig = Field(default_factory=dict)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)


def _errors(toml: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        Root.model_validate(tomllib.loads(toml))
    return [(_path(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in caught.value.errors()]


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


EXAMPLES = """
[segments.trial_inactive]
name = "Trial users inactive for 30 days"
all = [
  { field = "stripe_status", op = "eq", value = "trialing" },
  { field = "last_activity_at", op = "more_than_ago", value = "30d" },
]

[segments.paid_last_7_days]
name = "Customers who paid in the last 7 days"
all = [{ event = "invoice.paid", within = "7d" }]

[segments.nps_detractors]
name = "NPS detractors"
all = [{ field = "nps_score", op = "between", value = [0, 6] }]

[segments.power_users]
name = "Power users"
all = [{ event = "app.used", count = { gte = 5 }, within = "7d" }]
split = { a = 50, b = 50 }
holdout = 10

[segments.hamburg_ctos_over_50]
name = "Micro-segment"
all = [
  { field = "age", op = "gt", value = 50 },
  { field = "city", op = "eq", value = "Hamburg" },
  { field = "role", op = "in", value = ["CTO", "VP Engineering"] },
]

[segments.birthday_this_week]
name = "Birthday this week"
requires_consent = "sms"
all = [{ field = "birthday", op = "anniversary", within_days = 6 }]

[segments.abandoned_checkout]
name = "Abandoned checkout"
all = [
  { event = "checkout.started", within = "2d", last = { more_than_ago = "3h" } },
  { event = "invoice.paid", within = "2d", performed = false },
  { not = { in_segment = "paid_last_7_days" } },
]

[scoring]
half_life = "30d"
events = [{ event = "invoice.paid", points = 10, max_points = 50, within = "90d" }]
conditions = [{ when = { field = "role", op = "eq", value = "CTO" }, points = 15 }]
"""


def test_the_shipped_examples_load_in_dependency_order() -> None:
    root = Root.model_validate(tomllib.loads(EXAMPLES))
    order = evaluation_order(root.segments)
    assert order.index("paid_last_7_days") < order.index("abandoned_checkout")
    assert depends_on_time(root.segments["trial_inactive"])
    assert not depends_on_time(root.segments["hamburg_ctos_over_50"])
    assert root.scoring.depends_on_time()
    known = {"stripe_status", "nps_score", "age", "city", "role", "birthday"}
    assert check_fields(root.segments, known) == []


def test_unknown_operator_is_reported_with_path_and_hint() -> None:
    toml = """
    [segments.trial_inactive]
    name = "x"
    all = [{ field = "a", op = "eq", value = 1 }, { field = "b", op = "equal", value = 2 }]
    """
    assert _errors(toml) == [
        ("segments.trial_inactive.all[1].op", 'unknown operator "equal"; did you mean "eq"?')
    ]


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        ('{ field = "a", op = "between", value = [1] }', "all[0].value", "expected a list of two values"),
        ('{ field = "a", op = "in", value = "x" }', "all[0].value", 'expected a non-empty list for "in"'),
        ('{ field = "a", op = "eq", value = [1, 2] }', "all[0].value", 'use "in" for several'),
        (
            '{ field = "a", op = "within_last", value = "30 days" }',
            "all[0].value",
            'expected a duration such as "30d"',
        ),
        ('{ field = "a", op = "eq" }', "all[0]", 'expected a "value" for operator "eq"'),
        ('{ field = "a", op = "exists", value = 1 }', "all[0]", 'expected no "value"'),
        ('{ field = "a", event = "b" }', "all[0]", "found field and event"),
        ('{ event = "b", op = "eq" }', "all[0]", 'expected "op" only in a field condition'),
        ('{ event = "b", count = {} }', "all[0].count", "expected at least one of eq"),
        ('{ event = "b", performed = false, count = { gte = 1 } }', "all[0]", "performed = false"),
        ('{ event = "b", within = "7 days" }', "all[0].within", "expected a duration"),
        ('{ event = "b", last = { before = 2025-01-01, after = 2024-01-01 } }', "all[0].last", "exactly one"),
        ("{ all = [] }", "all[0]", 'expected at least one rule in "all"'),
        (
            '{ field = "a", op = "between", value = ["2026-03-16", "2026-03-01"] }',
            "all[0].value",
            'expected [low, high] with low <= high for "between", found low "2026-03-16" > high "2026-03-01"',
        ),
        (
            '{ field = "a", op = "between", value = [2026-03-16, 2026-03-01T00:00:00Z] }',
            "all[0].value",
            "low <=",
        ),
        ('{ field = "a", op = "between", value = [10, "9.5"] }', "all[0].value", "found low 10 > high"),
        (
            '{ event = "b", count = { gte = 1, lt = 1 } }',
            "all[0].count",
            "expected bounds some number meets, found gte = 1, lt = 1, which none does",
        ),
        ('{ event = "b", count = { eq = 2, gt = 2 } }', "all[0].count", "which none does"),
        ('{ event = "b", count = { eq = 2, ne = 2 } }', "all[0].count", "which none does"),
        (
            '{ event = "b", count = { gt = 1, lt = 2 } }',
            "all[0].count",
            "expected bounds some count (0, 1, 2, ...) meets, found gt = 1, lt = 2, which none does",
        ),
        ('{ event = "b", count = { lt = 0 } }', "all[0].count", "some count (0, 1, 2, ...)"),
        ('{ event = "b", count = { eq = 1.5 } }', "all[0].count", "some count (0, 1, 2, ...)"),
        ("{ lead_score = { gt = 5, lte = 4.5 } }", "all[0].lead_score", "which none does"),
        ("{ lead_score = { gte = inf } }", "all[0].lead_score", "expected a finite number for gte"),
        (
            '{ any = [{ not = { field = "a", op = "lt", value = 1, colour = 1 } }] }',
            "all[0].any[0].not.colour",
            "",
        ),
    ],
)
def test_rule_mistakes_name_the_path(rule: str, path: str, message: str) -> None:
    errors = _errors(f'[segments.s]\nname = "x"\nall = [{rule}]\n')
    assert any(p == f"segments.s.{path}" and message in m for p, m in errors), errors


def test_cycles_and_unknown_segments_are_rejected_at_the_rule_node() -> None:
    cycle = """
    [segments.a]
    name = "a"
    all = [{ in_segment = "b" }]
    [segments.b]
    name = "b"
    any = [{ consent = "sms" }, { not = { in_segment = "a" } }]
    """
    assert _errors(cycle) == [
        (
            "segments.b.any[1].not.in_segment",
            "expected in_segment references without cycles, found the cycle a -> b -> a",
        )
    ]
    self_ref = '[segments.a]\nname = "a"\nall = [{ consent = "sms" }, { in_segment = "a" }]\n'
    assert _errors(self_ref) == [
        (
            "segments.a.all[1].in_segment",
            "expected in_segment references without cycles, found the cycle a -> a",
        )
    ]
    unknown = (
        '[segments.a]\nname = "a"\nall = [{ any = [{ consent = "sms" }, { in_segment = "paying" }] }]\n'
        '[segments.payers]\nname = "p"\nall = [{ consent = "sms" }]\n'
    )
    assert _errors(unknown) == [
        (
            "segments.a.all[0].any[1].in_segment",
            'expected in_segment to name a configured segment, found "paying"; did you mean "payers"?',
        )
    ]


def test_crmhub_check_names_the_rule_node_of_an_unknown_segment(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "hub.db"}"\n'
        '[segments.a]\nname = "a"\nall = [{ consent = "sms" }, { in_segment = "nope" }]\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--json"], catch_exceptions=False)
    assert result.exit_code == 2
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["path"] == "segments.a.all[1].in_segment"
    assert (
        problem["message"]
        == 'expected in_segment to name a configured segment, found "nope"; expected one of a'
    )


def test_bounds_that_some_value_meets_are_accepted() -> None:
    rules = [
        '{ field = "a", op = "between", value = [5, 5] }',
        '{ field = "a", op = "between", value = [2026-03-01, "2026-03-16T00:00:00+00:00"] }',
        '{ field = "a", op = "between", value = ["b", "a"] }',  # no number nor time: a type test later
        '{ event = "b", count = { gte = 1, lte = 1 } }',
        '{ event = "b", count = { lte = 0 } }',
        '{ event = "b", count = { gt = 0.5, lt = 1.5 } }',
        '{ event = "b", count = { gte = 1, ne = 1 } }',
        "{ lead_score = { gt = 1, lt = 1.5 } }",
        "{ lead_score = { lt = -3 } }",
    ]
    Root.model_validate(tomllib.loads(f'[segments.s]\nname = "x"\nany = [{", ".join(rules)}]\n'))


def test_segment_needs_one_root_and_valid_split() -> None:
    assert "found none" in _errors('[segments.s]\nname = "x"\n')[0][1]
    assert (
        "found all and any"
        in _errors('[segments.s]\nname = "x"\nall = [{consent="sms"}]\nany = [{consent="sms"}]\n')[0][1]
    )
    errors = _errors('[segments.s]\nname = "x"\nall = [{consent="sms"}]\nsplit = { holdout = 5 }\n')
    assert errors[0][0] == "segments.s.split"
    errors = _errors('[segments.s]\nname = "x"\nall = [{consent="sms"}]\nholdout = 100\n')
    assert errors[0][0] == "segments.s.holdout"
    assert _errors('[segments.Bad-Key]\nname = "x"\nall = [{consent="sms"}]\n')


def test_unknown_fields_are_reported_unless_declared_or_built_in() -> None:
    root = Root.model_validate(
        tomllib.loads(
            '[segments.s]\nname = "x"\nall = [{ field = "citty", op = "eq", value = "Hamburg" },'
            ' { any = [{ field = "email", op = "ends_with", value = "@example.com" },'
            ' { field = "lead_score", op = "gt", value = 3 }, { field = "plan", op = "exists" }] }]\n'
        )
    )
    assert check_fields(root.segments, {"city"}) == [
        ("segments.s.all[0].field", 'unknown field "citty"; did you mean "city"?'),
        (
            "segments.s.all[1].any[2].field",
            'unknown field "plan"; expected one of city, created_at, email, '
            "last_activity_at, lead_score, phone",
        ),
    ]


def test_unknown_fields_in_scoring_conditions_are_reported() -> None:
    scoring = ScoringConfig.model_validate(
        {"conditions": [{"when": {"any": [{"field": "rol", "op": "eq", "value": "CTO"}]}, "points": 1}]}
    )
    assert scoring.check_fields({"role"}) == [
        ("scoring.conditions[0].when.any[0].field", 'unknown field "rol"; did you mean "role"?')
    ]


def test_rule_version_ignores_name_but_not_rule_or_split() -> None:
    base = {"name": "x", "all": [{"field": "a", "op": "eq", "value": 1}]}
    one = rule_version(SegmentConfig.model_validate(base))
    assert one == rule_version(SegmentConfig.model_validate(base | {"name": "renamed", "description": "d"}))
    assert one != rule_version(
        SegmentConfig.model_validate(base | {"all": [{"field": "a", "op": "eq", "value": 2}]})
    )
    assert one != rule_version(SegmentConfig.model_validate(base | {"split": {"a": 1, "b": 1}}))


def test_scoring_conditions_may_not_use_the_score_or_segments() -> None:
    errors = _errors("[scoring]\nconditions = [{ when = { lead_score = { gte = 3 } }, points = 1 }]\n")
    assert errors[0][0] == "scoring.conditions[0].when"
    assert _errors('[scoring]\nevents = [{ event = "a", points = 1, max_points = 0 }]\n')[0][0] == (
        "scoring.events[0].max_points"
    )
