"""The field registry: each field's current type, typing values into it, widening, and planning."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from field_mapping.convert import CONVERTERS, Converter, as_text
from field_mapping.inference import infer
from field_mapping.model import FieldDefinition, FieldValue, Origin, Problem, Widening
from field_mapping.transforms import InvalidValue, TransformError
from field_mapping.types import FieldType, widen

__all__ = ["LEFT_OUT", "FieldChange", "FieldPlan", "FieldRegistry", "FieldState", "plan_fields"]

_SHOW_MAX = 80

# How a problem ends when a rule's value does not fit the rule's type: the field gets no value.
LEFT_OUT = "left out of the field (the raw record keeps it)"


class FieldState:
    """A field as the registry holds it while mapping: its definition, mutable as it widens."""

    __slots__ = ("convert", "enum_max", "fixed", "hint", "label", "name", "options", "origin", "type", "wins")

    def __init__(
        self,
        definition: FieldDefinition,
        *,
        fixed: bool = False,
        enum_max: int = 20,
        hint: str = "",
    ) -> None:
        self.name = definition.name
        self.type = definition.type
        self.label = definition.label
        self.origin = definition.origin
        self.wins = definition.wins
        self.options: dict[str, None] = dict.fromkeys(definition.options)
        self.fixed = fixed
        self.enum_max = enum_max
        self.hint = hint
        self.convert: Converter = CONVERTERS[definition.type]

    def definition(self) -> FieldDefinition:
        """The field's definition as it stands now."""
        options = tuple(self.options) if self.type is FieldType.ENUM else ()
        return FieldDefinition(self.name, self.type, self.label, self.origin, self.wins, options)

    def retype(self, ftype: FieldType) -> None:
        """Switch the field to `ftype` (a widening, or a rule's declared type)."""
        self.type = ftype
        self.convert = CONVERTERS[ftype]


class FieldRegistry:
    """Every field known or seen, seeded with the store's definitions; types only ever widen."""

    def __init__(self, known: Iterable[FieldDefinition] = (), *, region: str = "US") -> None:
        self.region = region
        self.baseline: dict[str, FieldDefinition] = {d.name: d for d in known}
        self._fields: dict[str, FieldState] = {n: FieldState(d) for n, d in self.baseline.items()}
        # Counts every change to a definition (a field, a type, an enum option), so a store can
        # tell whether its saved definitions are behind without comparing them.
        self.revision = 0

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def get(self, name: str) -> FieldState | None:
        """The state of field `name`, or None if it is neither known nor seen."""
        return self._fields.get(name)

    def add(
        self, definition: FieldDefinition, *, fixed: bool = False, enum_max: int = 20, hint: str = ""
    ) -> FieldState:
        """Register a field; a known one keeps its type and options unless `fixed` (a rule) sets the type."""
        state = self._fields.get(definition.name)
        if state is None:
            state = self._fields[definition.name] = FieldState(
                definition, fixed=fixed, enum_max=enum_max, hint=hint
            )
            self.revision += 1
            return state
        if fixed and state.type is not definition.type:
            state.retype(definition.type)
            self.revision += 1
        state.fixed, state.enum_max, state.hint = fixed, enum_max, hint
        state.label, state.origin, state.wins = definition.label, definition.origin, definition.wins
        return state

    def accept(
        self, state: FieldState, raw: Any, origin: Origin, problems: list[Problem], widenings: list[Widening]
    ) -> FieldValue:
        """`raw` typed for `state`: converted, flagged, left out (a rule's type) or widening the field."""
        if raw is None or (raw == "" and state.type is not FieldType.STRING):
            # Sources send "" for a cleared value (HubSpot numbers, dates, flags): no value, like a
            # null, rather than text that would widen a typed field for good.
            return FieldValue(state.name, None, state.type, origin)
        try:
            value = state.convert(raw, self.region)
        except InvalidValue as exc:
            problems.append(Problem(state.name, origin, _show(raw), str(exc)))
            return FieldValue(state.name, exc.kept, state.type, origin)
        except TransformError as exc:
            if state.fixed:
                # The rule's type is the admin's choice, and its column holds only that type.
                problems.append(Problem(state.name, origin, _show(raw), f"{exc}; {LEFT_OUT}"))
                return FieldValue(state.name, None, state.type, origin)
            seen = infer(raw, state.hint, region=self.region) or FieldType.STRING
            return self._widen(state, widen(state.type, seen), raw, origin, widenings)
        if state.type is FieldType.ENUM and value not in state.options:
            if len(state.options) >= state.enum_max and not state.fixed:
                return self._widen(state, FieldType.STRING, raw, origin, widenings)
            state.options[value] = None
            self.revision += 1
        return FieldValue(state.name, value, state.type, origin)

    def _widen(
        self, state: FieldState, new: FieldType, raw: Any, origin: Origin, widenings: list[Widening]
    ) -> FieldValue:
        widenings.append(Widening(state.name, state.type, new, origin, _show(raw)))
        state.retype(new)
        self.revision += 1
        try:
            value = state.convert(raw, self.region)
        except TransformError:
            state.retype(FieldType.STRING)
            value = as_text(raw)
        return FieldValue(state.name, value, state.type, origin)

    def definitions(self) -> list[FieldDefinition]:
        """Every field's definition, in the order first registered."""
        return [state.definition() for state in self._fields.values()]

    def plan(self) -> FieldPlan:
        """What storing this registry would change compared with the definitions it was seeded with."""
        return plan_fields(self.baseline.values(), self.definitions())


@dataclass(frozen=True, slots=True)
class FieldChange:
    """A field whose type differs from the stored one."""

    name: str
    old: FieldType
    new: FieldType


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """Fields to create, to widen, to retype (a rule's type not wider than the stored one), new options."""

    create: tuple[FieldDefinition, ...] = ()
    widen: tuple[FieldChange, ...] = ()
    retype: tuple[FieldChange, ...] = ()
    new_options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when a sync would change no field definition."""
        return not (self.create or self.widen or self.retype or self.new_options)


def plan_fields(known: Iterable[FieldDefinition], current: Iterable[FieldDefinition]) -> FieldPlan:
    """Compare field definitions as stored (`known`) with those after mapping (`current`)."""
    before = {d.name: d for d in known}
    create: list[FieldDefinition] = []
    widened: list[FieldChange] = []
    retyped: list[FieldChange] = []
    options: dict[str, tuple[str, ...]] = {}
    for definition in current:
        old = before.get(definition.name)
        if old is None:
            create.append(definition)
            continue
        if old.type is not definition.type:
            change = FieldChange(definition.name, old.type, definition.type)
            (widened if widen(old.type, definition.type) is definition.type else retyped).append(change)
        had = set(old.options)
        added = tuple(o for o in definition.options if o not in had)
        if added and definition.type is FieldType.ENUM:
            options[definition.name] = added
    return FieldPlan(tuple(create), tuple(widened), tuple(retyped), options)


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."
