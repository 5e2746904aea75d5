"""`[consent]`: which identity each channel reaches, and the source fields that carry consent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sync.consent.exceptions import ConsentError

__all__ = ["ConsentConfig", "ConsentSource", "endpoints_by_channel"]

IdentityKind = Literal["email", "phone"]
_CHANNELS: dict[str, IdentityKind] = {"email": "email", "sms": "phone"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsentSource(_Strict):
    """`[[consent.sources]]`: one source field read as consent for one channel."""

    source: str = Field(min_length=1)
    stream: str | None = None
    # A dotted path in the raw payload (`properties.hs_email_optout`), or a Typeform answer's field ref.
    path: str | None = None
    typeform_ref: str | None = None
    channel: str = Field(min_length=1, max_length=16)
    opted_in: list[str] = Field(default_factory=list)
    opted_out: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_place(self) -> ConsentSource:
        if (self.path is None) == (self.typeform_ref is None):
            raise ValueError("expected exactly one of path or typeform_ref, found both or neither")
        if not self.opted_in and not self.opted_out:
            raise ValueError('expected opted_in or opted_out values (e.g. opted_out = ["true"]), found none')
        return self

    def status(self, raw: object) -> str | None:
        """opted_in, opted_out, or None when the value says neither (text compared lowercase)."""
        if raw is None or isinstance(raw, dict | list):
            return None
        text = str(raw).strip().lower()
        if text in (v.lower() for v in self.opted_out):
            return "opted_out"
        if text in (v.lower() for v in self.opted_in):
            return "opted_in"
        return None


class ConsentConfig(_Strict):
    """`[consent]`: channels and consent mapping rules."""

    # The identity that reaches each channel: an opt-out suppresses the contact's identities of that kind.
    channels: dict[str, IdentityKind] = Field(default_factory=lambda: dict(_CHANNELS))
    sources: list[ConsentSource] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_channels(self) -> ConsentConfig:
        # A source's statements under a channel no segment asks for would be recorded and never count.
        for n, source in enumerate(self.sources):
            if source.channel not in self.channels:
                raise ValueError(f"sources[{n}].channel: {self._unknown(source.channel)}")
        return self

    def channel(self, name: str) -> str:
        """`name` as one of `channels` (case and spaces ignored), or ConsentError naming them."""
        wanted = name.strip().casefold()
        for channel in self.channels:
            if channel.casefold() == wanted:
                return channel
        raise ConsentError(f"consent channel: {self._unknown(name)}")

    def _unknown(self, name: str) -> str:
        known = ", ".join(sorted(self.channels)) or "none"
        return (
            f"expected one of the [consent] channels ({known}), found {name!r}: use one of them, or add "
            f'the channel to [consent] channels with the identity that reaches it (e.g. whatsapp = "phone")'
        )

    def kinds(self, channel: str) -> tuple[str, ...]:
        """The identity kinds an opt-out of `channel` suppresses; both for a channel not listed."""
        kind = self.channels.get(channel)
        return (kind,) if kind else ("email", "phone")

    def channels_of(self, kind: str) -> list[str]:
        """The channels a suppressed identity of `kind` keeps a contact out of."""
        return sorted(c for c, k in self.channels.items() if k == kind)


def endpoints_by_channel(requirements: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Channel -> the endpoints requiring it, from endpoint name -> its `requires_consent`."""
    found: dict[str, list[str]] = {}
    for name, channel in sorted(requirements.items()):
        if channel:
            found.setdefault(channel, []).append(name)
    return found
