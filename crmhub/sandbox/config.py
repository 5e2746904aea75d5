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
        "# The sandbox has no rate limit (Stripe allows 25 requests/s in test mode, 100 live), and",
        "# bench/pull.py measures crmhub against it, not the limit.",
        "requests_per_second = 1000.0",
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
        "# Segments over the sandbox's data (automatic field names; see `crmhub fields`).",
        "[segments.trialing]",
        'name = "Stripe trials running"',
        'all = [{ field = "stripe_subscription_status", op = "eq", value = "trialing" }]',
        "",
        "[segments.paid_last_7_days]",
        'name = "Customers who paid in the last 7 days"',
        'all = [{ event = "invoice.paid", within = "7d" }]',
        "",
        "[segments.payment_failed]",
        'name = "A payment failed this week"',
        'all = [{ event = "invoice.payment_failed", within = "7d" }]',
        "",
        "[segments.nps_detractors]",
        'name = "NPS detractors"',
        'all = [{ field = "typeform_crmhubnps_nps", op = "between", value = [0, 6] }]',
        "",
        "[segments.power_users]",
        'name = "Power users"',
        'all = [{ event = "Feature Used", count = { gte = 3 }, within = "365d" }]',
        "split = { a = 50, b = 50 }",
        "",
        "[segments.customers_not_opted_out]",
        'name = "HubSpot customers reachable by e-mail"',
        "all = [",
        '  { field = "hubspot_lifecyclestage", op = "eq", value = "customer" },',
        '  { not = { field = "hubspot_hs_email_optout", op = "eq", value = true } },',
        "]",
        "",
        "# The sandbox's Standard Webhooks receiver, on loopback (hence http and the allowed network).",
        "[webhooks.endpoints.receiver]",
        f"url = {_toml_str(base + '/_receiver/demo')}",
        'secret_envs = ["CRMHUB_RECEIVER_SECRET"]',
        'fields = ["email", "phone", "stripe_subscription_status"]',
        "allow_http = true",
        "allow_private_network = true",
        'allow_networks = ["127.0.0.1/32", "::1/128"]',
        "",
        "# Provider webhooks the sandbox sends, signed with the secrets above, once its targets point at",
        "# `crmhub serve` (/hooks/stripe, /hooks/hubspot, /hooks/typeform).",
        "[webhooks.inbound.stripe]",
        "enabled = true",
        'secret_env = "STRIPE_WEBHOOK_SECRET"',
        "",
        "[webhooks.inbound.hubspot]",
        "enabled = true",
        'client_secret_env = "HUBSPOT_CLIENT_SECRET"',
        "",
        "[webhooks.inbound.typeform]",
        "enabled = true",
        'secret_env = "TYPEFORM_WEBHOOK_SECRET"',
        "",
        "# Consent from the sources: HubSpot's e-mail opt-out, the form's yes/no question as SMS consent.",
        "[[consent.sources]]",
        'source = "hubspot"',
        'stream = "contacts"',
        'path = "properties.hs_email_optout"',
        'channel = "email"',
        'opted_out = ["true"]',
        "",
        "[[consent.sources]]",
        'source = "typeform"',
        'typeform_ref = "consent"',
        'channel = "sms"',
        'opted_in = ["true"]',
        'opted_out = ["false"]',
        "",
        "# Only people whose latest SMS consent is an opt-in; an opt-out removes them at once.",
        "[segments.sms_promoters]",
        'name = "NPS promoters who agreed to SMS"',
        'requires_consent = "sms"',
        'all = [{ field = "typeform_crmhubnps_nps", op = "gte", value = 9 }]',
        "",
    ]
    return "\n".join(lines)
