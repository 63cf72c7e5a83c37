-- Notify's read models: deadlines folded from its own log, the reminder deliveries planned for
-- them (and their state), and the channels each recipient prefers.

CREATE TABLE {schema}.deadlines (
    deadline_id      text PRIMARY KEY,
    kind             text NOT NULL,
    title            text NOT NULL,
    branch_id        text,
    member_id        text,
    group_id         text,
    due_at           timestamptz,
    revision         integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'open',   -- open, met, withdrawn
    met_at           timestamptz,
    missed_at        timestamptz,
    reason           text
);
CREATE INDEX deadlines_branch ON {schema}.deadlines (branch_id, due_at);
CREATE INDEX deadlines_member ON {schema}.deadlines (member_id, due_at);
CREATE INDEX deadlines_open ON {schema}.deadlines (status, due_at);

CREATE TABLE {schema}.deliveries (
    delivery_id      uuid PRIMARY KEY,
    deadline_id      text NOT NULL,
    recipient_id     text NOT NULL,
    role             text NOT NULL,
    channel          text NOT NULL,
    lead_seconds     integer NOT NULL,
    send_at          timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
        -- pending, delivering, sent, dead, cancelled, skipped (too late to be useful)
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_until      timestamptz,
    claimed_by       text,
    last_error       text,
    sent_at          timestamptz
);
CREATE INDEX deliveries_due ON {schema}.deliveries (status, next_attempt_at);
CREATE INDEX deliveries_deadline ON {schema}.deliveries (deadline_id);

CREATE TABLE {schema}.recipients (
    recipient_id  text PRIMARY KEY,
    channels      text[] NOT NULL,
    email         text,
    updated_by    text NOT NULL,
    updated_at    timestamptz NOT NULL
);
