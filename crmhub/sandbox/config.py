"""A complete crmhub TOML configuration pointing every source at a running sandbox."""

from __future__ import annotations

import json

from crmhub.sandbox import credentials
from crmhub.sandbox.typeform_store import FORM_ID

HUBSPOT_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "lifecyclestage",
    "hs_email_optout",
    "user_id",
)


def _toml_str(value: str) -> str:
    # A JSON string literal is a valid TOML basic string for the characters used here.
    return json.dumps(value)


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_toml_str(v) for v in values) + "]"


def sandbox_config(url: str, database_url: str = "sqlite:///crmhub.db") -> str:
    """The TOML text: `# export` lines for the sandbox credentials, then every source enabled."""
    base = url.rstrip("/")
    exports = [f"# export {name}={value}" for name, value in credentials.ENVIRONMENT.items()]
    lines = [
        *exports,
        "#",
        f"# crmhub configuration for the provider sandbox at {base}.",
        "# The credentials above are the sandbox's fixed test values; they open nothing else.",
        f"# Standard Webhooks receiver: {base}/_receiver/<name>, secret in CRMHUB_RECEIVER_SECRET.",
        "",
        "[database]",
        f"url = {_toml_str(database_url)}",
        "",
        "[connectors.stripe]",
        "enabled = true",
        f"base_url = {_toml_str(base)}",
        'api_key_env = "STRIPE_API_KEY"',
        "",
        "[connectors.hubspot]",
        "enabled = true",
        f"base_url = {_toml_str(base)}",
        'api_key_env = "HUBSPOT_ACCESS_TOKEN"',
        'objects = ["contacts", "companies", "deals"]',
        f"properties = {_toml_list(HUBSPOT_PROPERTIES)}",
        "",
        "[connectors.typeform]",
        "enabled = true",
        f"base_url = {_toml_str(base)}",
        'api_key_env = "TYPEFORM_TOKEN"',
        f"forms = {_toml_list([FORM_ID])}",
        "",
        "[connectors.segmentio]",
        "enabled = true",
        'write_key_env = "SEGMENT_WRITE_KEY"',
        "",
        "# Create crmhub's fields as HubSpot contact properties and write their values back.",
        "[field_mapping.hubspot]",
        "push = true",
        "",
    ]
    return "\n".join(lines)
