-- Democratic elections (民主选举) and Party-member guides (党员引路人), folded from the roster's
-- own log by services/roster/projections.py.

-- The election (its last round) a committee came from; null for a committee recorded bare.
ALTER TABLE {schema}.committees ADD COLUMN election_id text;

CREATE TABLE {schema}.elections (
    branch_id             text    NOT NULL,
    election_id           text    NOT NULL,
    position              bigint  NOT NULL,
    held_on               date    NOT NULL,
    round                 integer NOT NULL,
    round_of              text,
    seats                 integer NOT NULL,
    candidates            text[]  NOT NULL,
    entitled              integer NOT NULL,
    entitled_ids          text[]  NOT NULL,
    present_entitled      integer NOT NULL,
    present_entitled_ids  text[]  NOT NULL,
    present_not_entitled  text[]  NOT NULL,
    ballots_cast          integer NOT NULL,
    tally                 jsonb   NOT NULL,
    elected               text[]  NOT NULL,
    tied                  text[]  NOT NULL,
    seats_for_next_round  integer NOT NULL,
    empty_seats           integer NOT NULL,
    quorum                text    NOT NULL,
    margin                text    NOT NULL,
    majority              text    NOT NULL,
    PRIMARY KEY (branch_id, election_id)
);

CREATE TABLE {schema}.guides (
    guide_id       text PRIMARY KEY,
    name           text NOT NULL,
    kind           text NOT NULL,
    organisation   text NOT NULL,
    phone          text,
    registered_on  date NOT NULL
);

CREATE TABLE {schema}.guide_appointments (
    guide_id        text   NOT NULL,
    appointment_id  text   NOT NULL,
    branch_id       text   NOT NULL,
    member_ids      text[] NOT NULL,
    group_id        text,
    term_starts_on  date   NOT NULL,
    term_ends_on    date   NOT NULL,   -- the last day of the term
    ended_on        date,              -- from this day on it no longer holds
    end_reason      text,
    PRIMARY KEY (guide_id, appointment_id)
);
CREATE INDEX guide_appointments_branch ON {schema}.guide_appointments (branch_id, term_starts_on);
CREATE INDEX guide_appointments_group ON {schema}.guide_appointments (group_id);
CREATE INDEX guide_appointments_members ON {schema}.guide_appointments USING gin (member_ids);
