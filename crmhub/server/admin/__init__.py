"""`/admin`: sources, runs, fields, segments, contacts and deliveries to read; replay and sync-now to act."""

from crmhub.server.admin import contacts, deliveries, segments, sources, sync_now
from crmhub.server.admin._common import router

# Importing the route modules registers their routes on the shared router.
__all__ = ["contacts", "deliveries", "router", "segments", "sources", "sync_now"]
