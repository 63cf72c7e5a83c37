"""Every event type of the v1 catalogue (DESIGN §3), one module per family."""

from contracts.events.activity import (
    ActivityCancelled,
    ActivityRescheduled,
    ActivityScheduled,
    ExpenseRecorded,
)
from contracts.events.attendance import AttendanceCorrected, AttendanceRecorded
from contracts.events.deadline import DeadlineMet, DeadlineMissed, DeadlineScheduled, ReminderSent
from contracts.events.member import (
    AgreementSigned,
    CategoryChanged,
    CommitteeElected,
    GroupLinkEstablished,
    MemberConverted,
    MemberEnrolled,
    MemberMoved,
    MemberTransferredOut,
    PairingEnded,
    PairingFormed,
    PlaqueIssued,
    PlaqueWithdrawn,
    ProbationExtended,
    SpaceAssigned,
    UnitRegistered,
)
from contracts.events.report import ReportRequired, ReportReviewed, ReportSubmitted
from contracts.events.score import (
    AssessmentClosed,
    RegulationPublished,
    ScoreAdjusted,
    ScoreAwarded,
    ScoreDeducted,
)

__all__ = [
    "ActivityCancelled",
    "ActivityRescheduled",
    "ActivityScheduled",
    "AgreementSigned",
    "AssessmentClosed",
    "AttendanceCorrected",
    "AttendanceRecorded",
    "CategoryChanged",
    "CommitteeElected",
    "DeadlineMet",
    "DeadlineMissed",
    "DeadlineScheduled",
    "ExpenseRecorded",
    "GroupLinkEstablished",
    "MemberConverted",
    "MemberEnrolled",
    "MemberMoved",
    "MemberTransferredOut",
    "PairingEnded",
    "PairingFormed",
    "PlaqueIssued",
    "PlaqueWithdrawn",
    "ProbationExtended",
    "RegulationPublished",
    "ReminderSent",
    "ReportRequired",
    "ReportReviewed",
    "ReportSubmitted",
    "ScoreAdjusted",
    "ScoreAwarded",
    "ScoreDeducted",
    "SpaceAssigned",
    "UnitRegistered",
]
