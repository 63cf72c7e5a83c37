"""The `member` family, produced by the roster service: organisation, members and their four
category dimensions (分类管理), responsibility (责任制管理) and care (关怀机制)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from contracts.envelope import EventPayload, Family, StrictModel
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

#: A person's personal field, sealed under that person's own key (`pd1:{key id}:{sealed}`,
#: see runtime/personal.py: erasing the person destroys the key) — or, in events recorded
#: before personal data was sealed (schema version 1), the plain value.
SEALED = r"pd1:[0-9a-f]{16}:[A-Za-z0-9_-]+"
Personal = Annotated[
    str,
    Field(
        min_length=1,
        max_length=3000,
        description="personal data: sealed under the person's own key (pd1:…), or plain in "
        "events recorded before it was sealed",
    ),
]
StudentNumber = Field(
    min_length=4,
    max_length=3000,
    pattern=rf"^([A-Za-z0-9]{{4,32}}|{SEALED})$",
    description="sealed under the member's key (pd1:…), or plain in events recorded before",
)


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
    election_id: Identifier | None = None  # the election (its last round) it came from

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
    schema_version: ClassVar[int] = 2  # 2: name, student number, dormitory and bed sealed

    member_id: Identifier
    student_number: str = StudentNumber
    name: Personal
    branch_id: Identifier
    group_id: Identifier | None
    class_name: ShortText | None
    company: ShortText | None  # 连队 of national-defence students
    dormitory: Personal | None
    bed: Personal | None
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
    #: 留党察看 only: the day the measure is over (the member has their rights back from then
    #: on). Recorded since the election rules need it; an event without it (recorded before)
    #: counts as one year after decided_on.
    lasts_until: BusinessDate | None = None

    @model_validator(mode="after")
    def _lasts_after_decision(self) -> MemberDisciplined:
        if self.lasts_until is not None and self.lasts_until <= self.decided_on:
            raise ValueError("lasts_until: must be after decided_on")
        return self


#: A fraction written as text, e.g. "4/5" (quorum and margin rules as they were applied).
FRACTION_TEXT = r"^[0-9]{1,6}/[1-9][0-9]{0,5}$"


class MeetingVote(StrictModel):
    """How a branch general meeting (支部大会) voted on one member's probation: who had the right
    to vote that day (full members of the branch not under 留党察看, the member concerned left
    out), how many of them were present, and the counts. Nothing links a voter to a vote."""

    entitled: int = Field(ge=0)
    entitled_ids: list[Identifier] = Field(max_length=5000)
    present_entitled: int = Field(ge=0)
    present_entitled_ids: list[Identifier] = Field(max_length=5000)
    present_not_entitled: list[Identifier] = Field(max_length=5000)
    yes: int = Field(ge=0)
    no: int = Field(ge=0)
    abstain: int = Field(ge=0)
    quorum: str = Field(pattern=FRACTION_TEXT)  # more than this share of the entitled present
    majority: str = Field(pattern=FRACTION_TEXT)  # more than this share of the entitled: yes

    @model_validator(mode="after")
    def _counts(self) -> MeetingVote:
        if self.entitled != len(self.entitled_ids):
            raise ValueError("entitled: the count of entitled_ids")
        if self.present_entitled != len(self.present_entitled_ids):
            raise ValueError("present_entitled: the count of present_entitled_ids")
        if self.yes + self.no + self.abstain > self.present_entitled:
            raise ValueError("yes: more votes than members present with voting rights")
        return self


class ProbationExtended(_MemberFamily):
    """Probation extended once, by 6 to 12 months (延长预备期)."""

    event_type: ClassVar[str] = "member.probation_extended"

    member_id: Identifier
    months: int = Field(ge=6, le=12)
    previous_end_on: BusinessDate
    new_end_on: BusinessDate
    reason: Text
    decided_on: BusinessDate
    vote: MeetingVote | None = None  # the branch general meeting's vote, when recorded


class MemberConverted(_MemberFamily):
    """A probationary member became a full member (转正)."""

    event_type: ClassVar[str] = "member.converted"

    member_id: Identifier
    converted_on: BusinessDate
    probation_ended_on: BusinessDate
    decided_on: BusinessDate
    vote: MeetingVote | None = None  # the branch general meeting's vote, when recorded


class MemberMoved(_MemberFamily):
    """Group, class, company, dormitory or bed changed; the payload holds the whole new
    placement so a consumer needs no earlier event to know where the member is."""

    event_type: ClassVar[str] = "member.moved"
    schema_version: ClassVar[int] = 2  # 2: dormitory and bed sealed

    member_id: Identifier
    group_id: Identifier | None
    class_name: ShortText | None
    company: ShortText | None
    dormitory: Personal | None
    bed: Personal | None
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
    schema_version: ClassVar[int] = 2  # 2: dormitory sealed

    member_id: Identifier
    dormitory: Personal | None
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
    schema_version: ClassVar[int] = 2  # 2: dormitory and bed sealed

    plaque_id: Identifier
    member_id: Identifier
    kind: Literal["dormitory", "bed"]
    dormitory: Personal
    bed: Personal | None
    issued_on: BusinessDate


class PlaqueWithdrawn(_MemberFamily):
    event_type: ClassVar[str] = "plaque.withdrawn"

    plaque_id: Identifier
    member_id: Identifier
    kind: Literal["dormitory", "bed"]
    withdrawn_on: BusinessDate
    reason: Text


class ElectionHeld(_MemberFamily):
    """A branch general meeting elected (a round of) its committee by secret ballot (民主选举,
    差额选举): the electorate as the roster knew it on that day, how many of them came, the
    ballots and the votes, who was elected, who tied for the last seat(s) and how many seats go
    to a further round, and the rules applied. Nothing links a voter to a vote.

    A round that completes the result (nothing tied) with someone elected is followed in the
    same stream by the `branch.committee_elected` it produced (its `election_id` names this
    round)."""

    event_type: ClassVar[str] = "branch.election_held"

    election_id: Identifier
    branch_id: Identifier
    held_on: BusinessDate
    round: int = Field(ge=1, le=20)
    round_of: Identifier | None  # the election (round) this one continues
    seats: int = Field(ge=1, le=50)
    candidates: list[Identifier] = Field(min_length=1, max_length=200)
    entitled: int = Field(ge=0)
    entitled_ids: list[Identifier] = Field(max_length=5000)
    present_entitled: int = Field(ge=0)
    present_entitled_ids: list[Identifier] = Field(max_length=5000)
    present_not_entitled: list[Identifier] = Field(max_length=5000)
    ballots_cast: int = Field(ge=0)
    tally: dict[Identifier, int]
    elected: list[Identifier] = Field(max_length=50)  # this round's, by votes, most first
    tied: list[Identifier] = Field(max_length=200)
    seats_for_next_round: int = Field(ge=0)
    empty_seats: int = Field(ge=0)
    quorum: str = Field(pattern=FRACTION_TEXT)  # more than this share of the entitled present
    margin: str = Field(pattern=FRACTION_TEXT)  # at least this share more candidates than seats
    majority: str = Field(pattern=FRACTION_TEXT)  # more than this share of present_entitled

    @model_validator(mode="after")
    def _consistent(self) -> ElectionHeld:
        if (self.round == 1) != (self.round_of is None):
            raise ValueError("round_of: names the earlier round exactly when round > 1")
        if set(self.tally) != set(self.candidates):
            raise ValueError("tally: one count for each candidate")
        if any(votes < 0 for votes in self.tally.values()):
            raise ValueError("tally: votes are not negative")
        if not set(self.elected) | set(self.tied) <= set(self.candidates):
            raise ValueError("elected: only candidates are elected or tied")
        if len(self.elected) + self.seats_for_next_round + self.empty_seats != self.seats:
            raise ValueError("seats: elected, seats for the next round and empty seats add up")
        if (self.seats_for_next_round > 0) != bool(self.tied):
            raise ValueError("tied: seats go to a next round exactly when candidates tied")
        if self.entitled != len(self.entitled_ids):
            raise ValueError("entitled: the count of entitled_ids")
        if self.present_entitled != len(self.present_entitled_ids):
            raise ValueError("present_entitled: the count of present_entitled_ids")
        return self


GuideKind = Literal["army_officer", "faculty", "alumnus", "other"]


class GuideRegistered(_MemberFamily):
    """A Party-member guide (党员引路人) from outside the branch: an army officer, a faculty
    member, an alumnus. Name and phone are personal data."""

    event_type: ClassVar[str] = "guide.registered"
    schema_version: ClassVar[int] = 2  # 2: name and phone sealed

    guide_id: Identifier
    name: Personal
    kind: GuideKind
    organisation: ShortText
    phone: Personal | None = None
    registered_on: BusinessDate


class GuideAppointed(_MemberFamily):
    """A guide appointed by a branch for a term to named members or to a Party group. The term
    runs from term_starts_on to term_ends_on, both days included."""

    event_type: ClassVar[str] = "guide.appointed"

    appointment_id: Identifier
    guide_id: Identifier
    branch_id: Identifier
    member_ids: list[Identifier] = Field(default_factory=list, max_length=200)
    group_id: Identifier | None = None
    term_starts_on: BusinessDate
    term_ends_on: BusinessDate

    @model_validator(mode="after")
    def _whom(self) -> GuideAppointed:
        if bool(self.member_ids) == (self.group_id is not None):
            raise ValueError("member_ids: name the members or the Party group, not both")
        if self.term_ends_on <= self.term_starts_on:
            raise ValueError("term_ends_on: must be after term_starts_on")
        return self


class GuideAppointmentEnded(_MemberFamily):
    """An appointment ended before its term: from ended_on the guide no longer guides them."""

    event_type: ClassVar[str] = "guide.appointment_ended"

    appointment_id: Identifier
    guide_id: Identifier
    branch_id: Identifier
    ended_on: BusinessDate
    reason: Text


class MemberErased(_MemberFamily):
    """A member who left was erased after the retention period: their key was destroyed, and
    every sealed field of theirs, in every event, can no longer be read. Their events stay (the
    chain and the scores are untouched); every view shows them as erased."""

    event_type: ClassVar[str] = "member.erased"

    member_id: Identifier
    erased_on: BusinessDate
    reason: Text


class GuideErased(_MemberFamily):
    """A guide erased (no appointment in force): as for a member, their key destroyed."""

    event_type: ClassVar[str] = "guide.erased"

    guide_id: Identifier
    erased_on: BusinessDate
    reason: Text
