"""Automatic fields of Typeform responses: answers by field ref, hidden fields, score, submission time.

Names are `typeform_<form>_<ref>` (answers), `typeform_<form>_hidden_<name>` (hidden fields, kept
apart so a hidden field never collides with a question), `typeform_<form>_score`,
`typeform_<form>_variable_<key>` and `typeform_<form>_submitted_at`; `<form>` is the form's short
name from `form_names`, else its id. The form id is read from the payload's `form_id` (present in
webhook payloads; connectors add it to pulled responses). Answers with URLs and uploaded files are
skipped with the built-in skips; response metadata (browser, referer, user agent) is not kept.
Patterns match `<form>.<ref>`, `<form>.hidden.<name>`, `<form>.score`, `<form>.variables.<key>`,
`<form>.submitted_at`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from field_mapping.auto import SKIP, AutoLeaf, Claim, Leaves, Selector, join_scalars, json_path
from field_mapping.config import TypeformAutoConfig
from field_mapping.inference import typeform_declared_type
from field_mapping.model import Origin
from field_mapping.naming import field_name, name_part
from field_mapping.types import FieldType

__all__ = ["TypeformFlattener", "answer_value"]

_URL_TYPES = frozenset({"url", "file_url"})


def answer_value(answer: Mapping[str, Any]) -> tuple[str, Any]:
    """(JMESPath of the value inside the answer, the value) for each Typeform answer value type."""
    kind = answer.get("type")
    if kind == "choice":
        choice = answer.get("choice") or {}
        if choice.get("label") is not None:
            return "choice.label", choice["label"]
        return "choice.other", choice.get("other")
    if kind == "choices":
        choices = answer.get("choices") or {}
        labels = list(choices.get("labels") or ())
        if choices.get("other"):
            labels.append(choices["other"])
        return "choices.labels", join_scalars(labels)
    if kind == "payment":
        return "payment.amount", (answer.get("payment") or {}).get("amount")
    if isinstance(kind, str):
        return kind, answer.get(kind)
    return "", SKIP


class TypeformFlattener:
    """Named leaves of Typeform responses, decided once per form and path."""

    def __init__(self, *, settings: TypeformAutoConfig, covered: Iterable[str], claim: Claim) -> None:
        self.settings = settings
        self.select = Selector(settings, covered)
        self.claim = claim
        self._leaves: dict[tuple[str, str], AutoLeaf | None] = {}

    def leaves(self, payload: Mapping[str, Any]) -> Leaves:
        """Every kept answer, hidden field, score and the submission time of one response."""
        form = str(payload.get("form_id") or "")
        out: Leaves = []
        self._answers(form, payload.get("answers") or (), out)
        hidden = payload.get("hidden")
        if isinstance(hidden, dict | Mapping):
            for name, value in hidden.items():
                self._add(out, value, form, f"hidden.{name}", json_path("hidden", name), ("hidden", name))
        calculated = payload.get("calculated")
        if isinstance(calculated, dict | Mapping) and "score" in calculated:
            score = calculated["score"]
            self._add(out, score, form, "score", "calculated.score", ("score",), FieldType.INTEGER)
        for variable in payload.get("variables") or ():
            name, kind = str(variable.get("key")), str(variable.get("type"))
            path = f"variables[?key=={_literal(name)}] | [0].{kind}"
            self._add(out, variable.get(kind), form, f"variables.{name}", path, ("variable", name))
        if "submitted_at" in payload:
            submitted = payload["submitted_at"]
            self._add(
                out, submitted, form, "submitted_at", "submitted_at", ("submitted_at",), FieldType.DATETIME
            )
        return out

    def _answers(self, form: str, answers: Iterable[Mapping[str, Any]], out: Leaves) -> None:
        cache = self._leaves
        for answer in answers:
            head = answer.get("field") or {}
            ref = str(head.get("ref") or head.get("id") or "")
            key = (form, ref)
            leaf = cache[key] if key in cache else self._answer_leaf(form, ref, str(head.get("type")), answer)
            if leaf is not None:
                value = answer_value(answer)[1]
                if value is not SKIP:
                    out.append((leaf, value))

    def _add(
        self,
        out: Leaves,
        value: Any,
        form: str,
        key: str,
        path: str,
        parts: tuple[str, ...],
        declared: FieldType | None = None,
    ) -> None:
        cached = (form, key)
        leaf = (
            self._leaves[cached]
            if cached in self._leaves
            else self._make(form, key, key, path, parts, declared)
        )
        if leaf is not None:
            out.append((leaf, value))

    def _answer_leaf(self, form: str, ref: str, question: str, answer: Mapping[str, Any]) -> AutoLeaf | None:
        value_path, _ = answer_value(answer)
        value_type = str(answer.get("type"))
        path = f"answers[?field.ref=={_literal(ref)}] | [0].{value_path}"
        declared = typeform_declared_type(question, value_type)
        if self.settings.skip_builtin and value_type in _URL_TYPES:
            self._leaves[(form, ref)] = None
            return None
        return self._make(form, ref, ref, path, (ref,), declared)

    def _make(
        self, form: str, key: str, hint: str, path: str, parts: tuple[str, ...], declared: FieldType | None
    ) -> AutoLeaf | None:
        glob = f"{form}.{key}"
        leaf: AutoLeaf | None = None
        if not self.select.skipped(glob) and self.select.kept_leaf(glob, path):
            short = self.settings.form_names.get(form) or name_part(form, split_camel=False)
            name = self.claim(
                field_name(f"typeform_{short}" if short else "typeform", parts), f"typeform:{glob}"
            )
            settings = self.settings
            origin = Origin("auto", "typeform", "responses", path)
            leaf = AutoLeaf(
                name,
                origin,
                hint.rsplit(".", 1)[-1],
                declared,
                settings.enum_max_distinct,
                settings.enum_max_length,
            )
        self._leaves[(form, key)] = leaf
        return leaf


def _literal(text: str) -> str:
    # A JMESPath raw string literal: single quotes, with quotes and backslashes escaped.
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
