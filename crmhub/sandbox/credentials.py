"""The sandbox's fixed, documented test credentials: public values that only open the local look-alikes."""

from __future__ import annotations

STRIPE_API_KEY = "sk_test_crmhub_sandbox"
STRIPE_WEBHOOK_SECRET = "whsec_crmhub_sandbox"
HUBSPOT_ACCESS_TOKEN = "pat-na1-crmhub-sandbox"
HUBSPOT_CLIENT_SECRET = "crmhub-sandbox-hubspot-client-secret"
TYPEFORM_TOKEN = "tfp_crmhub_sandbox"
TYPEFORM_WEBHOOK_SECRET = "crmhub-sandbox-typeform-secret"
SEGMENT_WRITE_KEY = "crmhub_sandbox_write_key"
# Standard Webhooks secrets are `whsec_` + base64 of the key bytes; this one is base64 of
# "crmhub-sandbox-receiver-key-0001" (32 bytes).
RECEIVER_SECRET = "whsec_Y3JtaHViLXNhbmRib3gtcmVjZWl2ZXIta2V5LTAwMDE="

# Environment variable name -> value, in the order `crmhub sandbox config` prints them.
ENVIRONMENT: dict[str, str] = {
    "STRIPE_API_KEY": STRIPE_API_KEY,
    "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
    "HUBSPOT_ACCESS_TOKEN": HUBSPOT_ACCESS_TOKEN,
    "HUBSPOT_CLIENT_SECRET": HUBSPOT_CLIENT_SECRET,
    "TYPEFORM_TOKEN": TYPEFORM_TOKEN,
    "TYPEFORM_WEBHOOK_SECRET": TYPEFORM_WEBHOOK_SECRET,
    "SEGMENT_WRITE_KEY": SEGMENT_WRITE_KEY,
    "CRMHUB_RECEIVER_SECRET": RECEIVER_SECRET,
}
