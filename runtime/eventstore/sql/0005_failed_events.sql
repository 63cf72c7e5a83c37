-- Events a projection could not apply (runtime.failures): retried a few times, then skipped
-- so that every later event is still applied. The log keeps the event (it is append-only);
-- this says which read models went without it, why, and since when. Not a read model: a
-- rebuild records its own failures here again rather than emptying it.
--
-- `projector` is the local projector's name (read models folded from the service's own log)
-- or `consumer` (projections of what other services published); `source` and `position` say
-- where the event is: the log of that service, at that position.
CREATE TABLE {schema}.failed_events (
    projector   text        NOT NULL,
    event_id    uuid        NOT NULL,
    source      text        NOT NULL,
    position    bigint      NOT NULL,
    stream_id   text        NOT NULL,
    event_type  text        NOT NULL,
    error       text        NOT NULL,
    attempts    integer     NOT NULL CHECK (attempts >= 1),
    status      text        NOT NULL CHECK (status IN ('retrying', 'skipped')),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projector, event_id)
);
CREATE INDEX failed_events_by_position ON {schema}.failed_events (source, position);
