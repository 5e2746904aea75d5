"""The mapper: records in, typed field values, identity hints, problems and widenings out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.records import Record
from field_mapping.auto import AutoLeaf, DictFlattener, Leaves
from field_mapping.auto_typeform import TypeformFlattener
from field_mapping.config import FieldMappingConfig, MappingRule, TypeformAutoConfig
from field_mapping.identity import extract_identities
from field_mapping.inference import HUBSPOT_CONTACT_TYPES, infer
from field_mapping.model import FieldDefinition, FieldValue, MappedRecord, Origin, Problem, Widening
from field_mapping.naming import label_for, unique_name
from field_mapping.paths import Lookup, PathFailed, compile_path
from field_mapping.registry import LEFT_OUT, FieldPlan, FieldRegistry, FieldState
from field_mapping.sources import KNOWN_STREAMS, stream_prefix
from field_mapping.transforms import InvalidValue, Transform, TransformError, build_transforms
from field_mapping.types import STORAGE, Column, FieldType

__all__ = ["Mapper"]

# Where automatic fields start inside each source's payloads.
_ROOTS = {"hubspot": "properties", "segmentio": "traits"}


class _Flattener(Protocol):
    def leaves(self, payload: Mapping[str, Any]) -> Leaves: ...


@dataclass(frozen=True, slots=True)
class _Rule:
    lookup: Lookup
    transforms: tuple[Transform, ...]
    state: FieldState
    origin: Origin


@dataclass(frozen=True, slots=True)
class _StreamPlan:
    rules: tuple[_Rule, ...]
    flattener: _Flattener | None


class Mapper:
    """Maps records of every stream; holds the field registry, so types widen across records.

    `known` seeds the registry with the store's field definitions (so a second sync creates
    nothing); `declared` gives source-declared types by `"source.stream"` and flattened path,
    e.g. `{"hubspot.contacts": hubspot_declared_types(properties)}`. Not thread-safe: one mapper
    per sync worker.
    """

    def __init__(
        self,
        config: FieldMappingConfig,
        *,
        known: Iterable[FieldDefinition] = (),
        declared: Mapping[str, Mapping[str, FieldType]] | None = None,
    ) -> None:
        self.config = config
        self.region = config.identity.default_region
        self.registry = FieldRegistry(known, region=self.region)
        # Field name -> the path key that owns it; None for a stored field any path may claim.
        self._owners: dict[str, str | None] = {
            name: _stored_owner(definition) for name, definition in self.registry.baseline.items()
        }
        self._declared: dict[str, Mapping[str, FieldType]] = {"hubspot.contacts": HUBSPOT_CONTACT_TYPES}
        for key, types in (declared or {}).items():
            self._declared[key] = {**self._declared.get(key, {}), **types}
        # Types a source declares that are read only once its first record of a stream is mapped.
        self._declared_later: dict[str, Callable[[], Mapping[str, FieldType]]] = {}
        self._rule_states: dict[str, FieldState] = {}
        self._rules = [self._rule(index, rule) for index, rule in enumerate(config.rules)]
        self._plans: dict[tuple[str, str], _StreamPlan] = {}

    def map_record(self, record: Record) -> MappedRecord:
        """Typed values of every rule and automatic field of `record`, its identities and problems."""
        plan = self._plans.get((record.source, record.stream)) or self._plan(record.source, record.stream)
        payload = record.payload
        values: dict[str, FieldValue] = {}
        problems: list[Problem] = []
        widenings: list[Widening] = []
        created: list[str] = []
        if plan.rules:
            self._map_rules(plan.rules, payload, values, problems, widenings)
        if plan.flattener is not None:
            self._map_auto(plan.flattener.leaves(payload), values, problems, widenings, created)
        identities = extract_identities(record.source, record.stream, payload, self.config.identity)
        return MappedRecord(record, values, identities, tuple(problems), tuple(widenings), tuple(created))

    def _map_rules(
        self,
        rules: tuple[_Rule, ...],
        payload: Mapping[str, Any],
        values: dict[str, FieldValue],
        problems: list[Problem],
        widenings: list[Widening],
    ) -> None:
        for rule in rules:
            name = rule.state.name
            held = values.get(name)
            if held is not None and held.value is not None:
                continue  # an earlier rule of this stream already gave this field a value
            try:
                raw = rule.lookup(payload)
            except PathFailed as exc:
                # This record only: the field stays empty for it, and the run report says why.
                shown = f"path {rule.origin.path!r} failed: {exc}"
                problems.append(Problem(name, rule.origin, shown, f"{shown}; {LEFT_OUT}"))
                values[name] = FieldValue(name, None, rule.state.type, rule.origin)
                continue
            if raw == "" and rule.state.type is not FieldType.STRING:
                raw = None  # no value, as `FieldRegistry.accept` has it; not a transform's failure
            if raw is not None and rule.transforms:
                done = self._transform(rule, raw, problems)
                if isinstance(done, FieldValue):
                    values[name] = done
                    continue
                raw = done
            values[name] = self.registry.accept(rule.state, raw, rule.origin, problems, widenings)

    def _map_auto(
        self,
        leaves: Leaves,
        values: dict[str, FieldValue],
        problems: list[Problem],
        widenings: list[Widening],
        created: list[str],
    ) -> None:
        registry = self.registry
        accept = registry.accept
        for leaf, raw in leaves:
            state = leaf.state
            if state is None:
                if raw is None or raw == "":
                    # A field is created by its first value, not by a null or "" (whose type says
                    # nothing); only this leaf makes a field of this name, so one look at the
                    # registry per leaf is enough.
                    if leaf.absent:
                        continue
                    if leaf.name not in registry:
                        leaf.absent = True
                        continue
                state = leaf.state = self._auto_state(leaf.name, leaf, raw, created)
                leaf.absent = False
            last = leaf.last
            # Statuses, currencies, flags and nulls repeat from record to record: reuse the typed value.
            if (
                last is not None
                and last.type is state.type
                and raw == leaf.last_raw
                and type(raw) is type(leaf.last_raw)
            ):
                values[leaf.name] = last
                continue
            flagged = len(problems) + len(widenings)
            value = values[leaf.name] = accept(state, raw, leaf.origin, problems, widenings)
            if len(problems) + len(widenings) == flagged:
                leaf.last, leaf.last_raw = value, raw

    def declare(self, key: str, types: Callable[[], Mapping[str, FieldType]]) -> None:
        """Types `"source.stream"` declares, by flattened path, read when its first record is mapped.

        Late because a source learns them from its API (HubSpot's property definitions) when it
        starts to pull; they win over inference for fields not stored yet.
        """
        self._declared_later[key] = types
        source, _, stream = key.partition(".")
        self._plans.pop((source, stream), None)  # a plan made before holds the types it had

    def definitions(self) -> list[FieldDefinition]:
        """Every field known or seen so far, with its current type and enum options."""
        return self.registry.definitions()

    def plan(self) -> FieldPlan:
        """The fields the records mapped so far would create or widen, against the `known` ones."""
        return self.registry.plan()

    def _transform(self, rule: _Rule, raw: Any, problems: list[Problem]) -> Any:
        """`raw` through the rule's transforms, or the field's value when one of them fails."""
        state = rule.state
        try:
            for transform in rule.transforms:
                raw = transform(raw)
        except InvalidValue as exc:
            if STORAGE[state.type] is Column.TEXT:
                problems.append(Problem(state.name, rule.origin, repr(raw), str(exc)))
                return FieldValue(state.name, exc.kept, state.type, rule.origin)
            problems.append(Problem(state.name, rule.origin, repr(raw), f"{exc}; {LEFT_OUT}"))
            return FieldValue(state.name, None, state.type, rule.origin)
        except TransformError as exc:
            # Like a value that does not fit the rule's type: the typed column cannot hold it.
            problems.append(Problem(state.name, rule.origin, repr(raw), f"{exc}; {LEFT_OUT}"))
            return FieldValue(state.name, None, state.type, rule.origin)
        return raw

    def _auto_state(self, name: str, leaf: AutoLeaf, raw: Any, created: list[str]) -> FieldState:
        state = self.registry.get(name)
        if state is None:
            ftype = leaf.declared or infer(
                raw, leaf.hint, region=self.region, enum_max_length=leaf.enum_max_length
            )
            definition = FieldDefinition(name, ftype or FieldType.STRING, label_for(name), leaf.origin)
            created.append(name)
            return self.registry.add(definition, enum_max=leaf.enum_max, hint=leaf.hint)
        state.enum_max, state.hint = leaf.enum_max, leaf.hint
        return state

    def _rule(self, index: int, rule: MappingRule) -> tuple[MappingRule, _Rule]:
        origin = Origin("rule", rule.source, rule.stream, rule.path, index)
        definition = FieldDefinition(
            rule.field, rule.type, rule.label or label_for(rule.field), origin, rule.wins
        )
        self._owners[rule.field] = "rule"
        state = self._rule_states.get(rule.field)
        if state is None:
            # The first rule writing a field names its origin; later ones share the field.
            state = self.registry.add(definition, fixed=True, hint=rule.path.rsplit(".", 1)[-1])
            self._rule_states[rule.field] = state
        transforms = build_transforms(
            [t if isinstance(t, str) else t.model_dump() for t in rule.transforms], self.region
        )
        return rule, _Rule(compile_path(rule.path), transforms, state, origin)

    def _plan(self, source: str, stream: str) -> _StreamPlan:
        rules = tuple(
            compiled for rule, compiled in self._rules if rule.source == source and rule.stream == stream
        )
        covered = [rule.path for rule, _ in self._rules if rule.source == source and rule.stream == stream]
        flattener: _Flattener | None = None
        settings = self.config.auto.for_source(source) if source in KNOWN_STREAMS else None
        if source == "hubspot" and settings is not None:
            # crmhub's own properties (see field_mapping.hubspot_properties.property_name) come back
            # on every pulled contact once pushed: as fields they would copy every pushed field.
            own = f"{self.config.hubspot.group_name}_*"
            settings = settings.model_copy(update={"exclude": [*settings.exclude, own]})
        if settings is not None and settings.stream_enabled(stream):
            if isinstance(settings, TypeformAutoConfig):
                flattener = TypeformFlattener(settings=settings, covered=covered, claim=self._claim)
            else:
                flattener = DictFlattener(
                    source=source,
                    stream=stream,
                    root=_ROOTS.get(source, ""),
                    prefix=stream_prefix(source, stream),
                    settings=settings,
                    covered=covered,
                    claim=self._claim,
                    declared=self._declared_for(f"{source}.{stream}"),
                )
        plan = self._plans[(source, stream)] = _StreamPlan(rules, flattener)
        return plan

    def _declared_for(self, key: str) -> Mapping[str, FieldType]:
        later = self._declared_later.pop(key, None)
        if later is not None:
            self._declared[key] = {**self._declared.get(key, {}), **later()}
        return self._declared.get(key, {})

    def _claim(self, candidate: str, key: str) -> str:
        """Grant `candidate` to the path `key` unless another path or a rule holds it."""
        owner = self._owners.get(candidate, key)
        if owner is None or owner == key:
            self._owners[candidate] = key
            return candidate
        name = unique_name(candidate, key)
        self._owners.setdefault(name, key)
        return name


def _stored_owner(definition: FieldDefinition) -> str | None:
    """The path key a stored automatic field was made for (as `DictFlattener` names it), if known.

    Two paths that sanitise to one name (`traits.first_name`, `traits.firstName`) would otherwise
    swap names in a later run, whichever came first, and one field would hold both attributes.
    Typeform's keys name the form, which a stored origin does not keep: those stay claimable.
    """
    origin = definition.origin
    if origin.kind != "auto" or origin.source not in _PATH_KEYED:
        return None
    return f"{origin.source}.{origin.stream}:{origin.path}"


_PATH_KEYED = frozenset(KNOWN_STREAMS) - {"typeform"}
