-- The roster's read models, folded from its own log by services/roster/projections.py.

CREATE TABLE {schema}.units (
    unit_id      text PRIMARY KEY,
    kind         text NOT NULL,
    name         text NOT NULL,
    parent_id    text,
    branch_kind  text,
    school_id    text,            -- the school the unit belongs to (itself for a school)
    branch_id    text             -- the branch of a group (itself for a branch)
);
CREATE INDEX units_parent ON {schema}.units (parent_id);

CREATE TABLE {schema}.committees (
    branch_id       text   NOT NULL,
    position        bigint NOT NULL,
    secretary_id    text   NOT NULL,
    member_ids      text[] NOT NULL,
    term_starts_on  date   NOT NULL,
    term_ends_on    date   NOT NULL,
    elected_on      date   NOT NULL,
    PRIMARY KEY (branch_id, position)
);

CREATE TABLE {schema}.members (
    member_id            text PRIMARY KEY,
    student_number       text NOT NULL,
    name                 text NOT NULL,
    branch_id            text NOT NULL,
    school_id            text,
    group_id             text,
    class_name           text,
    company              text,
    dormitory            text,
    bed                  text,
    standing             text NOT NULL,
    cadre_post           text,
    joined_on            date,
    probation_started_on date,
    probation_ends_on    date,
    probation_extended   boolean NOT NULL DEFAULT false,
    expected_graduation  date NOT NULL,
    enrolled_on          date NOT NULL,
    transferred_on       date,
    destination          text,
    space_dormitory      text,
    space_class          text,
    space_company        text,
    space_post_scope     text
);
CREATE INDEX members_branch ON {schema}.members (branch_id, member_id);
CREATE INDEX members_school ON {schema}.members (school_id, branch_id);

-- Every category entry, so any date's classification can be answered.
CREATE TABLE {schema}.member_categories (
    member_id     text   NOT NULL,
    position      bigint NOT NULL,
    dimension     text   NOT NULL,
    value         text   NOT NULL,
    effective_on  date   NOT NULL,
    source        text   NOT NULL,
    reason        text,
    PRIMARY KEY (member_id, position, dimension)
);

-- Every placement (group, class, company, dorm, bed) with the day it took effect.
CREATE TABLE {schema}.member_placements (
    member_id     text   NOT NULL,
    position      bigint NOT NULL,
    group_id      text,
    class_name    text,
    company       text,
    dormitory     text,
    bed           text,
    effective_on  date   NOT NULL,
    PRIMARY KEY (member_id, position)
);

CREATE TABLE {schema}.agreements (
    agreement_id   text PRIMARY KEY,
    member_id      text NOT NULL,
    academic_year  text NOT NULL,
    signed_on      date NOT NULL,
    expires_on     date NOT NULL
);
CREATE INDEX agreements_member ON {schema}.agreements (member_id);

CREATE TABLE {schema}.plaques (
    plaque_id     text PRIMARY KEY,
    member_id     text NOT NULL,
    kind          text NOT NULL,
    dormitory     text NOT NULL,
    bed           text,
    issued_on     date NOT NULL,
    withdrawn_on  date,
    reason        text
);

CREATE TABLE {schema}.pairings (
    pairing_id  text PRIMARY KEY,
    branch_id   text NOT NULL,
    mentor_id   text NOT NULL,
    mentee_id   text NOT NULL,
    formed_on   date NOT NULL,
    ended_on    date,
    reason      text
);

CREATE TABLE {schema}.group_links (
    link_id         text PRIMARY KEY,
    group_id        text NOT NULL,
    branch_id       text,
    target_kind     text NOT NULL,
    target          text NOT NULL,
    established_on  date NOT NULL
);
