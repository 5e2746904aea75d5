"""Segment field conditions against field types: built-in fields, literals in stored form, unusable tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from field_mapping.normalize import dialable, normalize_email, normalize_phone
from field_mapping.types import STORAGE, Column, FieldType
from sync.segments.config import (
    BUILTIN_FIELDS,
    CONTACT_TYPES,
    DEFAULT_REGION,
    Rule,
    SegmentConfig,
    hint,
    segment_nodes,
)
from sync.segments.values import coerce

__all__ = [
    "check_fields",
    "held_segments",
    "stored_form",
    "type_problems",
    "unknown_fields",
    "unusable",
    "with_builtins",
]

# The tests that compare whole values, where a literal must be exactly what the store holds.
_WHOLE = ("eq", "ne", "in", "not_in")


def with_builtins(types: Mapping[str, FieldType]) -> dict[str, FieldType]:
    """`types` (the store's fields by name) with the built-in fields' types, as the compiler reads them."""
    return {"lead_score": FieldType.DECIMAL, **types, **CONTACT_TYPES}


def _stored_literal(value: Any, name: str, field_type: FieldType, region: str) -> tuple[Any, bool]:
    """(`value` as the store holds it in field `name`, whether a value of that field can be it)."""
    if field_type is FieldType.EMAIL and isinstance(value, str):
        return normalize_email(value)[0], True
    if field_type is FieldType.PHONE and isinstance(value, str | int) and not isinstance(value, bool):
        number, valid = normalize_phone(str(value), region)
        # A phone identity keeps its extension (`;ext=12`); a phone field holds the number to dial.
        return (number if name == "phone" else dialable(number)), valid
    return value, True


def stored_form(rule: Rule, field_type: FieldType | None, region: str = DEFAULT_REGION) -> Rule:
    """The rule with its literals as the store holds a `field_type` field's values.

    E-mail addresses in lower case (for every test); phone numbers in E.164, national ones read in
    `region`, for the tests that compare whole values (eq, ne, in, not_in).
    """
    if rule.field is None or rule.value is None or field_type not in (FieldType.EMAIL, FieldType.PHONE):
        return rule
    if field_type is FieldType.PHONE and rule.op not in _WHOLE:
        return rule
    values = rule.value if isinstance(rule.value, list) else [rule.value]
    stored = [_stored_literal(v, rule.field, field_type, region)[0] for v in values]
    return rule.model_copy(update={"value": stored if isinstance(rule.value, list) else stored[0]})


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


def unusable(rule: Rule, field_type: FieldType, region: str = DEFAULT_REGION) -> str | None:
    """Why a field condition can never hold as meant for a field of `field_type`, or None if it can.

    The compiler turns such a test into "matches nothing" (or, for `ne` and `not_in`, "everything"),
    which would empty (or fill) a segment on a typo: `gte = "nine"` on a number, `contains` on one,
    `eq = "555-12"` on a phone (national numbers are read in `region`).
    """
    column, op = STORAGE[field_type], rule.op
    if op is None or op in ("exists", "missing"):
        return None
    kind = _KIND_OF[column]
    if op in _NEEDS and column not in _NEEDS[op]:
        return f'"{op}" does not apply to {rule.field}, {_a(field_type.value)} field ({kind} values)'
    if op in ("within_last", "more_than_ago", "anniversary"):
        return None  # a duration, checked with the rule itself
    outcome = "every contact with a value" if op in ("ne", "not_in") else "nothing"
    for value in rule.value if isinstance(rule.value, list) else [rule.value]:
        if coerce(column, value) is None:
            return (
                f"{value!r} is not a {kind}, as {rule.field} ({field_type.value}) holds: it matches {outcome}"
            )
        phone = field_type is FieldType.PHONE and op in _WHOLE and rule.field is not None
        if phone and not _stored_literal(value, str(rule.field), field_type, region)[1]:
            return (
                f"{value!r} is not a valid phone number (read in region {region}), as {rule.field} "
                f"({field_type.value}) holds: it matches {outcome}"
            )
    return None


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def type_problems(
    nodes: list[tuple[str, Rule]], types: Mapping[str, FieldType], region: str = DEFAULT_REGION
) -> list[tuple[str, str]]:
    """(TOML path, message) for every field condition among `nodes` its field's type cannot meet.

    `types` are the store's fields; the built-in ones (`with_builtins`) are added here.
    """
    typed = with_builtins(types)
    found = []
    for path, rule in nodes:
        field_type = typed.get(rule.field) if rule.field is not None else None
        why = None if field_type is None else unusable(rule, field_type, region)
        if why is not None:
            found.append((path, why))
    return found


def check_fields(segments: dict[str, SegmentConfig], known_fields: set[str]) -> list[tuple[str, str]]:
    """(TOML path, message) for every field condition naming a field no mapping rule declares."""
    return unknown_fields(segment_nodes(segments), known_fields)


def held_segments(
    segments: Mapping[str, SegmentConfig],
    known_fields: set[str] | None,
    types: Mapping[str, FieldType],
    region: str = DEFAULT_REGION,
) -> dict[str, list[str]]:
    """Per segment with a condition on a field nobody declared or sent, or one its type cannot meet, why.

    With `known_fields` None (the mapping rules unknown), only the tests types cannot meet.
    """
    nodes = segment_nodes(segments)
    unknown = [] if known_fields is None else unknown_fields(nodes, known_fields)
    held: dict[str, list[str]] = {}
    for path, message in unknown + type_problems(nodes, types, region):
        held.setdefault(path.split(".", 2)[1], []).append(f"{path}: {message}")  # keys hold no dots
    return held
