-- The append-only event log of one service, with its hash chain, idempotency keys, unique
-- claims, the relay's progress and the consumer inbox. `{schema}` is the service's schema.

CREATE TABLE {schema}.events (
    position        bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL CHECK (stream_version >= 1),
    type            text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    branch_id       text,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor_id        text        NOT NULL,
    actor_role      text        NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    data            jsonb       NOT NULL,
    hash            text        NOT NULL,
    prev_hash       text        NOT NULL,
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_type_position ON {schema}.events (type, position);
CREATE INDEX events_branch_position ON {schema}.events (branch_id, position);
CREATE INDEX events_recorded_at ON {schema}.events USING brin (recorded_at);

-- One row: the last position and hash of the chain. Writers lock it, which serialises appends
-- so that positions are assigned in commit order (the relay never skips a late commit).
CREATE TABLE {schema}.chain_head (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    position    bigint      NOT NULL,
    hash        text        NOT NULL,
    recorded_at timestamptz
);
INSERT INTO {schema}.chain_head (position, hash) VALUES (0, repeat('0', 64));

CREATE TABLE {schema}.idempotency_keys (
    key          text        PRIMARY KEY,
    fingerprint  text        NOT NULL,
    result       jsonb       NOT NULL,
    recorded_at  timestamptz NOT NULL
);

-- Values that must be unique across streams (a student number), claimed in the append.
CREATE TABLE {schema}.unique_claims (
    scope      text        NOT NULL,
    value      text        NOT NULL,
    stream_id  text        NOT NULL,
    claimed_at timestamptz NOT NULL,
    PRIMARY KEY (scope, value)
);

CREATE TABLE {schema}.relay_progress (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    position    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL
);
INSERT INTO {schema}.relay_progress (position, updated_at) VALUES (0, now());

-- Ids of the events a consumer has applied, written in the projection's transaction.
CREATE TABLE {schema}.inbox (
    event_id    uuid        PRIMARY KEY,
    source      text        NOT NULL,
    position    bigint      NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION {schema}.refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log %.events is append-only: % refused', TG_TABLE_SCHEMA, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a correcting event instead';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON {schema}.events
    FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_event_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_event_change();
