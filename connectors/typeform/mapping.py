"""Typeform form definitions and responses into definitions, Records and ContactEvents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.exceptions import MalformedPageError
from connectors.records import ContactEvent, Record

__all__ = [
    "FormDefinition",
    "FormField",
    "answer_value",
    "form_definition",
    "response_event",
    "response_record",
]


@dataclass(frozen=True, slots=True)
class FormField:
    """A question of a form: `ref` is the stable key answers are filed under."""

    id: str
    ref: str
    title: str
    type: str


@dataclass(frozen=True, slots=True)
class FormDefinition:
    """A form's questions (groups flattened) and its hidden fields, for field mapping."""

    id: str
    title: str
    fields: tuple[FormField, ...]
    hidden: tuple[str, ...]


def _flatten(fields: Any) -> list[FormField]:
    found: list[FormField] = []
    for f in fields if isinstance(fields, list) else []:
        if not isinstance(f, Mapping):
            continue
        found.append(
            FormField(
                id=str(f.get("id", "")),
                ref=str(f.get("ref") or f.get("id", "")),
                title=str(f.get("title", "")),
                type=str(f.get("type", "")),
            )
        )
        # Question groups hold their questions inside `properties.fields`.
        inner = f.get("properties")
        if isinstance(inner, Mapping):
            found.extend(_flatten(inner.get("fields")))
    return found


def form_definition(body: Mapping[str, Any]) -> FormDefinition:
    """A `GET /forms/{id}` body as a FormDefinition."""
    if not isinstance(body.get("id"), str):
        raise MalformedPageError(
            "typeform: form definition: malformed page: 'id' is missing: check connectors.typeform.forms"
        )
    hidden = body.get("hidden")
    return FormDefinition(
        id=body["id"],
        title=str(body.get("title", "")),
        fields=tuple(_flatten(body.get("fields"))),
        hidden=tuple(str(h) for h in hidden) if isinstance(hidden, list) else (),
    )


def answer_value(answer: Mapping[str, Any]) -> Any:
    """The value of an answer, whatever its type (`text`, `email`, `choice`, `choices`, ...)."""
    kind = answer.get("type")
    value = answer.get(kind) if isinstance(kind, str) else None
    if kind == "choice" and isinstance(value, Mapping):
        return value.get("label") or value.get("other")
    if kind == "choices" and isinstance(value, Mapping):
        labels = list(value.get("labels") or [])
        return [*labels, value["other"]] if value.get("other") else labels
    return value


def _answers(item: Mapping[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for answer in item.get("answers") or []:
        field = answer.get("field") if isinstance(answer, Mapping) else None
        if isinstance(field, Mapping):
            answers[str(field.get("ref") or field.get("id"))] = answer_value(answer)
    return answers


def _identities(item: Mapping[str, Any]) -> dict[str, str]:
    """Hidden fields as given (`email`, `user_id`, ...), then e-mail and phone answers if still missing."""
    found = {str(k): str(v) for k, v in (item.get("hidden") or {}).items() if v not in (None, "")}
    for answer in item.get("answers") or []:
        if not isinstance(answer, Mapping):
            continue
        if answer.get("type") == "email" and answer.get("email"):
            found.setdefault("email", str(answer["email"]))
        if answer.get("type") == "phone_number" and answer.get("phone_number"):
            found.setdefault("phone", str(answer["phone_number"]))
    return found


def response_record(form_id: str, item: Mapping[str, Any], submitted_at: datetime) -> Record:
    """A response as a Record keyed by its token; the payload gains `form_id`."""
    return Record(
        source="typeform",
        stream="responses",
        external_id=str(item["token"]),
        updated_at=submitted_at,
        payload={**item, "form_id": form_id},
    )


def response_event(form_id: str, item: Mapping[str, Any], submitted_at: datetime) -> ContactEvent | None:
    """`form.submitted` for the person the response names; None when it names no one."""
    who = _identities(item)
    if not who:
        return None
    return ContactEvent(
        source="typeform",
        name="form.submitted",
        external_id=str(item["token"]),
        occurred_at=submitted_at,
        identities=who,
        properties={"form_id": form_id, "answers": _answers(item)},
    )
