"""The `member` family, produced by the roster service: organisation, members and their four
category dimensions (分类管理), responsibility (责任制管理) and care (关怀机制)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from contracts.envelope import EventPayload, Family
from contracts.types import BusinessDate, Identifier, ShortText, Text

UnitKind = Literal["school", "branch", "group"]
BranchKind = Literal["student", "faculty"]
Standing = Literal["full", "probationary"]
Dimension = Literal["standing", "cadre", "graduating", "performance"]

#: The values each classification dimension can take.
DIMENSION_VALUES: dict[str, tuple[str, ...]] = {
    "standing": ("full", "probationary"),  # 正式党员 / 预备党员
    "cadre": ("cadre", "non_cadre"),  # 学生干部党员 / 非学生干部党员
    "graduating": ("graduating", "not_graduating"),  # 毕业生党员 / 非毕业生党员
    "performance": ("excellent", "lagging", "neither"),  # 优秀党员 / 相对落后党员
}

StudentNumber = Field(min_length=4, max_length=32, pattern=r"^[A-Za-z0-9]+$")


class _MemberFamily(EventPayload):
    family: ClassVar[Family] = "member"


class UnitRegistered(_MemberFamily):
    """A school (学院), Party branch (党支部) or Party group (党小组) was registered under its
    parent: a school under the university (no parent), a branch under a school, a group under a
    branch."""

    event_type: ClassVar[str] = "org.unit_registered"

    unit_id: Identifier
    kind: UnitKind
    name: ShortText
    parent_id: Identifier | None
    branch_kind: BranchKind | None = None

    @model_validator(mode="after")
    def _shape(self) -> UnitRegistered:
        if self.kind == "school" and self.parent_id is not None:
            raise ValueError("parent_id: a school belongs to the university and has no parent")
        if self.kind != "school" and self.parent_id is None:
            raise ValueError(f"parent_id: a {self.kind} needs its parent unit")
        if (self.kind == "branch") != (self.branch_kind is not None):
            raise ValueError("branch_kind: required for a branch (student or faculty), else null")
        return self


class CommitteeElected(_MemberFamily):
    """A branch committee (支部委员会) elected for a term: the secretary and the other members.
    A later election replaces the committee."""

    event_type: ClassVar[str] = "branch.committee_elected"

    branch_id: Identifier
    secretary_id: Identifier
    member_ids: list[Identifier] = Field(min_length=1, max_length=7)
    term_starts_on: BusinessDate
    term_ends_on: BusinessDate
    elected_on: BusinessDate

    @model_validator(mode="after")
    def _secretary_on_committee(self) -> CommitteeElected:
        if self.secretary_id not in self.member_ids:
            raise ValueError("secretary_id: the secretary is one of the committee's members")
        if len(set(self.member_ids)) != len(self.member_ids):
            raise ValueError("member_ids: a member is named twice")
        if self.term_ends_on <= self.term_starts_on:
            raise ValueError("term_ends_on: must be after term_starts_on")
        return self


class MemberEnrolled(_MemberFamily):
    """A member joined a branch (and usually a group), with where they live and study."""

    event_type: ClassVar[str] = "member.enrolled"

    member_id: Identifier
    student_number: str = StudentNumber
    name: ShortText
    branch_id: Identifier
    group_id: Identifier | None
    class_name: ShortText | None
    company: ShortText | None  # 连队 of national-defence students
    dormitory: ShortText | None
    bed: ShortText | None
    standing: Standing
    joined_on: BusinessDate | None  # full members: the day they became full members
    probation_started_on: BusinessDate | None  # probationary members: admitted by the branch
    probation_ends_on: BusinessDate | None
    cadre_post: ShortText | None
    expected_graduation: BusinessDate
    enrolled_on: BusinessDate

    @model_validator(mode="after")
    def _standing_dates(self) -> MemberEnrolled:
        if self.standing == "full" and self.joined_on is None:
            raise ValueError("joined_on: required for a full member")
        if self.standing == "probationary" and (
            self.probation_started_on is None or self.probation_ends_on is None
        ):
            raise ValueError(
                "probation_started_on: a probationary member needs probation start and end dates"
            )
        if (
            self.probation_started_on is not None
            and self.probation_ends_on is not None
            and self.probation_ends_on <= self.probation_started_on
        ):
            raise ValueError("probation_ends_on: must be after probation_started_on")
        return self


class CategoryChanged(_MemberFamily):
    """One of the four classification dimensions of a member changed (分类管理)."""

    event_type: ClassVar[str] = "member.category_changed"

    member_id: Identifier
    dimension: Dimension
    value: str
    previous: str | None
    reason: Text
    effective_on: BusinessDate
    source: Literal["branch", "assessment", "calendar"] = "branch"

    @model_validator(mode="after")
    def _value_in_dimension(self) -> CategoryChanged:
        allowed = DIMENSION_VALUES[self.dimension]
        if self.value not in allowed:
            raise ValueError(f"value: {self.dimension} is one of {', '.join(allowed)}")
        if self.previous is not None and self.previous not in allowed:
            raise ValueError(f"previous: {self.dimension} is one of {', '.join(allowed)}")
        return self


class MemberDisciplined(_MemberFamily):
    """A Party discipline measure (党纪处分) decided against a member."""

    event_type: ClassVar[str] = "member.disciplined"

    member_id: Identifier
    measure: Literal[
        "warning",  # 警告
        "serious_warning",  # 严重警告
        "removal_from_post",  # 撤销党内职务
        "probation_within_party",  # 留党察看
        "expulsion",  # 开除党籍
    ]
    decided_on: BusinessDate
    reason: Text


class ProbationExtended(_MemberFamily):
    """Probation extended once, by 6 to 12 months (延长预备期)."""

    event_type: ClassVar[str] = "member.probation_extended"

    member_id: Identifier
    months: int = Field(ge=6, le=12)
    previous_end_on: BusinessDate
    new_end_on: BusinessDate
    reason: Text
    decided_on: BusinessDate


class MemberConverted(_MemberFamily):
    """A probationary member became a full member (转正)."""

    event_type: ClassVar[str] = "member.converted"

    member_id: Identifier
    converted_on: BusinessDate
    probation_ended_on: BusinessDate
    decided_on: BusinessDate


class MemberMoved(_MemberFamily):
    """Group, class, company, dormitory or bed changed; the payload holds the whole new
    placement so a consumer needs no earlier event to know where the member is."""

    event_type: ClassVar[str] = "member.moved"

    member_id: Identifier
    group_id: Identifier | None
    class_name: ShortText | None
    company: ShortText | None
    dormitory: ShortText | None
    bed: ShortText | None
    effective_on: BusinessDate
    reason: Text | None = None


class MemberTransferredOut(_MemberFamily):
    """Organisational relationship transferred out (组织关系转接), usually at graduation."""

    event_type: ClassVar[str] = "member.transferred_out"

    member_id: Identifier
    destination: Text
    transferred_on: BusinessDate
    reason: Literal["graduation", "other"]
    letter_valid_until: BusinessDate | None = None


class SpaceAssigned(_MemberFamily):
    """The member's responsibility space (责任空间): dormitory, class, company and post scope."""

    event_type: ClassVar[str] = "responsibility.space_assigned"

    member_id: Identifier
    dormitory: ShortText | None
    class_name: ShortText | None
    company: ShortText | None
    post_scope: Text | None
    effective_on: BusinessDate


class AgreementSigned(_MemberFamily):
    """The yearly responsibility agreement (责任书) signed with the branch."""

    event_type: ClassVar[str] = "responsibility.agreement_signed"

    agreement_id: Identifier
    member_id: Identifier
    academic_year: str = Field(pattern=r"^\d{4}-\d{4}$")
    signed_on: BusinessDate
    expires_on: BusinessDate


class PairingFormed(_MemberFamily):
    """A "good brothers" pair (哥俩好): an excellent member mentors a lagging one."""

    event_type: ClassVar[str] = "pairing.formed"

    pairing_id: Identifier
    mentor_id: Identifier
    mentee_id: Identifier
    formed_on: BusinessDate


class PairingEnded(_MemberFamily):
    event_type: ClassVar[str] = "pairing.ended"

    pairing_id: Identifier
    mentor_id: Identifier
    mentee_id: Identifier
    ended_on: BusinessDate
    reason: Text


class GroupLinkEstablished(_MemberFamily):
    """A Party group linked to a company, a class or a student in difficulty (党外帮扶)."""

    event_type: ClassVar[str] = "group.link_established"

    link_id: Identifier
    group_id: Identifier
    target_kind: Literal["company", "class", "student_in_difficulty"]
    target: ShortText
    established_on: BusinessDate


class PlaqueIssued(_MemberFamily):
    """A Party-member dormitory or bed plaque (党员宿舍/党员床铺挂牌)."""

    event_type: ClassVar[str] = "plaque.issued"

    plaque_id: Identifier
    member_id: Identifier
    kind: Literal["dormitory", "bed"]
    dormitory: ShortText
    bed: ShortText | None
    issued_on: BusinessDate


class PlaqueWithdrawn(_MemberFamily):
    event_type: ClassVar[str] = "plaque.withdrawn"

    plaque_id: Identifier
    member_id: Identifier
    kind: Literal["dormitory", "bed"]
    withdrawn_on: BusinessDate
    reason: Text
