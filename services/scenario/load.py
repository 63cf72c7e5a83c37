"""Loading the plan's scenario through the services' HTTP APIs, as the people would enter it.

Every command carries an idempotency key derived from what it is, so loading again changes
nothing. Between phases the loader waits until the consuming services have applied what the
producing services published (`/v1/audit/progress`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.scenario.people import ACTIVITIES, BRANCHES, SEMESTERS, Person, Scenario, groups_of

ZONE = ZoneInfo("Asia/Shanghai")
#: The April 2011 revision (修订): absence costs more, group meetings and volunteering count
#: more, "qualified" needs 85 points, and every member starts from 50, not 60 — under the trial
#: a third of the members reached the ceiling of 100 in 2010, where a ranking tells nothing.
REVISION_VERSION = 2
REVISED_BASE = "50"
REVISION_EFFECTIVE_FROM = "2011-04-01"
REVISION_PUBLISHED_ON = "2011-04-28"
REVISED_GRADES: dict[str, dict[str, Any]] = {"qualified": {"min": "85"}}
REVISED_RULES: dict[str, dict[str, Any]] = {
    "absent-without-leave": {"points": "-3"},
    "volunteer-hours": {"points_per": {"field": "volunteer_hours", "factor": "2"}},
    "group-meeting": {"points": "1"},
}
STATUS_WEIGHTS = {
    "diligent": {"present": 95, "late": 3, "excused": 2},
    "average": {"present": 84, "late": 6, "left_early": 3, "excused": 4, "absent": 3},
    "lagging": {"present": 60, "late": 10, "left_early": 6, "excused": 6, "absent": 18},
}


class LoadFailed(Exception):
    pass


@dataclass
class Clients:
    urls: dict[str, str]
    tokens: dict[str, str]  # who → token (admin, auditor, committee members)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))
    sent: int = 0
    on_command: Callable[[], None] = lambda: None

    def post(self, service: str, path: str, body: Any, key: str, who: str = "admin") -> Any:
        headers = {
            "Authorization": f"Bearer {self.tokens[who]}",
            "Idempotency-Key": f"scenario:{key}",
        }
        response = self.http.post(self.urls[service] + path, json=body, headers=headers)
        self.sent += 1
        self.on_command()
        if response.status_code >= 400:
            raise LoadFailed(f"{service} {path}: {response.status_code} {response.text}")
        return response.json()

    def post_read(self, service: str, path: str, body: Any, who: str = "admin") -> Any:
        """A POST that only reads (replay, what-if): no idempotency key."""
        response = self.http.post(
            self.urls[service] + path,
            json=body,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )
        if response.status_code >= 400:
            raise LoadFailed(f"{service} {path}: {response.status_code} {response.text}")
        return response.json()

    def get(self, service: str, path: str, who: str = "admin", **params: Any) -> Any:
        response = self.http.get(
            self.urls[service] + path,
            params=params,
            headers={"Authorization": f"Bearer {self.tokens[who]}"},
        )
        if response.status_code >= 400:
            raise LoadFailed(f"{service} {path}: {response.status_code} {response.text}")
        return response.json()

    def progress(self, service: str) -> dict[str, int]:
        body = self.get(service, "/v1/audit/progress", who="auditor")
        return {"head": body["head_position"], "inbox": body["inbox"]}


#: Which producers' events each consumer applies (every event of their families).
CONSUMES = {
    "activities": ("roster",),
    "scoring": ("roster", "activities"),
    "notify": ("roster", "activities", "scoring"),
    "roster": ("scoring",),
}


def settle(clients: Clients, *services: str, within: float = 180.0) -> None:
    """Wait until these services have applied everything their producers recorded."""
    deadline = time.monotonic() + within
    for service in services:
        while True:
            heads = sum(clients.progress(p)["head"] for p in CONSUMES[service])
            applied = clients.progress(service)["inbox"]
            if applied >= _published(clients, service, heads):
                break
            if time.monotonic() > deadline:
                raise LoadFailed(f"{service} has applied {applied} of {heads} events")
            time.sleep(0.2)


def _published(clients: Clients, service: str, heads: int) -> int:
    if service != "roster":
        return heads
    # The roster consumes only closed assessments from the score stream.
    events = clients.get(
        "scoring", "/v1/audit/events", who="auditor", type=["assessment.closed"], limit=1000
    )["events"]
    return len(events)


def at(day: str | date, hour: int = 9, minute: int = 0) -> str:
    moment = datetime.combine(date.fromisoformat(str(day)), datetime.min.time(), ZONE)
    return (moment + timedelta(hours=hour, minutes=minute)).isoformat()


@dataclass
class Loader:
    clients: Clients
    scenario: Scenario
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    # -- the roster of May 2010 -----------------------------------------------------------------

    def organisation(self) -> None:
        c = self.clients
        c.post(
            "roster",
            "/v1/units",
            {
                "unit_id": "nde",
                "kind": "school",
                "name": "国防教育学院",
                "established_on": "2010-05-04",
            },
            "unit:nde",
        )
        for branch_id, name in BRANCHES.items():
            c.post(
                "roster",
                "/v1/units",
                {
                    "unit_id": branch_id,
                    "kind": "branch",
                    "name": name,
                    "parent_id": "nde",
                    "branch_kind": "student",
                    "established_on": "2010-05-04",
                },
                f"unit:{branch_id}",
            )
            for n, group in enumerate(groups_of(branch_id), start=1):
                c.post(
                    "roster",
                    "/v1/units",
                    {
                        "unit_id": group,
                        "kind": "group",
                        "name": f"第{n}党小组",
                        "parent_id": branch_id,
                        "established_on": "2010-05-04",
                    },
                    f"unit:{group}",
                )
        self.count("units", 9)

    def enrol(self) -> None:
        for person in self.scenario.people:
            body: dict[str, Any] = {
                "member_id": person.member_id,
                "branch_id": person.branch_id,
                "student_number": person.student_number,
                "name": person.name,
                "group_id": person.group_id,
                "class_name": person.class_name,
                "company": person.company,
                "dormitory": person.dormitory,
                "bed": person.bed,
                "standing": person.standing,
                "cadre_post": person.cadre_post,
                "expected_graduation": person.expected_graduation.isoformat(),
                "enrolled_on": "2010-05-04",
            }
            if person.joined_on:
                body["joined_on"] = person.joined_on.isoformat()
            if person.probation_started_on:
                body["probation_started_on"] = person.probation_started_on.isoformat()
            self.clients.post("roster", "/v1/members", body, f"enrol:{person.member_id}")
        self.count("members", len(self.scenario.people))

    def committees(self) -> None:
        """Each branch elects its committee (民主选举) at the general meeting of 5 May 2010:
        差额 — one candidate more than the three seats — and all full members but one there."""
        for branch_id in BRANCHES:
            full = [p.member_id for p in self.scenario.of_branch(branch_id) if p.standing == "full"]
            present = full[:-1]
            candidates = full[:4]
            voters = len(present)
            # The three the branch wants get most votes; the fourth less than half.
            tally = dict(
                zip(candidates, (voters - 1, voters - 2, voters - 3, voters // 5), strict=True)
            )
            self.clients.post(
                "roster",
                f"/v1/branches/{branch_id}/elections",
                {
                    "election_id": f"election-{branch_id}-2010",
                    "held_on": "2010-05-05",
                    "seats": 3,
                    "candidates": candidates,
                    "present": present,
                    "ballots_cast": voters,
                    "tally": tally,
                    "secretary_id": candidates[0],
                    "term_ends_on": "2013-05-04",
                },
                f"election:{branch_id}",
            )
            self.count("elections")

    def committee(self, branch_id: str) -> list[str]:
        full = [p for p in self.scenario.of_branch(branch_id) if p.standing == "full"]
        return [p.member_id for p in full[:3]]

    def may(self) -> None:
        c = self.clients
        for person in self.scenario.people:
            m = person.member_id
            c.post(
                "roster",
                f"/v1/members/{m}/responsibility-space",
                {
                    "dormitory": person.dormitory,
                    "class_name": person.class_name,
                    "company": person.company,
                    "post_scope": f"{person.cadre_post}岗位" if person.cadre_post else None,
                    "effective_on": "2010-05-10",
                },
                f"space:{m}",
            )
            c.post(
                "roster",
                f"/v1/members/{m}/agreements",
                {
                    "agreement_id": f"agr-2009-{m}",
                    "academic_year": "2009-2010",
                    "signed_on": "2010-05-15",
                    "expires_on": "2010-08-31",
                },
                f"agreement:2009:{m}",
            )
            if int(person.bed) == 1:
                c.post(
                    "roster",
                    f"/v1/members/{m}/plaques",
                    {
                        "plaque_id": f"plaque-{m}",
                        "kind": "dormitory",
                        "dormitory": person.dormitory,
                        "issued_on": "2010-05-28",
                    },
                    f"plaque:{m}",
                )
                self.count("plaques")
            verdict = {"diligent": "excellent", "lagging": "lagging"}.get(person.profile)
            if verdict and (verdict == "lagging" or person.student_number[-1] in "05"):
                c.post(
                    "roster",
                    f"/v1/members/{m}/categories",
                    {
                        "dimension": "performance",
                        "value": verdict,
                        "reason": "2009–2010学年表现（分类管理建档）",
                        "effective_on": "2010-05-10",
                    },
                    f"performance:2010-05:{m}",
                )
        self.count("agreements", len(self.scenario.people))
        for branch_id in BRANCHES:
            suggestions = c.get(
                "roster", f"/v1/branches/{branch_id}/pairing-suggestions", as_of="2010-05-20"
            )
            for n, pair in enumerate(suggestions, start=1):
                c.post(
                    "roster",
                    f"/v1/branches/{branch_id}/pairings",
                    {
                        "pairing_id": f"pair-{branch_id}-2010-{n}",
                        "mentor_id": pair["mentor_id"],
                        "mentee_id": pair["mentee_id"],
                        "formed_on": "2010-05-20",
                    },
                    f"pair:{branch_id}:{n}",
                )
                self.count("pairs")
            for group, target in zip(
                groups_of(branch_id),
                (
                    ("company", "一连"),
                    ("class", "国防0901"),
                    ("student_in_difficulty", "经济困难学生帮扶小组"),
                ),
                strict=True,
            ):
                c.post(
                    "roster",
                    f"/v1/groups/{group}/links",
                    {
                        "link_id": f"link-{group}",
                        "target_kind": target[0],
                        "target": target[1],
                        "established_on": "2010-05-25",
                    },
                    f"link:{group}",
                )
                self.count("links")

    # -- activities ------------------------------------------------------------------------------

    def plan(self) -> None:
        c = self.clients
        for branch_id in BRANCHES:
            c.post(
                "activities",
                f"/v1/branches/{branch_id}/budgets/2010",
                {
                    "lines": [
                        {"line": "outings", "amount_fen": 70000},
                        {"line": "plaques", "amount_fen": 20000},
                        {"line": "stationery", "amount_fen": 10000},
                    ],
                    "planned_on": "2010-05-08",
                },
                f"budget:{branch_id}:2010",
            )
            c.post(
                "activities",
                f"/v1/branches/{branch_id}/report-cadence",
                {"every_weeks": 4, "starts_on": "2010-05-17"},
                f"cadence:{branch_id}",
            )
            for semester in SEMESTERS:
                c.post(
                    "activities",
                    f"/v1/branches/{branch_id}/semesters",
                    {
                        **semester,
                        "weekday": 3,
                        "at": "19:00:00",
                        "place": "国防教育学院301室",
                        "holidays": semester.get("holidays", []),
                    },
                    f"semester:{branch_id}:{semester['semester_id']}",
                )
            for activity_id, kind, title, day, hour, extra in ACTIVITIES:
                body = {
                    "activity_id": f"{activity_id}-{branch_id}",
                    "kind": kind,
                    "title": title,
                    "branch_id": branch_id,
                    "starts_at": at(day, hour),
                    "ends_at": at(day, hour + 3),
                    "place": extra.get("place", title[:20]),
                    **{k: v for k, v in extra.items() if k != "place"},
                }
                c.post("activities", "/v1/activities", body, f"activity:{activity_id}:{branch_id}")
        self.count("budgets", 2)

    def attendance(self, until: str, since: str = "2000-01-01") -> None:
        c = self.clients
        for branch_id in BRANCHES:
            activities = c.get(
                "activities",
                f"/v1/branches/{branch_id}/activities",
                start=at(since, 0),
                end=at(until, 23, 59),
            )
            for activity in activities:
                if activity["cancelled"]:
                    continue
                people = (
                    self.scenario.of_group(activity["group_id"])
                    if activity["group_id"]
                    else self.scenario.of_branch(branch_id)
                )
                lines = [self._line(p, activity["activity_id"]) for p in people]
                c.post(
                    "activities",
                    f"/v1/activities/{activity['activity_id']}/attendance",
                    {"lines": lines},
                    f"attendance:{activity['activity_id']}",
                )
                self.count("attendance lines", len(lines))

    def _line(self, person: Person, activity_id: str) -> dict[str, Any]:
        weights = STATUS_WEIGHTS[person.profile]
        rng = random.Random(f"{person.member_id}:{activity_id}")
        status = rng.choices(list(weights), list(weights.values()))[0]
        line: dict[str, Any] = {"member_id": person.member_id, "status": status}
        if status == "excused":
            line["excuse"] = rng.choice(["病假", "参加连队训练", "考试", "实习"])
        return line

    def reports(self, until: str) -> None:
        c = self.clients
        for branch_id in BRANCHES:
            c.post(
                "activities",
                f"/v1/branches/{branch_id}/report-obligations",
                {"through": until},
                f"obligations:{branch_id}:{until}",
            )
            for obligation in c.get("activities", f"/v1/branches/{branch_id}/obligations"):
                if obligation["due_on"] > until:
                    continue
                person = self.scenario.person(obligation["member_id"])
                rng = random.Random(obligation["obligation_id"])
                late = (
                    rng.random()
                    < {"diligent": 0.02, "average": 0.1, "lagging": 0.35}[person.profile]
                )
                day = date.fromisoformat(obligation["due_on"]) + timedelta(
                    days=rng.randint(1, 6) if late else -rng.randint(0, 5)
                )
                c.post(
                    "activities",
                    f"/v1/reports/{obligation['obligation_id']}/submission",
                    {"submitted_at": at(day, 21)},
                    f"submit:{obligation['obligation_id']}",
                )
                grade = rng.choices(
                    ["excellent", "good", "pass", "fail"],
                    {
                        "diligent": [40, 50, 10, 0],
                        "average": [10, 60, 28, 2],
                        "lagging": [2, 30, 50, 18],
                    }[person.profile],
                )[0]
                # The secretary reads it within a few days, at 10:00.
                reviewed = day + timedelta(days=rng.randint(1, 4))
                c.post(
                    "activities",
                    f"/v1/reports/{obligation['obligation_id']}/review",
                    {"grade": grade, "reviewed_at": at(reviewed, 10)},
                    f"review:{obligation['obligation_id']}",
                )
                self.count("reports")

    def expenses(self) -> None:
        c = self.clients
        for branch_id in BRANCHES:
            for expense_id, line, amount, activity, day, text in (
                ("plaques", "plaques", 19000, None, "2010-05-27", "党员宿舍、床铺标牌制作"),
                ("visit-07", "outings", 34000, "visit-2010-07-01", "2010-06-30", "租车及讲解"),
                ("visit-10", "outings", 36000, "visit-2010-10-01", "2010-09-28", "慰问品及交通"),
                ("stationery", "stationery", 7800, None, "2010-09-10", "档案盒、责任书印制"),
            ):
                c.post(
                    "activities",
                    f"/v1/branches/{branch_id}/budgets/2010/expenses",
                    {
                        "expense_id": f"exp-{branch_id}-{expense_id}",
                        "line": line,
                        "amount_fen": amount,
                        "activity_id": f"{activity}-{branch_id}" if activity else None,
                        "spent_on": day,
                        "description": text,
                    },
                    f"expense:{branch_id}:{expense_id}",
                )
                self.count("expenses")

    # -- the rest of the year ----------------------------------------------------------------------

    def autumn(self) -> None:
        c = self.clients
        for branch_id in BRANCHES:
            secretary, deputy = self.committee(branch_id)[:2]
            member = next(
                p
                for p in self.scenario.of_branch(branch_id)
                if p.profile == "diligent" and p.member_id not in (secretary, deputy)
            )
            c.post(
                "scoring",
                f"/v1/branches/{branch_id}/adjustments",
                {
                    "adjustment_id": f"adj-{branch_id}-flood",
                    "member_id": member.member_id,
                    "period_id": "2010",
                    "effective_on": "2010-10-20",
                    "points": "3",
                    "reason": "暑期抗洪抢险志愿服务，受到地方表彰",
                },
                f"adjust:{branch_id}",
                who=secretary,
            )
            c.post(
                "scoring",
                f"/v1/branches/{branch_id}/adjustments/adj-{branch_id}-flood/approval",
                {},
                f"approve:{branch_id}",
                who=deputy,
            )
            # The mid-term review (中期考核) ends the first pair of May: the help worked.
            first = f"pair-{branch_id}-2010-1"
            pairs = c.get("roster", f"/v1/branches/{branch_id}/pairings")
            if any(pair["pairing_id"] == first for pair in pairs):
                c.post(
                    "roster",
                    f"/v1/branches/{branch_id}/pairings/{first}/end",
                    {"ended_on": "2010-10-20", "reason": "中期考核：帮扶见效"},
                    f"pair-end:{branch_id}",
                )
        lagging = [p for p in self.scenario.people if p.profile == "lagging"]
        c.post(
            "roster",
            f"/v1/members/{lagging[0].member_id}/discipline",
            {
                "measure": "warning",
                "decided_on": "2010-11-18",
                "reason": "多次无故缺席组织生活，经教育仍不改正",
            },
            "discipline:1",
        )
        plaque_holder = next(p for p in lagging if int(p.bed) == 1)
        c.post(
            "roster",
            f"/v1/members/{plaque_holder.member_id}/plaques/"
            f"plaque-{plaque_holder.member_id}/withdrawal",
            {"withdrawn_on": "2010-11-02", "reason": "宿舍卫生检查不合格"},
            "plaque-out:1",
        )

    def close_year(self) -> None:
        for branch_id in BRANCHES:
            secretary = self.committee(branch_id)[0]
            self.clients.post(
                "scoring",
                f"/v1/branches/{branch_id}/periods/2010/close",
                {"closed_on": "2010-12-31"},
                f"close:{branch_id}:2010",
                who=secretary,
            )

    def spring(self) -> None:
        c = self.clients
        for person in self.scenario.people:
            c.post(
                "roster",
                f"/v1/members/{person.member_id}/agreements",
                {
                    "agreement_id": f"agr-2010-{person.member_id}",
                    "academic_year": "2010-2011",
                    "signed_on": "2011-03-10",
                },
                f"agreement:2010:{person.member_id}",
            )
        probationary = [p for p in self.scenario.people if p.standing == "probationary"]
        for person in probationary:
            if person.profile == "lagging":
                c.post(
                    "roster",
                    f"/v1/members/{person.member_id}/probation-extension",
                    {
                        "months": 6,
                        "reason": "组织生活参加不够，需继续考察",
                        "decided_on": "2011-04-22",
                    },
                    f"extend:{person.member_id}",
                )
            else:
                # The general meeting votes: the branch's full members but one are there, and
                # all but two of them vote yes.
                voters = [
                    p.member_id
                    for p in self.scenario.of_branch(person.branch_id)
                    if p.standing == "full"
                ][:-1]
                c.post(
                    "roster",
                    f"/v1/members/{person.member_id}/conversion",
                    {
                        "decided_on": "2011-04-22",
                        "vote": {
                            "present": voters,
                            "yes": len(voters) - 2,
                            "no": 1,
                            "abstain": 1,
                        },
                    },
                    f"convert:{person.member_id}",
                )
            self.count("probation outcomes")
        revised = revised_regulation(c)
        c.post(
            "scoring",
            f"/v1/regulations?published_on={REVISION_PUBLISHED_ON}",
            revised,
            "regulation:v2",
        )


def revised_regulation(clients: Clients) -> dict[str, Any]:
    """The April 2011 revision: the trial regulation with the changes the year taught."""
    versions = clients.get("scoring", "/v1/regulations", regulation_id="nde-2010")
    current = next(v for v in versions if v["version"] == 1)["document"]
    rules = [{**rule, **REVISED_RULES.get(rule["id"], {})} for rule in current["rules"]]
    for rule in rules:
        if "points_per" in REVISED_RULES.get(rule["id"], {}):
            rule["points"] = None
    title = current["title"]
    if isinstance(title, dict):
        title = {
            k: (f"{v}（2011年修订）" if k == "zh" else f"{v} (revised 2011)")
            for k, v in title.items()
            if v
        }
    grades = [{**band, **REVISED_GRADES.get(band["grade"], {})} for band in current["grades"]]
    return {
        **current,
        "version": REVISION_VERSION,
        "base": REVISED_BASE,
        "title": title,
        "effective_from": REVISION_EFFECTIVE_FROM,
        "rules": rules,
        "grades": grades,
    }


Step = Callable[["Loader"], None]


def _settle(*services: str) -> Step:
    return lambda loader: settle(loader.clients, *services)


PHASES: list[tuple[str, list[Step]]] = [
    ("organisation and members", [Loader.organisation, Loader.enrol, Loader.committees]),
    ("services learn the roster", [_settle("activities", "scoring", "notify")]),
    ("May 2010: spaces, agreements, pairs", [Loader.may]),
    ("meetings, outings, budgets", [Loader.plan]),
    ("attendance May–Dec 2010", [lambda lo: lo.attendance("2010-12-31")]),
    ("reports 2010", [lambda lo: lo.reports("2010-12-31")]),
    ("expenses, mid-term review, autumn", [Loader.expenses, Loader.autumn]),
    ("scoring catches up", [_settle("scoring")]),
    ("year-end assessment", [Loader.close_year]),
    ("roster takes the verdicts", [_settle("roster", "notify")]),
    (
        "spring 2011, revised regulation",
        [
            lambda lo: lo.attendance("2011-04-30", "2011-01-01"),
            lambda lo: lo.reports("2011-04-30"),
            Loader.spring,
        ],
    ),
    ("every service catches up", [_settle("activities", "scoring", "notify", "roster")]),
]


def load(clients: Clients, scenario: Scenario) -> tuple[dict[str, int], dict[str, float]]:
    """Load everything, showing progress; return what was loaded and how long each phase took."""
    timings: dict[str, float] = {}
    columns = (
        TextColumn("{task.description:<38}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        phases = progress.add_task("phases", total=len(PHASES))
        commands = progress.add_task("commands sent", total=None)
        clients.on_command = lambda: progress.advance(commands)
        loader = Loader(clients, scenario)
        for name, steps in PHASES:
            progress.update(phases, description=name)
            started = time.perf_counter()
            for step in steps:
                step(loader)
            timings[name] = time.perf_counter() - started
            progress.advance(phases)
        progress.update(phases, description="loaded")
    loader.count("commands", clients.sent)
    return loader.counts, timings
