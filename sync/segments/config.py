"""`[segments.<key>]`: the rule language in TOML, validated at load with TOML paths and hints."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import operator
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from field_mapping.types import Column, FieldType
from sync.segments.values import coerce, parse_duration, parse_time

__all__ = [
    "BUILTIN_FIELDS",
    "BUILTIN_TYPES",
    "CONTACT_TYPES",
    "DEFAULT_REGION",
    "FIELD_OPS",
    "Comparison",
    "Duration",
    "PropertyName",
    "Rule",
    "SegmentConfig",
    "SegmentsConfig",
    "TimeTest",
    "dependencies",
    "depends_on_time",
    "evaluation_order",
    "graph_problems",
    "hint",
    "relative",
    "rule_nodes",
    "rule_version",
    "segment_nodes",
    "walk",
]

Scalar = str | bool | int | float | datetime | date
SegmentKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,99}$")]
# Property names go into a JSON path; keeping them plain keeps that path unambiguous on both backends.
PropertyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{1,100}$")]
# An event property's wanted value: a JSON string, boolean or number, matched with that JSON type only.
PropertyValue = str | bool | int | Annotated[float, Field(allow_inf_nan=False)]

SCALAR_OPS = ("eq", "ne", "contains", "starts_with", "ends_with", "gt", "gte", "lt", "lte")
LIST_OPS = ("in", "not_in")
TIME_OPS = ("before", "after", "within_last", "more_than_ago", "anniversary")
FIELD_OPS = (*SCALAR_OPS, *LIST_OPS, "between", "exists", "missing", *TIME_OPS)
# Fields every contact has without a mapping rule: contact columns, identities, the lead score.
# The compiler reads the first four from `contacts` and `contact_identities`, whatever the store's
# field definitions say; the lead score is the `lead_score` field scoring declares (decimal).
CONTACT_TYPES: dict[str, FieldType] = {
    "created_at": FieldType.DATETIME,
    "last_activity_at": FieldType.DATETIME,
    "email": FieldType.EMAIL,
    "phone": FieldType.PHONE,
}
BUILTIN_TYPES: Mapping[str, FieldType] = {**CONTACT_TYPES, "lead_score": FieldType.DECIMAL}
BUILTIN_FIELDS = frozenset(BUILTIN_TYPES)
# How a national phone number in a rule is read when the caller names no region (as the identity
# config's own default, `[field_mapping.identity] default_region`).
DEFAULT_REGION = "US"
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
        for op, bound in self.bounds():
            if not math.isfinite(bound):
                raise ValueError(f"expected a finite number for {op}, found {bound}")
        if self.empty(integers=False):
            raise ValueError(f"expected bounds some number meets, found {self.shown()}, which none does")
        return self

    def shown(self) -> str:
        """The bounds as written: `gte = 1, lt = 1`."""
        return ", ".join(f"{op} = {bound:g}" for op, bound in self.bounds())

    def empty(self, *, integers: bool) -> bool:
        """Whether no number (no count >= 0, with `integers`) satisfies every bound."""
        low, high = -math.inf, math.inf
        low_open = high_open = False
        for op, bound in self.bounds():
            if op in ("gt", "gte", "eq") and (bound > low or (bound == low and op == "gt")):
                low, low_open = bound, op == "gt"
            if op in ("lt", "lte", "eq") and (bound < high or (bound == high and op == "lt")):
                high, high_open = bound, op == "lt"
        if integers:
            # The whole numbers in the range, counts being 0 or more.
            first = 0 if low == -math.inf else max(0, math.floor(low) + 1 if low_open else math.ceil(low))
            last = math.inf if high == math.inf else (math.ceil(high) - 1 if high_open else math.floor(high))
            return first > last or (first == last and self.ne == first)
        if low > high or (low == high and (low_open or high_open)):
            return True
        return low == high and self.ne == low  # one value left, and `ne` rules it out

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
    where: dict[PropertyName, PropertyValue] | None = None
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
        if op == "between":
            _low_to_high(*value)
        if op in SCALAR_OPS and isinstance(value, list):
            raise ValueError(f'expected one value for "{op}", found a list (use "in" for several)')
        if op in ("before", "after") and (isinstance(value, list) or parse_time(value) is None):
            raise ValueError(f'expected a date or date-time for "{op}", found {_shape(value)}')
        if op in ("within_last", "more_than_ago"):
            if not isinstance(value, str):
                raise ValueError(f'expected a duration such as "30d" for "{op}", found {_shape(value)}')
            parse_duration(value)
        return value

    @field_validator("count")
    @classmethod
    def _countable(cls, count: Comparison) -> Comparison:
        if count.empty(integers=True):
            raise ValueError(
                f"expected bounds some count (0, 1, 2, ...) meets, found {count.shown()}, which none does"
            )
        return count

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


def _low_to_high(low: Any, high: Any) -> None:
    """Refuse `between = [high, low]`, which matches nobody, for numbers and times alike."""
    for column in (Column.NUM, Column.TIME):
        first, last = coerce(column, low), coerce(column, high)
        if first is not None and last is not None and first > last:
            raise ValueError(
                f'expected [low, high] with low <= high for "between", found low {_shape(low)} > '
                f"high {_shape(high)}: it matches nothing"
            )


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


def rule_nodes(segment: SegmentConfig) -> list[tuple[str, Rule]]:
    """Every node of the segment's rule tree with its TOML path below `segments.<key>`."""
    if segment.not_ is not None:
        return walk(segment.not_, "not")
    key = "all" if segment.all is not None else "any"
    return [n for i, r in enumerate(getattr(segment, key)) for n in walk(r, f"{key}[{i}]")]


def dependencies(segment: SegmentConfig) -> set[str]:
    """Keys of the segments this segment's rule refers to with `in_segment`."""
    return {r.in_segment for _, r in rule_nodes(segment) if r.in_segment is not None}


def graph_problems(segments: Mapping[str, SegmentConfig]) -> list[tuple[str, str]]:
    """(path below `segments`, message) for each in_segment naming no configured segment, else a cycle."""
    unknown = [
        (
            f"{key}.{path}.in_segment",
            f'expected in_segment to name a configured segment, found "{rule.in_segment}"'
            f"{hint(rule.in_segment, sorted(segments))}",
        )
        for key in sorted(segments)
        for path, rule in rule_nodes(segments[key])
        if rule.in_segment is not None and rule.in_segment not in segments
    ]
    if unknown:
        return unknown
    state: dict[str, str] = {}

    def visit(key: str, trail: list[str]) -> tuple[str, str] | None:
        state[key] = "active"
        chain = [*trail, key]
        for path, rule in rule_nodes(segments[key]):
            dep = rule.in_segment
            if dep is None or state.get(dep) == "done":
                continue
            if state.get(dep) == "active":
                cycle = " -> ".join([*chain[chain.index(dep) :], dep])
                found = f"expected in_segment references without cycles, found the cycle {cycle}"
                return f"{key}.{path}.in_segment", found
            if (problem := visit(dep, chain)) is not None:
                return problem
        state[key] = "done"
        return None

    for key in sorted(segments):
        if key not in state and (problem := visit(key, [])) is not None:
            return [problem]
    return []


def evaluation_order(segments: Mapping[str, SegmentConfig]) -> list[str]:
    """Segment keys with every segment after the ones it depends on; raises ValueError on a cycle."""
    problems = graph_problems(segments)
    if problems:
        path, message = problems[0]
        raise ValueError(f"segments.{path}: {message}")
    order: list[str] = []

    def visit(key: str) -> None:
        if key not in order:
            for dep in sorted(dependencies(segments[key])):
                visit(dep)
            order.append(key)

    for key in sorted(segments):
        visit(key)
    return order


def _loc(path: str) -> tuple[str | int, ...]:
    """`a.all[0].in_segment` as pydantic's location `("a", "all", 0, "in_segment")`."""
    return tuple(int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path))


def _check_graph(segments: dict[str, SegmentConfig]) -> dict[str, SegmentConfig]:
    problems = graph_problems(segments)
    if problems:
        # Raised as a ValidationError, its locations nest below `segments`: each names its rule node.
        raise ValidationError.from_exception_data(
            "segments",
            [
                InitErrorDetails(
                    type=PydanticCustomError("value_error", "Value error, {error}", {"error": message}),
                    loc=_loc(path),
                    input=path,
                )
                for path, message in problems
            ],
        )
    return segments


SegmentsConfig = Annotated[dict[SegmentKey, SegmentConfig], AfterValidator(_check_graph)]


def segment_nodes(segments: Mapping[str, SegmentConfig]) -> list[tuple[str, Rule]]:
    """Every rule node of every segment, with its whole TOML path (`segments.<key>....`)."""
    return [
        (f"segments.{key}.{path}", rule)
        for key in sorted(segments)
        for path, rule in rule_nodes(segments[key])
    ]


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
