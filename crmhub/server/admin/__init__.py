"""`/admin`: sources, runs, fields, segments, contacts, deliveries to read; consent, replay, sync to act."""

from crmhub.server.admin import consent, contacts, deliveries, segments, sources, sync_now
from crmhub.server.admin._common import router

# Importing the route modules registers their routes on the shared router.
__all__ = ["consent", "contacts", "deliveries", "router", "segments", "sources", "sync_now"]
