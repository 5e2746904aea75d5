"""Mapping rules that could never fill their field, found by `crmhub check`.

A type that cannot hold what the transforms give, transforms refusing what an earlier one gives, a
stream whose records name no contact, a HubSpot property connectors.hubspot.properties leaves out,
and a field crmhub writes itself. Not refused at load: each would stop every command over a rule
that a sync gets past, leaving one field empty.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jmespath

from connectors.hubspot.streams import modified_field
from crmhub.settings import Problem, Settings
from field_mapping.config import MappingRule
from field_mapping.model import FieldDefinition, Origin
from field_mapping.model import Problem as ValueProblem
from field_mapping.naming import field_name
from field_mapping.registry import FieldRegistry
from field_mapping.sources import KNOWN_STREAMS
from field_mapping.transforms import Transform, TransformError, build_transforms
from field_mapping.types import FieldType
from sync.consent.flags import SYSTEM_FIELDS
from sync.ingest import NON_PERSON_STREAMS
from sync.segments.config import BUILTIN_FIELDS
from sync.segments.scoring import SCORE_FIELD

__all__ = ["TRANSFORM_INPUTS", "mapping_problems"]

# Inputs each transform that makes a kind of value exists for, as sources send them (Stripe cents,
# Unix seconds, a phone number). Run through the real transform, what comes out is what the rule's
# type must hold. The others give what the payload holds, which only a sync can judge.
TRANSFORM_INPUTS: dict[str, tuple[Any, ...]] = {
    "cents_to_amount": (1999, 2000),
    "unix_to_datetime": (1_767_225_600,),
    "e164": ("+14155552671",),
}

# HubSpot returns these with every object, whichever properties are asked for.
_ALWAYS_RETURNED = frozenset({"hs_object_id", "createdate"})


def mapping_problems(settings: Settings) -> list[Problem]:
    """Mapping rules that could never fill their field, each sync failing silently instead.

    A type that cannot hold what the transforms give, transforms refusing what an earlier one gives,
    a stream whose records name no contact, a HubSpot property connectors.hubspot.properties leaves
    out, and a field crmhub writes itself.
    """
    problems: list[Problem] = []
    region = settings.field_mapping.identity.default_region
    for index, rule in enumerate(settings.field_mapping.rules):
        base = f"field_mapping.rules[{index}]"
        problems += _transform_problems(base, index, rule, region)
        if (rule.source, rule.stream) in NON_PERSON_STREAMS:
            streams = [s for s in KNOWN_STREAMS[rule.source] if (rule.source, s) not in NON_PERSON_STREAMS]
            problems.append(
                Problem(
                    f"{base}.stream",
                    f"expected a stream whose records name a contact ({', '.join(streams)}), found "
                    f'"{rule.stream}": {rule.source}.{rule.stream} records are stored but name no contact, '
                    "so the field is never filled (map the value from "
                    f"{' or '.join(f'{rule.source}.{s}' for s in streams)}, or remove the rule)",
                )
            )
        problems += _property_problems(base, rule, settings)
        own = _own_field(rule.field, settings)
        if own is not None:
            better = field_name(rule.source, (rule.field,))
            problems.append(
                Problem(
                    f"{base}.field",
                    f'expected a field crmhub does not write itself, found "{rule.field}": {own} '
                    f'(choose another field name, such as "{better}")',
                )
            )
    return problems


def _transform_problems(base: str, index: int, rule: MappingRule, region: str) -> list[Problem]:
    """The rule's transforms run on the inputs they exist for, and their output typed as the mapper would."""
    specs = [t if isinstance(t, str) else t.model_dump() for t in rule.transforms]
    values: list[Any] | None = None  # what the chain gives so far; None while it is the payload's own
    maker = ""
    for step, (spec, transform) in enumerate(zip(specs, build_transforms(specs, region), strict=True)):
        if not isinstance(spec, str):
            values = None  # a value map gives its table's values or its input: only a sync can tell
            continue
        inputs = values if values is not None else list(TRANSFORM_INPUTS.get(spec, ()))
        given, refusal = _apply(transform, inputs)
        if values is not None and not given and refusal is not None:
            return [
                Problem(
                    f"{base}.transforms[{step}]",
                    f"expected a transform that takes the {_kind(values[0])} {maker} gives, found "
                    f'"{spec}": every sync would report "{refusal}" and leave the field empty '
                    "(reorder or remove the transforms)",
                )
            ]
        if spec in TRANSFORM_INPUTS or values is not None:
            values = given or None
            maker = spec if spec in TRANSFORM_INPUTS else maker
    if not values:
        return []
    reasons = _reasons(rule, index, region, values)
    if None in reasons:
        return []
    holding = [t.value for t in FieldType if _reasons(rule, index, region, values, t) == [None] * len(values)]
    return [
        Problem(
            f"{base}.type",
            f"expected a type that holds the {_kind(values[0])} {maker} gives ({', '.join(holding)}), "
            f'found "{rule.type}": every sync would report "{reasons[0]}" '
            "(set one of those types, or change the transforms)",
        )
    ]


def _apply(transform: Transform, inputs: Sequence[Any]) -> tuple[list[Any], TransformError | None]:
    """What `transform` gives for the inputs it takes, and its last refusal."""
    given: list[Any] = []
    refusal: TransformError | None = None
    for value in inputs:
        try:
            given.append(transform(value))
        except TransformError as exc:
            refusal = exc
    return given, refusal


def _reasons(
    rule: MappingRule, index: int, region: str, values: Sequence[Any], ftype: FieldType | None = None
) -> list[str | None]:
    """Per value, what a sync reports when the rule's field (typed `ftype`) gets it; None when it fits."""
    # The registry is the mapper's own: the same conversion, the same "left out" or "kept, flagged".
    origin = Origin("rule", rule.source, rule.stream, rule.path, index)
    registry = FieldRegistry(region=region)
    definition = FieldDefinition(rule.field, ftype or rule.type, rule.field, origin, rule.wins)
    state = registry.add(definition, fixed=True)
    reasons: list[str | None] = []
    for value in values:
        found: list[ValueProblem] = []
        registry.accept(state, value, origin, found, [])
        reasons.append(found[0].reason if found else None)
    return reasons


def _kind(value: Any) -> str:
    return "text" if isinstance(value, str) else type(value).__name__


def _property_problems(base: str, rule: MappingRule, settings: Settings) -> list[Problem]:
    """HubSpot properties the rule's path reads that connectors.hubspot.properties does not pull."""
    selected = settings.connectors.hubspot.properties
    if rule.source != "hubspot" or not selected:
        return []
    pulled = {*selected, *_ALWAYS_RETURNED, modified_field(rule.stream)}
    problems = []
    for name in dict.fromkeys(_properties_read(jmespath.compile(rule.path).parsed)):
        if name in pulled:
            continue
        # Only a near miss is worth naming: the fix is usually the list, not the path.
        close = difflib.get_close_matches(name, selected, n=1, cutoff=0.8)
        typo = f' (or, if you meant "properties.{close[0]}", fix the path)' if close else ""
        problems.append(
            Problem(
                f"{base}.path",
                f'expected a property connectors.hubspot.properties pulls, found "properties.{name}": '
                f'"{name}" is not in that list, so it is never pulled (add '
                f'"{name}" to connectors.hubspot.properties, or leave the list out to pull every '
                f"property){typo}",
            )
        )
    return problems


# Nodes whose children are all read from the same object as the node itself.
_SAME_OBJECT = frozenset(
    {
        "or_expression",
        "and_expression",
        "not_expression",
        "comparator",
        "function_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
    }
)
# Nodes whose first child is read from the same object, the others from what it gives.
_FIRST_CHILD = frozenset(
    {"pipe", "projection", "value_projection", "filter_projection", "flatten", "index_expression"}
)


def _properties_read(node: Mapping[str, Any]) -> Iterator[str]:
    """The names `properties.<name>` a JMESPath tree reads from the record itself."""
    kind, children = node.get("type"), node.get("children") or []
    if kind == "subexpression" and len(children) > 1 and _head(children[0]) == "properties":
        name = _head(children[1])
        if name is not None:
            yield name
    if kind in _SAME_OBJECT:
        for child in children:
            yield from _properties_read(child)
    elif (kind in _FIRST_CHILD or kind == "subexpression") and children:
        yield from _properties_read(children[0])


def _head(node: Mapping[str, Any]) -> str | None:
    """The key a node reads first (`a` of `a`, `a[0]`, `a[*].b`), if it starts with one."""
    if node.get("type") == "field":
        return str(node["value"])
    if node.get("type") in _FIRST_CHILD and node.get("children"):
        return _head(node["children"][0])
    return None


def _own_field(name: str, settings: Settings) -> str | None:
    """Why crmhub's own writes and a rule's would overwrite each other in field `name`, or None."""
    fight = "so the rule and crmhub would overwrite each other"
    scoring = settings.scoring
    if name == SCORE_FIELD and (scoring.events or scoring.conditions):
        return f"[scoring] computes it for every contact at every sync, {fight}"
    if name in SYSTEM_FIELDS:
        return f"crmhub sets it itself ({SYSTEM_FIELDS[name][1]}), {fight}"
    if name in BUILTIN_FIELDS and name != SCORE_FIELD:
        # The segment compiler reads the contact's own identities and times for these names.
        return f"segments read each contact's own {name}, which crmhub keeps, never the rule's values"
    return None
