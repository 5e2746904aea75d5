"""Sync: the store, identity resolution, the sync engine, segments, lead scoring, consent, scheduling."""
