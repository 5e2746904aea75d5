"""Consent: records with proof, opt-outs that act at once, the suppression list, sender feedback."""

from sync.consent.actions import ConsentResult, cancel_entries, current_contact, opt_in, opt_out
from sync.consent.config import ConsentConfig, ConsentSource, endpoints_by_channel
from sync.consent.exceptions import ConsentError, UnknownContactError
from sync.consent.feedback import Feedback, FeedbackData, apply_feedback
from sync.consent.records import ConsentItem, latest_statuses, record_consent
from sync.consent.sources import apply_page_consent, consent_items
from sync.consent.suppression import identity_hash, suppress_contacts, suppress_values

__all__ = [
    "ConsentConfig",
    "ConsentError",
    "ConsentItem",
    "ConsentResult",
    "ConsentSource",
    "Feedback",
    "FeedbackData",
    "UnknownContactError",
    "apply_feedback",
    "apply_page_consent",
    "cancel_entries",
    "consent_items",
    "current_contact",
    "endpoints_by_channel",
    "identity_hash",
    "latest_statuses",
    "opt_in",
    "opt_out",
    "record_consent",
    "suppress_contacts",
    "suppress_values",
]
