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
