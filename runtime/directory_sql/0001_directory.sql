-- The organisation as a consuming service knows it (runtime/directory.py).
CREATE TABLE {schema}.directory_events (
    source          text    NOT NULL,
    position        bigint  NOT NULL,
    member_key      text,
    unit_key        text,
    type            text    NOT NULL,
    schema_version  integer NOT NULL,
    data            jsonb   NOT NULL,
    PRIMARY KEY (source, position)
);
CREATE INDEX directory_events_member ON {schema}.directory_events (member_key);
CREATE INDEX directory_events_unit ON {schema}.directory_events (unit_key);

CREATE TABLE {schema}.directory_members (
    member_id       text PRIMARY KEY,
    branch_id       text NOT NULL,
    group_id        text,
    standing        text NOT NULL,
    enrolled_on     date NOT NULL,
    transferred_on  date,
    record          jsonb NOT NULL
);
CREATE INDEX directory_members_branch ON {schema}.directory_members (branch_id, member_id);

CREATE TABLE {schema}.directory_units (
    unit_id      text PRIMARY KEY,
    kind         text NOT NULL,
    name         text NOT NULL,
    parent_id    text,
    branch_kind  text
);

CREATE TABLE {schema}.directory_committees (
    branch_id       text PRIMARY KEY,
    secretary_id    text NOT NULL,
    member_ids      text[] NOT NULL,
    term_starts_on  date NOT NULL,
    term_ends_on    date NOT NULL
);
