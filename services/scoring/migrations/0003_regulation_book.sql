-- Several regulations side by side: which school or branch follows which (from a date), who
-- owns a regulation, dated adjustments, and the regulation each live score was computed under.

CREATE TABLE {schema}.adoptions (
    event_id        uuid PRIMARY KEY,
    unit_id         text NOT NULL,
    regulation_id   text NOT NULL,
    effective_from  date NOT NULL,
    decided_on      date NOT NULL,
    position        bigint NOT NULL,
    recorded_at     timestamptz NOT NULL
);
CREATE INDEX adoptions_unit ON {schema}.adoptions (unit_id, effective_from);

ALTER TABLE {schema}.regulations ADD COLUMN owner_unit_id text;
ALTER TABLE {schema}.adjustments ADD COLUMN effective_on date;
ALTER TABLE {schema}.adjustments ADD COLUMN requested_event_id uuid;
ALTER TABLE {schema}.member_scores ADD COLUMN regulation_id text;
