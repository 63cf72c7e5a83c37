-- Reads answer from the stored lines (issue 15): a member's ledger, a branch's table and the
-- summaries aggregate this period's lines, never the archived inputs of other periods.
--
-- Each line carries what its ledger entry shows (the cause's record time and actor) and the
-- record time from which it is the line of its cause (`known_from`; NULL: since the cause was
-- recorded). A line that stopped being the line of its cause because a version or an adoption
-- recorded later re-scored it is kept in `retired_lines` with the record time it stopped
-- (`known_until`): `known_at` then reads the lines as they were known then, both tables cut by
-- the cause's business time (`as_of`) and record time (`known_at`).
ALTER TABLE {schema}.lines ADD COLUMN cause_recorded_at timestamptz;
ALTER TABLE {schema}.lines ADD COLUMN actor_id text;
ALTER TABLE {schema}.lines ADD COLUMN known_from timestamptz;

UPDATE {schema}.lines AS l SET cause_recorded_at = i.recorded_at, actor_id = i.actor_id
FROM {schema}.inputs AS i WHERE i.event_id = l.cause_event_id;
UPDATE {schema}.lines SET cause_recorded_at = cause_occurred_at, actor_id = ''
WHERE cause_recorded_at IS NULL;

ALTER TABLE {schema}.lines ALTER COLUMN cause_recorded_at SET NOT NULL;
ALTER TABLE {schema}.lines ALTER COLUMN actor_id SET NOT NULL;

-- A period's lines side by side, then (member, the two time axes), with what the sums read: a
-- table or a summary is an index-only scan of one compact range, whatever the other years hold.
-- (member, period) stays for a member's every period and the live re-aggregation.
CREATE INDEX lines_period ON {schema}.lines
    (period_id, member_id, cause_occurred_at, cause_recorded_at)
    INCLUDE (rule_id, veto, points, superseded, known_from, cause_event_id);

CREATE TABLE {schema}.retired_lines (
    cause_event_id      uuid        NOT NULL,
    rule_id             text        NOT NULL,
    regulation_id       text        NOT NULL,
    regulation_version  integer     NOT NULL,
    member_id           text        NOT NULL,
    branch_id           text,
    period_id           text        NOT NULL,
    points              numeric     NOT NULL,
    veto                boolean     NOT NULL,
    superseded          boolean     NOT NULL,
    cause_type          text        NOT NULL,
    cause_occurred_at   timestamptz NOT NULL,
    cause_recorded_at   timestamptz NOT NULL,
    actor_id            text        NOT NULL,
    known_from          timestamptz,
    known_until         timestamptz NOT NULL
);
CREATE INDEX retired_lines_period ON {schema}.retired_lines
    (period_id, member_id, cause_occurred_at, cause_recorded_at);
CREATE INDEX retired_lines_cause ON {schema}.retired_lines (cause_event_id);

-- Adjustments of one period; inputs of one period recorded after its close.
CREATE INDEX adjustments_period ON {schema}.adjustments (period_id, member_id);
CREATE INDEX inputs_recorded ON {schema}.inputs (occurred_at, recorded_at);
