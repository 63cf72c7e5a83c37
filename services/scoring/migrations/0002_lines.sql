-- The lines each input gives under the regulation in force, kept so that live scores are
-- aggregates (not a re-fold of each member's whole history on every event).
ALTER TABLE {schema}.inputs ADD COLUMN supersedes uuid;
CREATE INDEX inputs_supersedes ON {schema}.inputs (supersedes);

CREATE TABLE {schema}.lines (
    cause_event_id      uuid    NOT NULL,
    rule_id             text    NOT NULL,
    regulation_id       text    NOT NULL,
    regulation_version  integer NOT NULL,
    member_id           text    NOT NULL,
    branch_id           text,
    period_id           text    NOT NULL,
    points              numeric NOT NULL,
    veto                boolean NOT NULL,
    superseded          boolean NOT NULL,
    cause_type          text    NOT NULL,
    cause_occurred_at   timestamptz NOT NULL,
    PRIMARY KEY (cause_event_id, rule_id, regulation_id, regulation_version, member_id)
);
CREATE INDEX lines_member ON {schema}.lines (member_id, period_id);
