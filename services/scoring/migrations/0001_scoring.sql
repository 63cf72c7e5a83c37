-- Scoring keeps every input it applied (the archive), the live scores folded from it, and read
-- models of its own log (regulations, adjustments, closed assessments).

CREATE TABLE {schema}.inputs (
    event_id     uuid PRIMARY KEY,
    type         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,   -- when the producing service recorded it
    branch_id    text,
    actor_id     text NOT NULL,
    data         jsonb NOT NULL,
    members      text[] NOT NULL,
    source       text NOT NULL,
    position     bigint NOT NULL
);
CREATE INDEX inputs_members ON {schema}.inputs USING gin (members);
CREATE INDEX inputs_occurred ON {schema}.inputs (occurred_at);

-- The live view: each member's result per period, kept current as inputs arrive.
CREATE TABLE {schema}.member_scores (
    member_id           text NOT NULL,
    period_id           text NOT NULL,
    branch_id           text,
    total               numeric NOT NULL,
    by_rule             jsonb NOT NULL,
    adjustments         numeric NOT NULL,
    vetoed_by           text[] NOT NULL,
    lines               integer NOT NULL,
    regulation_version  integer,
    PRIMARY KEY (member_id, period_id)
);
CREATE INDEX member_scores_branch ON {schema}.member_scores (branch_id, period_id);

CREATE TABLE {schema}.regulations (
    regulation_id   text NOT NULL,
    version         integer NOT NULL,
    effective_from  date NOT NULL,
    document        jsonb NOT NULL,
    event_id        uuid NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (regulation_id, version)
);

CREATE TABLE {schema}.adjustments (
    adjustment_id  text PRIMARY KEY,
    member_id      text NOT NULL,
    branch_id      text NOT NULL,
    period_id      text NOT NULL,
    points         numeric NOT NULL,
    reason         text NOT NULL,
    requested_by   text NOT NULL,
    requested_at   timestamptz NOT NULL,
    approved_by    text,
    event_id       uuid,
    occurred_at    timestamptz,
    recorded_at    timestamptz
);
CREATE INDEX adjustments_member ON {schema}.adjustments (member_id);

CREATE TABLE {schema}.assessments (
    branch_id      text NOT NULL,
    period_id      text NOT NULL,
    revision       integer NOT NULL,
    closed_at      timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,
    results        jsonb NOT NULL,
    reopened_at    timestamptz,
    reopen_reason  text,
    PRIMARY KEY (branch_id, period_id, revision)
);
