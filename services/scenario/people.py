"""The people and the calendar of the plan's scenario, generated the same way every time.

The School of National Defence Education (国防教育学院), student branches 1 and 2, three Party
groups each, thirty members each of all four categories; May 2010 to April 2011.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡余杜叶程"
)
GIVEN = [
    "伟",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "杰",
    "涛",
    "明",
    "超",
    "鹏",
    "浩",
    "亮",
    "宇",
    "斌",
    "峰",
    "刚",
    "辉",
    "凯",
    "健",
    "博",
    "晨",
    "阳",
    "帆",
    "龙",
    "飞",
    "毅",
    "俊",
]
COMPANIES = ["一连", "二连", "三连"]

BRANCHES = {
    "nde-b1": "国防教育学院学生第一党支部",
    "nde-b2": "国防教育学院学生第二党支部",
}


@dataclass(frozen=True)
class Person:
    member_id: str
    student_number: str
    name: str
    branch_id: str
    group_id: str
    class_name: str
    company: str
    dormitory: str
    bed: str
    standing: str  # full or probationary on enrolment
    cadre_post: str | None
    expected_graduation: date
    profile: str  # diligent, average or lagging: how they take part (the simulation)
    joined_on: date | None = None
    probation_started_on: date | None = None


@dataclass
class Scenario:
    people: list[Person] = field(default_factory=list)

    def of_branch(self, branch_id: str) -> list[Person]:
        return [p for p in self.people if p.branch_id == branch_id]

    def of_group(self, group_id: str) -> list[Person]:
        return [p for p in self.people if p.group_id == group_id]

    def person(self, member_id: str) -> Person:
        return next(p for p in self.people if p.member_id == member_id)


def groups_of(branch_id: str) -> list[str]:
    return [f"{branch_id}-g{n}" for n in (1, 2, 3)]


def build(seed: int = 2010) -> Scenario:
    rng = random.Random(seed)
    # Ids are opaque, as the roster makes them (a student number is personal data and may be
    # erased; an id is everywhere): drawn apart so that the names stay those of the seed.
    ids = random.Random(seed + 1)
    scenario = Scenario()
    used: set[str] = set()
    for b, branch_id in enumerate(BRANCHES, start=1):
        for n in range(30):
            while True:
                name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(["", *GIVEN])
                if name not in used:
                    used.add(name)
                    break
            year = 2007 + n % 3  # classes of 2007, 2008, 2009: graduating 2011, 2012, 2013
            number = f"{year}{b}{n:03d}"
            probationary = n % 5 == 4  # six in each branch
            profile = (
                "lagging" if n % 10 in (3, 8) else "diligent" if n % 10 in (0, 1, 5) else "average"
            )
            scenario.people.append(
                Person(
                    member_id=f"m-{ids.getrandbits(48):012x}",
                    student_number=number,
                    name=name,
                    branch_id=branch_id,
                    group_id=groups_of(branch_id)[n % 3],
                    class_name=f"国防{str(year)[2:]}0{1 + n % 2}",
                    company=COMPANIES[n % 3],
                    dormitory=f"{7 + b}-{300 + n // 4 * 2 + 1}",
                    bed=str(1 + n % 4),
                    standing="probationary" if probationary else "full",
                    cadre_post=["班长", "团支书", "学习委员", "连长"][n % 4]
                    if n % 4 == 0
                    else None,
                    expected_graduation=date(year + 4, 7, 1),
                    profile=profile,
                    joined_on=None
                    if probationary
                    else date(2009, 6, 1)
                    if year == 2007
                    else date(2009, 12, 1),
                    probation_started_on=date(2010, 4, 20) if probationary else None,
                )
            )
    return scenario


#: Semesters of the plan: all-member meetings on odd weeks, group meetings on even weeks, on
#: Wednesday evenings, skipping the holidays.
SEMESTERS = [
    {"semester_id": "2010-spring", "starts_on": "2010-05-03", "weeks": 9},
    {
        "semester_id": "2010-autumn",
        "starts_on": "2010-09-06",
        "weeks": 18,
        "holidays": ["2010-09-22", "2010-10-06"],
    },  # Mid-Autumn; National Day week
    {
        "semester_id": "2011-spring",
        "starts_on": "2011-02-21",
        "weeks": 10,
        "holidays": ["2011-04-06"],
    },  # Qingming week
]

#: Outings and other activities of the plan (开放管理, 民主管理). The plan's budget is 2,000 CNY:
#: two outings of 700, plaques 400, stationery 200; each branch gets half.
ACTIVITIES: list[tuple[str, str, str, str, int, dict[str, Any]]] = [
    # id, kind, title, date, hour, extra
    (
        "volunteer-2010-05",
        "volunteer_service",
        "凯瑞园社区学雷锋志愿服务",
        "2010-05-20",
        14,
        {"volunteer_hours": "3", "place": "凯瑞园社区"},
    ),
    ("speech-2010-06", "speech", "“假如我是党支部书记”演讲", "2010-06-02", 19, {}),
    (
        "exchange-2010-06",
        "exchange",
        "与教工第一党支部学习交流",
        "2010-06-16",
        15,
        {"partner": "国防教育学院教工第一党支部"},
    ),
    (
        "visit-2010-07-01",
        "visit",
        "七一：瞻仰黑铁山抗日武装起义纪念馆",
        "2010-06-30",
        8,
        {"base": "黑铁山抗日武装起义纪念馆", "planned_cost_fen": 35000, "budget_line": "outings"},
    ),
    ("visit-2010-08-01", "visit", "八一：走进军营实践", "2010-07-30", 8, {"base": "驻地某部军营"}),
    (
        "visit-2010-10-01",
        "visit",
        "十一：慰问革命烈士家属和伤残军人",
        "2010-09-28",
        9,
        {"base": "淄博市优抚对象", "planned_cost_fen": 35000, "budget_line": "outings"},
    ),
    (
        "volunteer-2010-11",
        "volunteer_service",
        "敬老院志愿服务",
        "2010-11-05",
        14,
        {"volunteer_hours": "2.5", "place": "张店区敬老院"},
    ),
    ("life-meeting-2010", "organisational_life_meeting", "年度组织生活会", "2010-12-08", 19, {}),
    ("appraisal-2010", "democratic_appraisal", "民主评议党员", "2010-12-15", 19, {}),
    ("qingming-2011", "visit", "清明：祭扫烈士陵园", "2011-04-03", 8, {"base": "淄博烈士陵园"}),
]
