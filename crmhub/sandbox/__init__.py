"""The provider sandbox: local Stripe, HubSpot, Typeform and Segment.com look-alikes and a webhook receiver.

    from crmhub.sandbox import Sandbox, SandboxServer
    with SandboxServer(Sandbox(people=500, seed=7)) as server:
        client = stripe.StripeClient(STRIPE_API_KEY, base_addresses={"api": server.url}, ...)

See docs/sandbox.md for paths, parameters, faults, webhooks and the control API.
"""

from crmhub.sandbox import credentials
from crmhub.sandbox.app import Sandbox
from crmhub.sandbox.config import sandbox_config
from crmhub.sandbox.faults import Fault, FaultSpecError, parse_fault
from crmhub.sandbox.server import SandboxServer
from crmhub.sandbox.webhooks_out import hubspot_signature_v3, stripe_signature, typeform_signature
from crmhub.sandbox.world import EPOCH, LIVED_DAYS, World, start_before

__all__ = [
    "EPOCH",
    "LIVED_DAYS",
    "Fault",
    "FaultSpecError",
    "Sandbox",
    "SandboxServer",
    "World",
    "credentials",
    "hubspot_signature_v3",
    "parse_fault",
    "sandbox_config",
    "start_before",
    "stripe_signature",
    "typeform_signature",
]
