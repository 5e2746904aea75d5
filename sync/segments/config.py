"""`[segments.<key>]`: the rule language in TOML, validated at load with TOML paths and hints."""

from __future__ import annotations

import difflib
import hashlib
import json
import operator
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from field_mapping.types import STORAGE, Column, FieldType
from sync.segments.values import coerce, parse_duration, parse_time

__all__ = [
    "BUILTIN_FIELDS",
    "FIELD_OPS",
    "Comparison",
    "Duration",
    "PropertyName",
    "Rule",
    "SegmentConfig",
    "SegmentsConfig",
    "TimeTest",
    "check_fields",
    "dependencies",
    "depends_on_time",
    "evaluation_order",
    "held_segments",
    "hint",
    "relative",
    "rule_nodes",
    "rule_version",
    "segment_nodes",
    "stored_form",
    "type_problems",
    "unknown_fields",
    "unusable",
    "walk",
]

Scalar = str | bool | int | float | datetime | date
SegmentKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,99}$")]
# Property names go into a JSON path; keeping them plain keeps that path unambiguous on both backends.
PropertyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,100}$")]

SCALAR_OPS = ("eq", "ne", "contains", "starts_with", "ends_with", "gt", "gte", "lt", "lte")
LIST_OPS = ("in", "not_in")
TIME_OPS = ("before", "after", "within_last", "more_than_ago", "anniversary")
FIELD_OPS = (*SCALAR_OPS, *LIST_OPS, "between", "exists", "missing", *TIME_OPS)
# Fields every contact has without a mapping rule: contact columns, identities, the lead score.
BUILTIN_FIELDS = frozenset({"created_at", "last_activity_at", "email", "phone", "lead_score"})
_KINDS = ("all", "any", "not", "field", "event", "lead_score", "consent", "in_segment")
_OWNED = {
    "field": ("op", "value", "within_days"),
    "event": ("where", "count", "within", "first", "last", "performed"),
}


def hint(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """`; did you mean "x"?` for the closest of `choices`, else `; expected one of ...` (if few)."""
    # A lower cutoff than difflib's default, so "equal" still finds "eq".
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    if close:
        return f'; did you mean "{close[0]}"?'
    # A store's fields run to hundreds: listing them all hides the message (`crmhub fields` lists them).
    return f"; expected one of {', '.join(choices)}" if len(choices) <= 12 else ""


def _duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_duration)]


class Comparison(BaseModel):
    """A numeric test such as `{gte = 5}` or `{gt = 10, lte = 20}`; every given bound must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eq: float | None = None
    ne: float | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Comparison:
        if not self.bounds():
            raise ValueError("expected at least one of eq, ne, gt, gte, lt, lte, found an empty table")
        return self

    def bounds(self) -> list[tuple[str, float]]:
        """The (operator, number) pairs that are set."""
        return [
            (op, v) for op in ("eq", "ne", "gt", "gte", "lt", "lte") if (v := getattr(self, op)) is not None
        ]

    def holds(self, number: float) -> bool:
        """Whether `number` satisfies every bound."""
        tests = {
            "eq": operator.eq,
            "ne": operator.ne,
            "gt": operator.gt,
            "gte": operator.ge,
            "lt": operator.lt,
        }
        return all(tests.get(op, operator.le)(float(number), bound) for op, bound in self.bounds())


class TimeTest(BaseModel):
    """One test on an occurrence time: `{more_than_ago = "30d"}`, `{before = 2025-01-01}`, ..."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    before: datetime | date | None = None
    after: datetime | date | None = None
    within_last: Duration | None = None
    more_than_ago: Duration | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TimeTest:
        given = [
            k for k in ("before", "after", "within_last", "more_than_ago") if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one of before, after, within_last, more_than_ago, found {len(given)}"
            )
        return self

    @property
    def op(self) -> str:
        """The one test given."""
        return next(
            k for k in ("before", "after", "within_last", "more_than_ago") if getattr(self, k) is not None
        )


class Rule(BaseModel):
    """A node of a rule tree: `all`/`any`/`not` or one condition (field, event, score, consent, segment)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    all: list[Rule] | None = None
    any: list[Rule] | None = None
    not_: Rule | None = Field(default=None, alias="not")
    field: str | None = Field(default=None, min_length=1, max_length=63)
    op: str | None = None
    value: Scalar | list[Scalar] | None = None
    within_days: int | None = Field(default=None, ge=0, le=366)
    event: str | None = Field(default=None, min_length=1, max_length=200)
    where: dict[PropertyName, str] | None = None
    count: Comparison | None = None
    within: Duration | None = None
    first: TimeTest | None = None
    last: TimeTest | None = None
    performed: bool | None = None
    lead_score: Comparison | None = None
    consent: str | None = Field(default=None, min_length=1, max_length=16)
    in_segment: SegmentKey | None = None

    @field_validator("op")
    @classmethod
    def _known_op(cls, op: str) -> str:
        if op not in FIELD_OPS:
            raise ValueError(f'unknown operator "{op}"{hint(op, FIELD_OPS)}')
        return op

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op is None:
            return value
        if op in LIST_OPS and not (isinstance(value, list) and value):
            raise ValueError(f'expected a non-empty list for "{op}", found {_shape(value)}')
        if op == "between" and not (isinstance(value, list) and len(value) == 2):
            raise ValueError(
                f'expected a list of two values [low, high] for "between", found {_shape(value)}'
            )
        if op in SCALAR_OPS and isinstance(value, list):
            raise ValueError(f'expected one value for "{op}", found a list (use "in" for several)')
        if op in ("before", "after") and (isinstance(value, list) or parse_time(value) is None):
            raise ValueError(f'expected a date or date-time for "{op}", found {_shape(value)}')
        if op in ("within_last", "more_than_ago"):
            if not isinstance(value, str):
                raise ValueError(f'expected a duration such as "30d" for "{op}", found {_shape(value)}')
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Rule:
        kinds = [k for k in _KINDS if getattr(self, "not_" if k == "not" else k) is not None]
        if len(kinds) != 1:
            found = " and ".join(kinds) if kinds else "none"
            raise ValueError(f"expected exactly one of {', '.join(_KINDS)}, found {found}")
        kind = kinds[0]
        for owner, keys in _OWNED.items():
            for key in keys:
                if owner != kind and getattr(self, key) is not None:
                    raise ValueError(f'expected "{key}" only in a {owner} condition, found it with "{kind}"')
        if kind == "field":
            self._check_field()
        if kind == "event" and self.performed is False and (self.count or self.first or self.last):
            raise ValueError('expected no count, first or last with "performed = false", found them together')
        if kind in ("all", "any") and not getattr(self, kind):
            raise ValueError(f'expected at least one rule in "{kind}", found an empty list')
        return self

    def _check_field(self) -> None:
        if self.op is None:
            raise ValueError(f'expected an operator "op" for field "{self.field}", found none')
        needs_value = self.op not in ("exists", "missing", "anniversary")
        if needs_value and self.value is None:
            raise ValueError(f'expected a "value" for operator "{self.op}", found none')
        if not needs_value and self.value is not None:
            raise ValueError(f'expected no "value" for operator "{self.op}", found {_shape(self.value)}')
        if self.within_days is not None and self.op != "anniversary":
            raise ValueError('expected "within_days" only with op = "anniversary"')

    @property
    def kind(self) -> str:
        """Which kind of node this is: all, any, not, field, event, lead_score, consent or in_segment."""
        return next(k for k in _KINDS if getattr(self, "not_" if k == "not" else k) is not None)

    def children(self) -> list[Rule]:
        """The sub-rules of an all/any/not node; empty for a condition."""
        if self.not_ is not None:
            return [self.not_]
        return list(self.all or self.any or [])


def _shape(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return json.dumps(value, default=str)


class SegmentConfig(BaseModel):
    """`[segments.<key>]`: a named rule tree, an optional consent channel and an optional A/B split."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    all: list[Rule] | None = None
    any: list[Rule] | None = None
    not_: Rule | None = Field(default=None, alias="not")
    requires_consent: str | None = Field(default=None, min_length=1, max_length=16)
    split: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,32}$")], int] | None = None
    holdout: int | None = Field(default=None, ge=1, le=99)

    @field_validator("split")
    @classmethod
    def _positive_weights(cls, split: dict[str, int]) -> dict[str, int]:
        if not split:
            raise ValueError("expected at least one variant such as {a = 50, b = 50}, found an empty table")
        if "holdout" in split:
            raise ValueError('expected variant names other than "holdout" (use holdout = N), found "holdout"')
        if any(weight < 1 for weight in split.values()):
            raise ValueError("expected positive weights, found a weight below 1")
        return split

    @model_validator(mode="after")
    def _one_root(self) -> SegmentConfig:
        given = [k for k in ("all", "any", "not") if getattr(self, "not_" if k == "not" else k) is not None]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of all, any, not, found {' and '.join(given) or 'none'}")
        if self.all == [] or self.any == []:
            raise ValueError(f'expected at least one rule in "{given[0]}", found an empty list')
        return self

    @property
    def rule(self) -> Rule:
        """The root of the rule tree."""
        return Rule(all=self.all, any=self.any, **{"not": self.not_})


def walk(rule: Rule, path: str) -> list[tuple[str, Rule]]:
    """Every node of a rule tree with its TOML path, depth first."""
    found = [(path, rule)]
    if rule.not_ is not None:
        found += walk(rule.not_, f"{path}.not")
    for key in ("all", "any"):
        for i, child in enumerate(getattr(rule, key) or []):
            found += walk(child, f"{path}.{key}[{i}]")
    return found


def stored_form(rule: Rule) -> Rule:
    """The rule with its literals as the store holds the field: e-mail addresses in lower case."""
    if rule.field != "email" or rule.value is None:
        return rule
    value = rule.value
    folded = (
        [v.strip().lower() if isinstance(v, str) else v for v in value] if isinstance(value, list) else value
    )
    if isinstance(folded, str):
        folded = folded.strip().lower()
    return rule.model_copy(update={"value": folded})


def rule_nodes(segment: SegmentConfig) -> list[tuple[str, Rule]]:
    """Every node of the segment's rule tree with its TOML path below `segments.<key>`."""
    if segment.not_ is not None:
        return walk(segment.not_, "not")
    key = "all" if segment.all is not None else "any"
    return [n for i, r in enumerate(getattr(segment, key)) for n in walk(r, f"{key}[{i}]")]


def dependencies(segment: SegmentConfig) -> set[str]:
    """Keys of the segments this segment's rule refers to with `in_segment`."""
    return {r.in_segment for _, r in rule_nodes(segment) if r.in_segment is not None}


def evaluation_order(segments: dict[str, SegmentConfig]) -> list[str]:
    """Segment keys with every segment after the ones it depends on; raises ValueError on a cycle."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(key: str, trail: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "active":
            cycle = " -> ".join([*trail[trail.index(key) :], key])
            raise ValueError(f"expected in_segment references without cycles, found the cycle {cycle}")
        state[key] = "active"
        for dep in sorted(dependencies(segments[key])):
            if dep not in segments:
                raise ValueError(
                    f'expected in_segment to name a configured segment, found "{dep}" in segments.{key}'
                    f"{hint(dep, sorted(segments))}"
                )
            visit(dep, [*trail, key])
        state[key] = "done"
        order.append(key)

    for key in sorted(segments):
        visit(key, [])
    return order


def _check_graph(segments: dict[str, SegmentConfig]) -> dict[str, SegmentConfig]:
    evaluation_order(segments)
    return segments


SegmentsConfig = Annotated[dict[SegmentKey, SegmentConfig], AfterValidator(_check_graph)]


def unknown_fields(nodes: list[tuple[str, Rule]], known_fields: set[str]) -> list[tuple[str, str]]:
    """(TOML path, message) for every field condition among `nodes` naming an unknown field."""
    known = sorted(known_fields | BUILTIN_FIELDS)
    return [
        (f"{path}.field", f'unknown field "{rule.field}"{hint(rule.field, known)}')
        for path, rule in nodes
        if rule.field is not None and rule.field not in known
    ]


_KIND_OF = {Column.TEXT: "text", Column.NUM: "number", Column.TIME: "time", Column.BOOL: "boolean"}
_NEEDS = {
    "contains": (Column.TEXT,),
    "starts_with": (Column.TEXT,),
    "ends_with": (Column.TEXT,),
    **dict.fromkeys(("gt", "gte", "lt", "lte", "between"), (Column.NUM, Column.TIME)),
    **dict.fromkeys(("before", "after", "within_last", "more_than_ago", "anniversary"), (Column.TIME,)),
}


def unusable(rule: Rule, field_type: FieldType) -> str | None:
    """Why a field condition can never hold as meant for a field of `field_type`, or None if it can.

    The compiler turns such a test into "matches nothing" (or, for `ne` and `not_in`, "everything"),
    which would empty (or fill) a segment on a typo: `gte = "nine"` on a number, `contains` on one.
    """
    column, op = STORAGE[field_type], rule.op
    if op is None or op in ("exists", "missing"):
        return None
    kind = _KIND_OF[column]
    if op in _NEEDS and column not in _NEEDS[op]:
        return f'"{op}" does not apply to {rule.field}, a {field_type.value} field ({kind} values)'
    if op in ("within_last", "more_than_ago", "anniversary"):
        return None  # a duration, checked with the rule itself
    for value in rule.value if isinstance(rule.value, list) else [rule.value]:
        if coerce(column, value) is None:
            return (
                f"{value!r} is not a {kind}, as {rule.field} ({field_type.value}) holds: it matches nothing"
            )
    return None


def type_problems(nodes: list[tuple[str, Rule]], types: Mapping[str, FieldType]) -> list[tuple[str, str]]:
    """(TOML path, message) for every field condition among `nodes` its field's type cannot meet."""
    found = []
    for path, rule in nodes:
        why = unusable(rule, types[rule.field]) if rule.field is not None and rule.field in types else None
        if why is not None:
            found.append((path, why))
    return found


def segment_nodes(segments: Mapping[str, SegmentConfig]) -> list[tuple[str, Rule]]:
    """Every rule node of every segment, with its whole TOML path (`segments.<key>....`)."""
    return [
        (f"segments.{key}.{path}", rule)
        for key in sorted(segments)
        for path, rule in rule_nodes(segments[key])
    ]


def check_fields(segments: dict[str, SegmentConfig], known_fields: set[str]) -> list[tuple[str, str]]:
    """(TOML path, message) for every field condition naming a field no mapping rule declares."""
    return unknown_fields(segment_nodes(segments), known_fields)


def held_segments(
    segments: Mapping[str, SegmentConfig], known_fields: set[str], types: Mapping[str, FieldType]
) -> dict[str, list[str]]:
    """Per segment with a condition on a field nobody declared or sent, or one its type cannot meet, why."""
    nodes = segment_nodes(segments)
    held: dict[str, list[str]] = {}
    for path, message in unknown_fields(nodes, known_fields) + type_problems(nodes, types):
        held.setdefault(path.split(".", 2)[1], []).append(f"{path}: {message}")  # keys hold no dots
    return held


def rule_version(segment: SegmentConfig) -> str:
    """A stable hash of everything that decides membership (not the name or description)."""
    body = segment.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"name", "description"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def relative(rule: Rule) -> bool:
    """Whether one condition's result can change with `now` alone."""
    if rule.field is not None:
        return rule.op in ("within_last", "more_than_ago", "anniversary")
    if rule.event is not None:
        tests = [t for t in (rule.first, rule.last) if t is not None]
        return rule.within is not None or any(t.op in ("within_last", "more_than_ago") for t in tests)
    return False


def depends_on_time(segment: SegmentConfig) -> bool:
    """Whether membership can change with `now` alone, so the segment is re-evaluated in full each run."""
    return any(relative(rule) for _, rule in rule_nodes(segment))
