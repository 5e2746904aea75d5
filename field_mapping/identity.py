"""Identity hints of a record: normalized e-mails and phones, and the sources' own ids.

Where each source keeps them:
- Stripe: customers `id`, `email`, `phone`; other streams `customer` (an id, or an expanded object
  with its `email`), invoices `customer_email`/`customer_phone`, charges `billing_details.email`/`.phone` and
  `receipt_email`.
- HubSpot: contacts `id`, `properties.email`, `properties.phone`/`.mobilephone`; companies and
  deals carry the contacts they are associated with (`associations.contacts.results[].id`).
- Typeform: the hidden fields named in `[field_mapping.identity]` (the user id is also Segment.com's
  `userId` unless `typeform_hidden_id_is_segmentio_user = false`), and e-mail and phone answers.
- Segment.com: `userId`, `anonymousId`, `traits.email`/`.phone` (or `context.traits`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from field_mapping.config import IdentityConfig
from field_mapping.model import IDENTITY_KINDS, IdentityHint
from field_mapping.normalize import normalize_email, normalize_phone

__all__ = ["extract_identities", "identity_hints"]

Payload = Mapping[str, Any]


class _Hints:
    """Collects hints in order, once per kind and value."""

    __slots__ = ("hints", "region", "seen")

    def __init__(self, region: str) -> None:
        self.region = region
        self.hints: list[IdentityHint] = []
        self.seen: set[tuple[str, str]] = set()

    def _add(self, hint: IdentityHint) -> None:
        key = (hint.kind, hint.value)
        if key not in self.seen:
            self.seen.add(key)
            self.hints.append(hint)

    def email(self, raw: Any) -> None:
        if isinstance(raw, str) and raw.strip():
            value, valid = normalize_email(raw)
            self._add(IdentityHint("email", value, raw, valid))

    def phone(self, raw: Any) -> None:
        if isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw).strip():
            value, valid = normalize_phone(str(raw), self.region)
            self._add(IdentityHint("phone", value, str(raw), valid))

    def external(self, kind: str, raw: Any) -> None:
        if raw is not None and not isinstance(raw, str) and isinstance(raw, Mapping):
            raw = raw.get("id")  # an expanded object instead of its id
        if isinstance(raw, str | int) and not isinstance(raw, bool):
            text = str(raw)
            value = text.strip()
            if value:
                self._add(IdentityHint(kind, value, text))


def _get(payload: Payload, *keys: str) -> Any:
    value: Any = payload
    for key in keys:
        if not isinstance(value, dict | Mapping):
            return None
        value = value.get(key)
    return value


def _stripe(payload: Payload, stream: str, hints: _Hints, config: IdentityConfig) -> None:
    if stream == "customers":
        hints.external("stripe_customer", payload.get("id"))
        hints.email(payload.get("email"))
        hints.phone(payload.get("phone"))
        return
    hints.external("stripe_customer", payload.get("customer"))
    hints.email(_get(payload, "customer", "email"))
    hints.email(payload.get("customer_email"))
    hints.phone(payload.get("customer_phone"))
    hints.email(_get(payload, "billing_details", "email"))
    hints.phone(_get(payload, "billing_details", "phone"))
    hints.email(payload.get("receipt_email"))


def _hubspot(payload: Payload, stream: str, hints: _Hints, config: IdentityConfig) -> None:
    if stream == "contacts":
        hints.external("hubspot_contact", payload.get("id"))
        hints.email(_get(payload, "properties", "email"))
        hints.phone(_get(payload, "properties", "phone"))
        hints.phone(_get(payload, "properties", "mobilephone"))
        return
    for linked in _get(payload, "associations", "contacts", "results") or ():
        hints.external("hubspot_contact", linked)


def _typeform(payload: Payload, stream: str, hints: _Hints, config: IdentityConfig) -> None:
    hidden = payload.get("hidden")
    if isinstance(hidden, dict | Mapping):
        if config.typeform_hidden_id:
            for kind in _hidden_id_kinds(config):
                hints.external(kind, hidden.get(config.typeform_hidden_id))
        if config.typeform_hidden_email:
            hints.email(hidden.get(config.typeform_hidden_email))
    for answer in payload.get("answers") or ():
        kind = answer.get("type")
        if kind == "email":
            hints.email(answer.get("email"))
        elif kind == "phone_number":
            hints.phone(answer.get("phone_number"))


def _hidden_id_kinds(config: IdentityConfig) -> tuple[str, ...]:
    """The identities a Typeform hidden user id is: also Segment.com's userId unless configured apart."""
    if config.typeform_hidden_id_is_segmentio_user:
        return ("typeform_hidden_id", "segmentio_user")
    return ("typeform_hidden_id",)


def _segmentio(payload: Payload, stream: str, hints: _Hints, config: IdentityConfig) -> None:
    hints.external("segmentio_user", payload.get("userId"))
    hints.external("segmentio_anonymous", payload.get("anonymousId"))
    for traits in (payload.get("traits"), _get(payload, "context", "traits")):
        if isinstance(traits, dict | Mapping):
            hints.email(traits.get("email"))
            hints.phone(traits.get("phone"))


_BY_SOURCE: dict[str, Callable[[Payload, str, _Hints, IdentityConfig], None]] = {
    "stripe": _stripe,
    "hubspot": _hubspot,
    "typeform": _typeform,
    "segmentio": _segmentio,
}


def extract_identities(
    source: str, stream: str, payload: Payload, config: IdentityConfig
) -> tuple[IdentityHint, ...]:
    """Every identity hint of one record, in a fixed order, without duplicates."""
    hints = _Hints(config.default_region)
    extract = _BY_SOURCE.get(source)
    if extract is not None:
        extract(payload, stream, hints, config)
    return tuple(hints.hints)


def identity_hints(
    source: str, identities: Mapping[str, str], config: IdentityConfig
) -> tuple[IdentityHint, ...]:
    """Hints from a ContactEvent's `identities` (kind -> raw value): e-mails and phones normalized.

    Typeform events name hidden fields as the form does (`user_id`); the configured ones become
    `typeform_hidden_id` (and `segmentio_user`) and `email`, like the hints of the response record itself.
    """
    if source == "typeform":
        identities = _typeform_kinds(identities, config)
    hints = _Hints(config.default_region)
    for kind, raw in identities.items():
        if kind == "email":
            hints.email(raw)
        elif kind == "phone":
            hints.phone(raw)
        elif kind in IDENTITY_KINDS:
            hints.external(kind, raw)
    return tuple(hints.hints)


def _typeform_kinds(identities: Mapping[str, str], config: IdentityConfig) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name, raw in identities.items():
        if config.typeform_hidden_id and name == config.typeform_hidden_id:
            kinds.update(dict.fromkeys(_hidden_id_kinds(config), raw))
        elif name in ("email", "phone") or (
            config.typeform_hidden_email and name == config.typeform_hidden_email
        ):
            kinds.setdefault("email" if name != "phone" else "phone", raw)
    return kinds
