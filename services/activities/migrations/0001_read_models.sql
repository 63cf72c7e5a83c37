-- The activities service's read models, folded from its own log (projections.py).

CREATE TABLE {schema}.activities (
    activity_id      text PRIMARY KEY,
    kind             text NOT NULL,
    title            text NOT NULL,
    branch_id        text NOT NULL,
    group_id         text,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz,
    place            text NOT NULL,
    attendees        jsonb NOT NULL,
    partner          text,
    base             text,
    volunteer_hours  numeric,
    planned_cost_fen bigint NOT NULL,
    budget_line      text,
    cancelled        boolean NOT NULL DEFAULT false,
    cancel_reason    text
);
CREATE INDEX activities_branch ON {schema}.activities (branch_id, starts_at);

-- Every attendance record and correction; the current one per member is the latest.
CREATE TABLE {schema}.attendance_log (
    position      bigint PRIMARY KEY,
    event_id      uuid   NOT NULL,
    activity_id   text   NOT NULL,
    member_id     text   NOT NULL,
    status        text   NOT NULL,
    excuse        text,
    kind          text   NOT NULL,   -- recorded or corrected
    reason        text,
    actor_id      text   NOT NULL,
    recorded_at   timestamptz NOT NULL
);
CREATE INDEX attendance_log_activity ON {schema}.attendance_log (activity_id, member_id);
CREATE INDEX attendance_log_member ON {schema}.attendance_log (member_id);

CREATE TABLE {schema}.report_cadences (
    branch_id    text PRIMARY KEY,
    every_weeks  integer NOT NULL,
    starts_on    date NOT NULL
);

CREATE TABLE {schema}.obligations (
    obligation_id  text PRIMARY KEY,
    member_id      text NOT NULL,
    kind           text NOT NULL,
    branch_id      text NOT NULL,
    due_on         date NOT NULL,
    period_label   text NOT NULL,
    withdrawn      boolean NOT NULL DEFAULT false,
    withdraw_reason text,
    submitted_at   timestamptz,
    on_time        boolean,
    days_late      integer,
    grade          text,
    reviewer_id    text,
    reviews        integer NOT NULL DEFAULT 0
);
CREATE INDEX obligations_member ON {schema}.obligations (member_id, due_on);
CREATE INDEX obligations_branch ON {schema}.obligations (branch_id, due_on);

CREATE TABLE {schema}.budget_lines (
    budget_id    text   NOT NULL,
    branch_id    text   NOT NULL,
    year         integer NOT NULL,
    line         text   NOT NULL,
    planned_fen  bigint NOT NULL,
    PRIMARY KEY (budget_id, line)
);

CREATE TABLE {schema}.expenses (
    expense_id   text PRIMARY KEY,
    budget_id    text NOT NULL,
    branch_id    text NOT NULL,
    year         integer NOT NULL,
    line         text NOT NULL,
    amount_fen   bigint NOT NULL,
    activity_id  text,
    spent_on     date NOT NULL,
    description  text NOT NULL,
    approver_id  text,
    override_reason text,
    recorded_by  text NOT NULL
);
CREATE INDEX expenses_budget ON {schema}.expenses (budget_id);
