"""Prometheus metrics every service exposes on /metrics (DESIGN §7)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPENDED = Counter(
    "party_events_appended_total", "Events appended to the service's log", ["schema"]
)
EVENTS_PUBLISHED = Counter(
    "party_events_published_total", "Events the relay published to Redis", ["service"]
)
RELAY_LAG = Histogram(
    "party_relay_lag_seconds",
    "From an event's recorded_at to its XADD",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RELAY_BEHIND = Gauge(
    "party_relay_unpublished_events", "Events recorded but not yet on Redis", ["service"]
)
EVENTS_CONSUMED = Counter(
    "party_events_consumed_total", "Events applied to projections", ["service", "stream"]
)
DUPLICATES_SKIPPED = Counter(
    "party_duplicate_events_skipped_total", "Redelivered events the inbox skipped", ["service"]
)
DEAD_LETTERS = Counter(
    "party_dead_letters_total", "Entries moved to the dead-letter stream", ["service", "stream"]
)
CONSUMER_LAG = Gauge(
    "party_consumer_lag_entries",
    "Entries of a stream not yet delivered to the group",
    ["service", "stream"],
)
CONSUMER_PENDING = Gauge(
    "party_consumer_pending_entries",
    "Entries delivered but not acknowledged",
    ["service", "stream"],
)
HTTP_REQUESTS = Histogram(
    "party_http_request_seconds",
    "HTTP requests by route and status",
    ["service", "method", "route", "status"],
)
RELAY_WATERMARK_AHEAD = Gauge(
    "party_relay_watermark_ahead_events",
    "How far the relay's watermark on Redis claimed to be ahead of the log (an alarm when > 0)",
    ["service"],
)
CONSUMER_BEHIND = Gauge(
    "party_consumer_behind_events",
    "Events of a producer's log known to exist and not yet applied (a backlog, or a gap)",
    ["service", "producer"],
)
CONSUMER_CURSOR = Gauge(
    "party_consumer_cursor_position",
    "The producer position up to which a consumer has applied everything, with no gap",
    ["service", "producer"],
)
GAPS_FILLED = Counter(
    "party_gap_events_filled_total",
    "Events read from a producer's own record because Redis did not deliver them",
    ["service", "producer"],
)
ENTRIES_REFUSED = Counter(
    "party_entries_refused_total",
    "Stream entries a consumer did not believe (forged, misrouted, unsigned), by reason",
    ["service", "producer", "reason"],
)
UNVERIFIED_PENDING = Gauge(
    "party_consumer_unverified_entries",
    "Entries received but not yet covered by a producer signature (held, not applied)",
    ["service", "producer"],
)
CHECKPOINT_SIZE = Gauge(
    "party_checkpoint_tree_size",
    "The tree size (head position) of the last checkpoint the service signed of its log",
    ["service"],
)
CHECKPOINTS_REFUSED = Counter(
    "party_checkpoints_refused_total",
    "Checkpoints not made because the log no longer extends the last one (cut or rewritten)",
    ["service"],
)
WITNESSED_SIZE = Gauge(
    "party_witnessed_tree_size",
    "The tree size of the last checkpoint of a peer's log this service witnessed",
    ["service", "peer"],
)
WITNESS_DISAGREEMENTS = Counter(
    "party_witness_disagreements_total",
    "Checkpoints of a peer refused as a witness (bad signature, inconsistent, smaller, forked)",
    ["service", "peer"],
)
LOG_TAMPERED = Counter(
    "party_log_tampered_total",
    "Appends refused because the head of the service's own log is not signed by it",
    ["service"],
)
RELAY_WATERMARK_REPAIRS = Counter(
    "party_relay_watermark_repairs_total",
    "Times the relay found its watermark claiming events it never published, and republished",
    ["service"],
)
CONSUMER_FORKS = Counter(
    "party_consumer_forks_total",
    "Signed events of a producer that disagree with one already applied at their position",
    ["service", "producer"],
)
PROJECTION_FAILURES = Counter(
    "party_projection_failures_total",
    "Attempts of a projection to apply an event that failed (not counting a dependency down)",
    ["service", "projector"],
)
FAILED_EVENTS = Gauge(
    "party_failed_events",
    "Events a projection skipped after failing on them repeatedly (GET /v1/audit/failed-events)",
    ["service", "projector"],
)
