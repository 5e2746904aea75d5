"""Consent channels named outside `[consent]`, checked against `[consent] channels` as the config loads.

A segment requiring "SMS" where the channel is "sms" would find nobody's consent and empty itself,
telling every consumer its members left; so a name `[consent] channels` lacks stops every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync.segments.config import hint, rule_nodes

if TYPE_CHECKING:
    from crmhub.settings import Settings

__all__ = ["unknown_channels"]

_FIX = "channels are lower case; add a new one to [consent] channels with the identity it reaches"


def unknown_channels(settings: Settings) -> list[tuple[str, str]]:
    """(TOML path, message) per channel a segment, rule or endpoint names that `[consent] channels` lacks.

    (`[consent]` checks its own sources' channels.)
    """
    named: list[tuple[str, str]] = []
    for key in sorted(settings.segments):
        segment = settings.segments[key]
        if segment.requires_consent is not None:
            named.append((f"segments.{key}.requires_consent", segment.requires_consent))
        named += [
            (f"segments.{key}.{path}.consent", rule.consent)
            for path, rule in rule_nodes(segment)
            if rule.consent
        ]
    for name in sorted(settings.webhooks.endpoints):
        endpoint = settings.webhooks.endpoints[name]
        if endpoint.requires_consent is not None:
            named.append((f"webhooks.endpoints.{name}.requires_consent", endpoint.requires_consent))
    channels = sorted(settings.consent.channels)
    problems = []
    for path, channel in named:
        if channel not in settings.consent.channels:
            found = f'found "{channel}"{hint(channel.casefold(), channels)}'
            problems.append((path, f"expected a channel of [consent] channels, {found} ({_FIX})"))
    return problems
