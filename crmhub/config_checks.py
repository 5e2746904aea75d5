"""Checks across parts of the configuration that no single part can make on its own.

Run by `crmhub check`, as they need the environment or the store: endpoints naming segments and
fields that do not exist, consent read from an unknown source, webhook secrets that are not
`whsec_` secrets, a Typeform connector with no form. (Mapping rules that could never fill their field:
crmhub.mapping_checks. Channel names are checked wherever the configuration loads: crmhub.channels.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crmhub.settings import Problem, Settings
from field_mapping.sources import SOURCES
from sync.segments.config import BUILTIN_FIELDS, hint
from webhooks.exceptions import SecretError
from webhooks.payload import IDENTITY_FIELDS
from webhooks.signing import decode_secret

__all__ = ["consent_notes", "reference_problems", "secret_format_problems"]


def _unknown(path: str, what: str, found: str, choices: Sequence[str], fix: str) -> Problem:
    return Problem(path, f'expected {what}, found "{found}"{hint(found, list(choices))} ({fix})')


def reference_problems(settings: Settings, stored_fields: set[str]) -> list[Problem]:
    """Endpoints naming unknown segments or fields, consent from unknown sources, a form-less Typeform."""
    problems: list[Problem] = []
    segments = sorted(settings.segments)
    known_fields = (
        stored_fields
        | BUILTIN_FIELDS
        | set(IDENTITY_FIELDS)
        | {rule.field for rule in settings.field_mapping.rules}
    )
    for name in sorted(settings.webhooks.endpoints):
        endpoint = settings.webhooks.endpoints[name]
        base = f"webhooks.endpoints.{name}"
        for i, key in enumerate(endpoint.segments):
            if key not in settings.segments:
                fix = "name a configured [segments.<key>], or leave segments out for all of them"
                problems.append(_unknown(f"{base}.segments[{i}]", "a configured segment", key, segments, fix))
        # Before the first sync automatic fields do not exist yet: only a store with fields can tell.
        for i, field in enumerate(endpoint.fields if stored_fields else []):
            if field not in known_fields:
                fix = "name a field `crmhub fields` lists, or one a [[field_mapping.rules]] entry writes"
                problems.append(
                    _unknown(f"{base}.fields[{i}]", "a known field", field, sorted(known_fields), fix)
                )
    for i, source in enumerate(settings.consent.sources):
        if source.source not in SOURCES:
            fix = "consent is read from a source's records"
            problems.append(
                _unknown(f"consent.sources[{i}].source", "a source", source.source, list(SOURCES), fix)
            )
    typeform = settings.connectors.typeform
    if typeform.enabled and not typeform.forms:
        problems.append(
            Problem(
                "connectors.typeform.forms",
                "expected the ids of the forms to pull (the part after /to/ in a form's link), found none",
            )
        )
    return problems


def secret_format_problems(settings: Settings, environ: Mapping[str, str]) -> list[Problem]:
    """Webhook endpoint secrets that are set but are not `whsec_` secrets (unset ones are reported apart)."""
    problems = []
    for name in sorted(settings.webhooks.endpoints):
        for i, env in enumerate(settings.webhooks.endpoints[name].secret_envs):
            value = environ.get(env)
            if not value:
                continue
            try:
                decode_secret(value, name=env)
            except SecretError as exc:
                problems.append(Problem(f"webhooks.endpoints.{name}.secret_envs[{i}]", str(exc)))
    return problems


def consent_notes(settings: Settings) -> list[str]:
    """Endpoints that require consent for segments that do not: an opt-out sends them no segment.left."""
    notes = []
    for name, endpoint in sorted(settings.webhooks.endpoints.items()):
        channel = endpoint.requires_consent
        if channel is None or "segment.entered" not in endpoint.events:
            continue
        keys = endpoint.segments or sorted(settings.segments)
        open_ended = [
            k for k in keys if k in settings.segments and settings.segments[k].requires_consent != channel
        ]
        if open_ended:
            notes.append(
                f"webhooks.endpoints.{name} requires {channel} consent, but segments {', '.join(open_ended)} "
                f"do not: an opt-out of {channel} holds back their later entries at {name}, yet sends it no "
                f"segment.left for them, so a person it already has stays in its lists; add "
                f'requires_consent = "{channel}" to the segments it messages, whose members then leave them '
                "when they opt out"
            )
    return notes
