"""What mapping produces: field definitions, typed values, identity hints, problems, widenings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from connectors.records import Record
from field_mapping.types import FieldType

__all__ = [
    "IDENTITY_KINDS",
    "FieldDefinition",
    "FieldValue",
    "IdentityHint",
    "MappedRecord",
    "Origin",
    "Problem",
    "Widening",
]

# Kinds of identity a record can carry; identity resolution matches hints of the same kind.
IDENTITY_KINDS = (
    "email",
    "phone",
    "stripe_customer",
    "hubspot_contact",
    "typeform_hidden_id",
    "segmentio_user",
    "segmentio_anonymous",
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a field's values come from: a rule (with its index) or automatic, and the path."""

    kind: Literal["rule", "auto"]
    source: str
    stream: str
    path: str
    rule: int | None = None

    def __str__(self) -> str:
        where = f"rules[{self.rule}]" if self.rule is not None else "automatic"
        return f"{self.source}.{self.stream} {self.path} ({where})"


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    """A custom field: name, type, label, origin, conflict policy, and enum options seen so far."""

    name: str
    type: FieldType
    label: str
    origin: Origin
    wins: str | tuple[str, ...] = "latest"
    options: tuple[str, ...] = ()


# Not frozen, as building a frozen dataclass costs three times as much and there is one per value;
# the mapper shares one FieldValue between records holding the same raw value, so never modify one.
@dataclass(slots=True)
class FieldValue:
    """One typed value of one field from one record; None means the record holds no value."""

    field: str
    value: Any
    type: FieldType
    origin: Origin


@dataclass(frozen=True, slots=True)
class Problem:
    """A value kept in a weaker form (as text, or flagged invalid), with why; never dropped."""

    field: str
    origin: Origin
    raw: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} (from {self.origin})"


@dataclass(frozen=True, slots=True)
class Widening:
    """A field whose type had to widen to hold a value: a warning for the run report."""

    field: str
    old: FieldType
    new: FieldType
    origin: Origin
    raw: str

    def __str__(self) -> str:
        return f"{self.field}: widened from {self.old} to {self.new} to hold {self.raw} (from {self.origin})"


@dataclass(slots=True)
class IdentityHint:
    """One identity of a record: its kind, normalized value, raw value, and whether it is valid."""

    kind: str
    value: str
    raw: str
    valid: bool = True


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """A record as typed field values, identity hints, problems, widenings and fields it created."""

    record: Record
    values: Mapping[str, FieldValue]
    identities: tuple[IdentityHint, ...]
    problems: tuple[Problem, ...] = ()
    widenings: tuple[Widening, ...] = ()
    created: tuple[str, ...] = ()

    def identity(self, kind: str) -> IdentityHint | None:
        """The first hint of `kind`, or None."""
        return next((hint for hint in self.identities if hint.kind == kind), None)
