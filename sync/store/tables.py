"""Every table of the hub's database, in one place; migrations are written from these."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    or_,
)

from sync.store.types import Id, Json, UtcDateTime

# Stable constraint names so migrations can alter them on both backends.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

# --- sync runs, cursors, raw records, quarantine ---------------------------------------------

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source", String(32)),  # NULL: a run over every enabled source
    Column("trigger", String(16), nullable=False),  # manual | schedule | webhook
    Column("status", String(16), nullable=False),  # running | succeeded | partial | failed
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("stats", Json, nullable=False, default=dict),
    Column("error", Text),
    # The lease holder (crmhub.jobs.run_holder) the run ran under, NULL for one under no lease (a
    # pushed batch) or begun before migration 0016: a run that takes over a lapsed lease closes only
    # the runs of that lease's dead holder.
    Column("holder", String(100)),
)
# The few runs still running, by start: the earliest is asked for at every evaluation and push, and
# every pushed batch adds a run (migration 0014).
Index(
    None,
    sync_runs.c.started_at,
    sqlite_where=sync_runs.c.status == "running",
    postgresql_where=sync_runs.c.status == "running",
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("value", Text),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("run_id", ForeignKey("sync_runs.id", ondelete="SET NULL")),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("state", String(16), nullable=False, default="active"),  # active | dormant | merged
    Column("merged_into_id", ForeignKey("contacts.id", ondelete="SET NULL")),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_activity_at", UtcDateTime),
    # Bumped whenever the contact's data changes; incremental segment evaluation reads it.
    Column("changed_at", UtcDateTime, nullable=False),
    # Per-contact counter that numbers its transitions so consumers can order them.
    Column("transition_seq", Integer, nullable=False, default=0),
    Index(None, "changed_at"),
)
# Deleting a contact looks for contacts that refer to it; only non-null references are indexed
# (none today: a merged contact is deleted), so inserts write nothing to this index.
Index(
    None,
    contacts.c.merged_into_id,
    sqlite_where=contacts.c.merged_into_id.is_not(None),
    postgresql_where=contacts.c.merged_into_id.is_not(None),
)

records = Table(
    "records",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source", String(32), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("payload", Json, nullable=False),
    Column("contact_id", ForeignKey("contacts.id", ondelete="SET NULL")),
    Column("stored_at", UtcDateTime, nullable=False),
    Column("run_id", ForeignKey("sync_runs.id", ondelete="SET NULL")),
    UniqueConstraint("source", "stream", "external_id"),
    Index(None, "contact_id"),
    # Deleting a run (crmhub db prune) looks for the rows that refer to it (migration 0015).
    Index(None, "run_id"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source", String(32), nullable=False),
    Column("stream", String(64), nullable=False),
    Column("external_id", String(255)),
    Column("reason", Text, nullable=False),
    Column("payload", Json),
    Column("run_id", ForeignKey("sync_runs.id", ondelete="SET NULL")),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "run_id"),  # as records' (migration 0015)
)

# --- contacts: identities, fields, events -----------------------------------------------------

contact_identities = Table(
    "contact_identities",
    metadata,
    Column("id", Id, primary_key=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),  # email | phone | stripe_customer | hubspot_contact | ...
    Column("value", String(320), nullable=False),  # normalized
    Column("valid", Boolean, nullable=False, default=True),
    Column("source", String(32), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "value"),
    Index(None, "contact_id"),
)

field_definitions = Table(
    "field_definitions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("type", String(16), nullable=False),
    Column("label", String(200), nullable=False),
    Column("origin", String(16), nullable=False),  # rule | auto | system
    Column("source", String(32)),
    Column("path", Text),
    Column("options", Json),  # enum values seen, for enum fields and HubSpot select options
    Column("hubspot_property", String(100)),  # internal name once pushed to HubSpot
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per contact holding any field value. Each field adds its own typed column at run time
# (`sync.store.field_columns`); segment conditions scan these rows, so they hold values only.
contact_fields = Table(
    "contact_fields",
    metadata,
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
)

# Per contact, the source and record time of each stored value ({"<field id>": [source, time]}), so
# a value from an older record never overwrites a newer one. Apart from the values because nothing
# filters on it: in the same row it doubled the time of a scan of one field column (200,000
# contacts, 230 bytes of provenance each: 117 -> 57 ms).
field_sources = Table(
    "field_sources",
    metadata,
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("sources", Json, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("source", String(32), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("properties", Json, nullable=False, default=dict),
    UniqueConstraint("source", "external_id", "name"),
    Index(None, "contact_id", "name", "occurred_at"),
    # Covering for windowed conditions in whole runs (`sync.segments.compiler`, `scan`): a range of
    # one name's events gives its contacts without reading the table.
    Index(None, "name", "occurred_at", "contact_id"),
)

merge_log = Table(
    "merge_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kept_contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("merged_contact_id", Id, nullable=False),  # the merged row is gone; keep its number
    Column("reason", Text, nullable=False),
    Column("identities", Json, nullable=False),
    Column("merged_at", UtcDateTime, nullable=False),
    # Following a merged contact's id to the kept one (sender feedback, lookups) reads this index.
    Index(None, "merged_contact_id"),
    # Deleting a contact (each merge deletes one) looks for the log rows that refer to it.
    Index(None, "kept_contact_id"),
)

# --- segments, memberships, transitions, outbox -------------------------------------------------

segments = Table(
    "segments",
    metadata,
    Column("id", Id, primary_key=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("rule", Json, nullable=False),
    Column("rule_version", String(64), nullable=False),
    Column("depends_on_time", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_evaluated_at", UtcDateTime),
)

memberships = Table(
    "memberships",
    metadata,
    Column("segment_id", ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("entered_at", UtcDateTime, nullable=False),
    Column("variant", String(32)),
    Index(None, "contact_id"),
    # Clustered on its key on SQLite: a membership lookup reads one b-tree, not an index and the table.
    sqlite_with_rowid=False,
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("segment_id", ForeignKey("segments.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(8), nullable=False),  # entered | left
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("reason", String(32), nullable=False),  # rule | unsubscribed | merged | backfill ...
    Column("rule_version", String(64), nullable=False),
    Column("variant", String(32)),
    Column("contact_seq", Integer, nullable=False),
    Column("run_id", ForeignKey("sync_runs.id", ondelete="SET NULL")),
    Index(None, "contact_id", "contact_seq"),
    Index(None, "segment_id", "occurred_at"),
    # A run's own transitions (what `crmhub sync` prints at its end), and deleting a run (0015).
    Index(None, "run_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True),
    Column("transition_id", ForeignKey("transitions.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("dispatched_at", UtcDateTime),  # set once its deliveries exist
    Index(None, "dispatched_at"),
)

# --- delivery -----------------------------------------------------------------------------------

endpoint_states = Table(
    "endpoint_states",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("disabled_at", UtcDateTime),
    Column("disabled_reason", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("circuit_open_until", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True),
    Column("transition_id", ForeignKey("transitions.id", ondelete="CASCADE"), nullable=False),
    Column("endpoint", String(100), nullable=False),
    # The transition's contact when the delivery was made (a merge moves transitions, not this): it
    # lets a per-contact ordered claim find the contact's open deliveries without its whole history.
    Column("contact_id", Id),
    Column("webhook_id", String(64), nullable=False, unique=True),  # stable across retries
    # pending | leased | succeeded | failed (will retry) | dead | suppressed | cancelled
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime),
    Column("lease_expires_at", UtcDateTime),
    Column("leased_by", String(64)),
    Column("last_status_code", Integer),
    Column("reason", Text),  # why suppressed, cancelled or dead
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("transition_id", "endpoint"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "endpoint", "status"),
)

# The queue: only open deliveries have a next attempt. A claim walks an endpoint's in due order, id
# last (PostgreSQL needs it; SQLite has the rowid), and stops at its batch instead of sorting every
# due row: a claim of 100 at 20,000 pending went from 12 to 0.7 ms on SQLite, 174 to 8 ms on PostgreSQL.
Index(
    None,
    deliveries.c.endpoint,
    deliveries.c.next_attempt_at,
    deliveries.c.id,
    sqlite_where=deliveries.c.next_attempt_at.is_not(None),
    postgresql_where=deliveries.c.next_attempt_at.is_not(None),
)
# A contact's open deliveries, for the per-contact ordered claim (webhooks.queue).
Index(
    None,
    deliveries.c.contact_id,
    deliveries.c.endpoint,
    sqlite_where=deliveries.c.next_attempt_at.is_not(None),
    postgresql_where=deliveries.c.next_attempt_at.is_not(None),
)


def cancellable(now: ColumnElement[datetime] | datetime) -> ColumnElement[bool]:
    """Deliveries that will still be attempted and are not in flight at `now`: what a cancel stops."""
    d = deliveries.c
    # A lease that ran out is no longer in flight: its worker died, and the queue would send it again.
    return or_(d.status.in_(("pending", "failed")), and_(d.status == "leased", d.lease_expires_at <= now))


delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("delivery_id", ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("attempted_at", UtcDateTime, nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Float),
    Column("error", Text),
    Column("response_excerpt", Text),
    Index(None, "delivery_id"),
)

# --- consent, suppression, privacy, inbound idempotency, locks ----------------------------------

consent_records = Table(
    "consent_records",
    metadata,
    Column("id", Id, primary_key=True),
    Column("contact_id", ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),  # sms | email | ...
    Column("status", String(16), nullable=False),  # opted_in | opted_out | unknown
    Column("source", String(32), nullable=False),
    Column("proof", Json, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    # With status: the order of sync.consent.records.in_force_order, read without a sort.
    Index(None, "contact_id", "channel", "recorded_at", "status"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kind", String(16), nullable=False),  # email | phone
    Column("value_hash", String(64), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "value_hash"),
)

erasure_log = Table(
    "erasure_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("subject_hash", String(64), nullable=False),
    # The erased contact's number, never reused for a new contact (SQLite would hand it out again).
    Column("contact_id", Id),
    Column("erased_at", UtcDateTime, nullable=False),
    Column("counts", Json, nullable=False),
    # Every page that creates contacts asks for the highest number taken: a seek, not a scan.
    Index(None, "contact_id"),
)

inbound_events = Table(
    "inbound_events",
    metadata,
    Column("source", String(32), primary_key=True),
    Column("event_id", String(255), primary_key=True),
    Column("received_at", UtcDateTime, nullable=False, index=True),  # pruned by age: sync.inbound
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(100), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# What the last HubSpot push wrote to each HubSpot contact (a digest of its properties), so a contact
# whose values did not change is not written again. Without it every push bumps HubSpot's
# lastmodifieddate, the next pull brings the contact back as changed, and the push repeats forever.
hubspot_push_state = Table(
    "hubspot_push_state",
    metadata,
    Column("hubspot_id", String(64), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("pushed_at", UtcDateTime, nullable=False),
)
