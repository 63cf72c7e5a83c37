"""The `activity` family, produced by the activities service: meetings and outings of every kind
(open and democratic management, 开放管理 / 民主管理) and money spent against a budget."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from contracts.envelope import EventPayload, Family, StrictModel
from contracts.types import BusinessDate, Fen, Identifier, Instant, Points, ShortText, Text

ActivityKind = Literal[
    "all_member_meeting",  # 全体党员大会 (odd weeks)
    "group_meeting",  # 党小组会 (even weeks)
    "party_lecture",  # 党课
    "themed_party_day",  # 主题党日
    "organisational_life_meeting",  # 组织生活会 / 民主生活会
    "democratic_appraisal",  # 民主评议党员
    "exchange",  # 交流 with a faculty branch or another school's branch
    "visit",  # off-campus visit to a base (爱国主义教育基地)
    "volunteer_service",  # 志愿服务
    "speech",  # “假如我是党支部书记” speech
    "election",  # 选举
    "study_session",  # 学习
]

#: Volunteer hours are exact decimals like points ("2.5").
Hours = Points


class Attendees(StrictModel):
    """Who must attend: the whole branch, one Party group, or named members."""

    scope: Literal["branch", "group", "members"]
    group_id: Identifier | None = None
    member_ids: list[Identifier] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _scope_fields(self) -> Attendees:
        if self.scope == "group" and self.group_id is None:
            raise ValueError("group_id: required when scope is group")
        if self.scope == "members" and not self.member_ids:
            raise ValueError("member_ids: name at least one member when scope is members")
        return self


class _ActivityFamily(EventPayload):
    family: ClassVar[Family] = "activity"


class ActivityScheduled(_ActivityFamily):
    event_type: ClassVar[str] = "activity.scheduled"

    activity_id: Identifier
    kind: ActivityKind
    title: ShortText
    branch_id: Identifier
    group_id: Identifier | None
    starts_at: Instant
    ends_at: Instant | None
    place: ShortText
    attendees: Attendees
    partner: ShortText | None = None  # exchanges: the other branch
    base: ShortText | None = None  # visits: e.g. 黑铁山抗日武装起义纪念馆
    volunteer_hours: Hours | None = None  # volunteer service: hours credited to each attendee
    planned_cost_fen: Fen = 0
    budget_line: ShortText | None = None
    guide_id: Identifier | None = None  # a Party-member guide (党员引路人) taking part

    @model_validator(mode="after")
    def _times(self) -> ActivityScheduled:
        _check_interval(self.starts_at, self.ends_at)
        return self


def _check_interval(starts_at: datetime, ends_at: datetime | None) -> None:
    if ends_at is not None and ends_at <= starts_at:
        raise ValueError("ends_at: must be after starts_at")


class ActivityRescheduled(_ActivityFamily):
    event_type: ClassVar[str] = "activity.rescheduled"

    activity_id: Identifier
    kind: ActivityKind
    branch_id: Identifier
    group_id: Identifier | None
    previous_starts_at: Instant
    starts_at: Instant
    ends_at: Instant | None
    place: ShortText
    reason: Text | None = None
    title: ShortText | None = None  # the activity's title (absent in reschedules recorded before)

    @model_validator(mode="after")
    def _times(self) -> ActivityRescheduled:
        _check_interval(self.starts_at, self.ends_at)
        return self


class ActivityCancelled(_ActivityFamily):
    event_type: ClassVar[str] = "activity.cancelled"

    activity_id: Identifier
    kind: ActivityKind
    branch_id: Identifier
    group_id: Identifier | None
    reason: Text


class BudgetLine(StrictModel):
    line: ShortText
    amount_fen: Fen


class BudgetPlanned(_ActivityFamily):
    """A branch's budget for a year, line by line (e.g. outings 1,400, plaques 400, stationery
    200 CNY). Planning again replaces the lines; what was spent stays spent."""

    event_type: ClassVar[str] = "budget.planned"

    budget_id: Identifier
    branch_id: Identifier
    year: int = Field(ge=2000, le=2200)
    lines: list[BudgetLine] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _distinct_lines(self) -> BudgetPlanned:
        names = [line.line for line in self.lines]
        if len(set(names)) != len(names):
            raise ValueError("lines: each line is named once")
        return self


class BudgetOverride(StrictModel):
    """An approver's decision to let an expense overspend its budget line."""

    approver_id: Identifier
    reason: Text


class ExpenseRecorded(_ActivityFamily):
    """Money spent against a line of a branch's yearly budget, in fen."""

    event_type: ClassVar[str] = "expense.recorded"

    expense_id: Identifier
    budget_id: Identifier
    branch_id: Identifier
    year: int = Field(ge=2000, le=2200)
    line: ShortText
    amount_fen: Fen = Field(gt=0)
    activity_id: Identifier | None
    spent_on: BusinessDate
    description: Text
    override: BudgetOverride | None = None
