"""A regulation per school, through the HTTP APIs of the real roster and scoring services (in
this process, on the real PostgreSQL and Redis): publishing several regulation ids side by
side, who may publish and adopt which, adoptions dated and refused, dated adjustments, what-if
across branches of different regulations, the formats of `as_of` and `known_at`, and every
number at its regulation's scale. A refused command appends nothing to scoring's log.

The university (its regulation `nde-2010`, the shipped default: base 60, precision 1):

    school nde   (国防教育学院)  branches nde-b1 (m1 secretary, m2 committee, m3)
                                          nde-b2 (n1, n2, n3)
    school hist  (历史学院)      branch   hist-b1 (h1 secretary, h2 committee, h3)

What the roster records that nde-2010 scores (agreement +2, mentoring +3, plaque −5):

    h1  signs the agreement of 2009-2010 on 10 May 2010; mentors h3 from 20 May 2010
    h2  a bed plaque issued on 12 May 2010, withdrawn on 15 November 2010
    m1  signs the agreement on 10 May 2010; a plaque withdrawn on 15 November 2010

The regulations written here:

    hist-own   the School of History's own (its school admin publishes it): precision 0, base
               70, agreement +5, mentoring +4, plaque −3; period 2010 as nde-2010's
    b2-trial   nde-b2's trial (nde's school admin): precision 2, base 75, no rule that the
               roster's events match; period 2010 as nde-2010's
    this-year  the university's, for a period spanning the current year (dates from today)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis.asyncio as redis

from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

BEIJING = ZoneInfo("Asia/Shanghai")

PERIOD_2010 = {"id": "2010", "starts_on": "2010-05-01", "ends_on": "2010-12-31"}


def regulation(rid: str, **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": rid,
        "version": 1,
        "title": {"zh": f"{rid} 管理规定", "en": f"{rid} regulation"},
        "effective_from": "2010-05-01",
        "periods": [PERIOD_2010],
        "base": "60",
        "floor": "0",
        "ceiling": "100",
        "precision": 1,
        "rules": [
            {
                "id": "agreement",
                "title": "签订责任书",
                "on": "responsibility.agreement_signed",
                "points": "2",
            }
        ],
        "grades": [{"grade": "qualified", "min": "60"}, {"grade": "unqualified"}],
        "classification": {"unqualified": "lagging"},
    }
    document.update(fields)
    return document


HIST_OWN = regulation(
    "hist-own",
    title={"zh": "历史学院学生党员量化考核办法", "en": "School of History: assessment"},
    base="70",
    precision=0,
    rules=[
        {
            "id": "agreement",
            "title": "签订责任书",
            "on": "responsibility.agreement_signed",
            "points": "5",
        },
        {
            "id": "mentor",
            "title": "结对帮扶",
            "on": "pairing.formed",
            "member": "mentor_id",
            "points": "4",
        },
        {"id": "plaque", "title": "挂牌被撤", "on": "plaque.withdrawn", "points": "-3"},
    ],
)

B2_TRIAL = regulation(
    "b2-trial",
    base="75",
    precision=2,
    rules=[
        {
            "id": "present",
            "title": "出席",
            "on": "attendance.recorded",
            "when": {"status": "present"},
            "points": "1.25",
        }
    ],
)


def beijing_today() -> date:
    """Today in the university's time zone (the service's `today`; `date.today()` of this
    machine may be another day near midnight)."""
    return datetime.now(BEIJING).date()


def this_year() -> dict[str, Any]:
    year = beijing_today().year
    return regulation(
        "this-year",
        effective_from=f"{year}-01-01",
        periods=[{"id": f"y{year}", "starts_on": f"{year}-01-01", "ends_on": f"{year}-12-31"}],
    )


class Campus:
    def __init__(self, apis: dict[str, Api]) -> None:
        self.apis = apis
        self.scoring = apis["scoring"]
        self.roster = RosterClient(apis["roster"])
        api = apis["roster"]
        self.admin = api.auth("university_admin", subject="org-office")
        self.auditor = api.auth("auditor")
        self.hist_office = api.auth("school_admin", schools=["hist"], subject="hist-office")
        self.nde_office = api.auth("school_admin", schools=["nde"], subject="nde-office")
        self.m1 = api.auth("branch_secretary", branches=["nde-b1"], member_id="m1", subject="m1")
        self.m2 = api.auth("committee_member", branches=["nde-b1"], member_id="m2", subject="m2")
        self.h1 = api.auth("branch_secretary", branches=["hist-b1"], member_id="h1", subject="h1")

    async def post(
        self,
        path: str,
        body: Any,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        return await self.scoring.client.post(
            path, json=body, headers=headers or self.admin, params=params
        )

    async def ok(
        self, path: str, body: Any, headers: dict[str, str] | None = None, **params: Any
    ) -> dict[str, Any]:
        response = await self.post(path, body, headers, **params)
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()  # type: ignore[no-any-return]

    async def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        response = await self.scoring.client.get(
            path, params=params, headers=headers or self.auditor
        )
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    async def refused(
        self,
        call: Any,
        status: int,
        rule: str | None,
        field: str | None = None,
    ) -> dict[str, Any]:
        """`call` (a coroutine of a POST) is answered `status` with `rule` and, when given, the
        first error naming `field`; and scoring's log is as long as before."""
        before = await self.scoring.event_count()
        response: httpx.Response = await call
        assert response.status_code == status, response.text
        problem: dict[str, Any] = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem.get("rule") == rule, problem
        if field is not None:
            assert problem["errors"][0]["field"] == field, problem
        assert await self.scoring.event_count() == before, "a refused command appended events"
        return problem

    async def applied(self) -> None:
        """Until scoring has applied everything the roster recorded."""
        scoring = self.scoring.context

        async def caught_up() -> bool:
            head, _ = await self.apis["roster"].context.store.head()
            applied = await scoring.pool.fetchval(f'SELECT count(*) FROM "{scoring.schema}".inbox')
            return int(applied) >= head

        await wait_until(caught_up, within=60, what="scoring to apply the roster's events")

    async def default_published(self) -> None:
        async def published() -> bool:
            listed = await self.get("/v1/regulations")
            return any(r["id"] == "nde-2010" for r in listed)

        await wait_until(published, within=30, what="the default regulation")

    async def score(self, member: str, period: str = "2010", **params: Any) -> dict[str, Any]:
        [found] = await self.get(f"/v1/members/{member}/score", period_id=period, **params)
        return found  # type: ignore[no-any-return]

    async def table(self, branch: str, period: str = "2010", **params: Any) -> dict[str, Any]:
        table: dict[str, Any] = await self.get(f"/v1/branches/{branch}/periods/{period}", **params)
        return table

    async def totals(self, branch: str, period: str = "2010", **params: Any) -> list[Any]:
        table = await self.table(branch, period, **params)
        return [(r["member_id"], r["total"], r["rank"], r["grade"]) for r in table["members"]]


async def organise(c: Campus) -> None:
    r = c.roster
    for school, name in (("nde", "国防教育学院"), ("hist", "历史学院")):
        await r.post(
            "/v1/units",
            {"unit_id": school, "kind": "school", "name": name, "established_on": "2010-04-01"},
        )
    for branch, school in (("nde-b1", "nde"), ("nde-b2", "nde"), ("hist-b1", "hist")):
        await r.post(
            "/v1/units",
            {
                "unit_id": branch,
                "kind": "branch",
                "name": f"{branch} 学生党支部",
                "parent_id": school,
                "branch_kind": "student",
                "established_on": "2010-04-01",
            },
        )
        await r.post(
            "/v1/units",
            {
                "unit_id": f"{branch}-g1",
                "kind": "group",
                "name": "第一党小组",
                "parent_id": branch,
                "established_on": "2010-04-01",
            },
        )
    for n, (member, branch) in enumerate(
        [
            ("m1", "nde-b1"),
            ("m2", "nde-b1"),
            ("m3", "nde-b1"),
            ("n1", "nde-b2"),
            ("n2", "nde-b2"),
            ("n3", "nde-b2"),
            ("h1", "hist-b1"),
            ("h2", "hist-b1"),
            ("h3", "hist-b1"),
        ]
    ):
        await r.enrol(member, branch, number=f"2008{n:04d}", enrolled_on="2010-05-04")
    for branch, secretary, deputy in (("nde-b1", "m1", "m2"), ("hist-b1", "h1", "h2")):
        await r.post(
            f"/v1/branches/{branch}/committee",
            {
                "secretary_id": secretary,
                "member_ids": [secretary, deputy],
                "term_starts_on": "2010-05-05",
                "term_ends_on": "2013-05-04",
                "elected_on": "2010-05-05",
            },
        )
    for member in ("h1", "m1"):
        await r.post(
            f"/v1/members/{member}/responsibility-space",
            {"dormitory": "8-312", "effective_on": "2010-05-06"},
        )
        await r.post(
            f"/v1/members/{member}/agreements",
            {
                "agreement_id": f"ag-{member}-2009",
                "academic_year": "2009-2010",
                "signed_on": "2010-05-10",
            },
        )
    await r.post(
        "/v1/branches/hist-b1/pairings",
        {"pairing_id": "pair-h", "mentor_id": "h1", "mentee_id": "h3", "formed_on": "2010-05-20"},
    )
    for member in ("h2", "m1"):
        await r.post(
            f"/v1/members/{member}/plaques",
            {
                "plaque_id": f"pl-{member}",
                "kind": "bed",
                "dormitory": "8-312",
                "bed": "2",
                "issued_on": "2010-05-12",
            },
        )
        await r.post(
            f"/v1/members/{member}/plaques/pl-{member}/withdrawal",
            {"withdrawn_on": "2010-11-15", "reason": "宿舍卫生检查不合格"},
        )
    await c.applied()
    await c.default_published()


@pytest.fixture
async def campus(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[Campus]:
    async with services([ROSTER, SCORING], database_url, stream_prefix, REDIS_URL) as apis:
        made = Campus(apis)
        await organise(made)
        yield made


# -- publishing -----------------------------------------------------------------------------------


async def test_regulations_are_published_side_by_side_and_a_school_owns_its_own(
    campus: Campus,
) -> None:
    c = campus
    # A school admin publishes the school's own: no restart, no setting.
    created = await c.ok("/v1/regulations", HIST_OWN, c.hist_office, published_on="2010-04-20")
    assert created["id"] == "hist-own:v1"
    listed = await c.get("/v1/regulations")
    assert {(r["id"], r["version"], r["default"], r["owner_unit_id"]) for r in listed} == {
        ("nde-2010", 1, True, None),  # the university's
        ("hist-own", 1, False, "hist"),
    }
    [hist] = await c.get("/v1/regulations", regulation_id="hist-own")
    assert (hist["precision"], hist["effective_from"]) == (0, "2010-05-01")

    # Another school's admin may not publish its next version: 409 regulation_owned (a refusal
    # in the state of things: the school owns the id), naming the field `id`.
    v2 = {**HIST_OWN, "version": 2, "effective_from": "2010-09-01"}
    problem = await c.refused(
        c.post("/v1/regulations", v2, c.nde_office), 409, "regulation_owned", "id"
    )
    assert "school hist" in problem["detail"]
    # … nor the university's own regulation
    university_v2 = {**regulation("nde-2010"), "version": 2}
    await c.refused(
        c.post("/v1/regulations", university_v2, c.hist_office), 409, "regulation_owned", "id"
    )
    # A version out of sequence: 409 regulation_version
    await c.refused(
        c.post("/v1/regulations", {**HIST_OWN, "version": 3}, c.hist_office),
        409,
        "regulation_version",
        "version",
    )
    # Not a publisher's role, or a school admin of two schools: 403
    await c.refused(c.post("/v1/regulations", v2, c.h1), 403, None)
    two_schools = c.scoring.auth("school_admin", schools=["hist", "nde"], subject="both")
    await c.refused(c.post("/v1/regulations", v2, two_schools), 403, None)
    # A number finer than the precision: 422 naming the rule and the field
    finer = {
        **HIST_OWN,
        "version": 2,
        "rules": [{**HIST_OWN["rules"][0], "points": "2.5", "cap": "2.25"}],
    }
    problem = await c.refused(c.post("/v1/regulations", finer, c.hist_office), 422, None)
    assert {e["field"] for e in problem["errors"]} == {
        "rules[agreement].points",
        "rules[agreement].cap",
    }

    # The school publishes v2; the university admin may publish v3, and the school still owns it.
    await c.ok("/v1/regulations", v2, c.hist_office, published_on="2010-08-20")
    await c.ok("/v1/regulations", {**v2, "version": 3}, c.admin, published_on="2010-08-21")
    listed = await c.get("/v1/regulations", regulation_id="hist-own")
    assert [(r["version"], r["owner_unit_id"], r["default"]) for r in listed] == [
        (1, "hist", False),
        (2, "hist", False),
        (3, "hist", False),
    ]


# -- adopting -------------------------------------------------------------------------------------


async def test_adoptions_are_scoped_dated_and_refused_when_they_cannot_hold(
    campus: Campus,
) -> None:
    c = campus
    await c.ok("/v1/regulations", HIST_OWN, c.hist_office, published_on="2010-04-20")
    await c.ok("/v1/regulations", B2_TRIAL, c.nde_office, published_on="2010-04-20")
    adopt = {
        "regulation_id": "hist-own",
        "effective_from": "2010-05-01",
        "decided_on": "2010-04-28",
    }

    # A school admin adopts for their school and its branches, not another school's: 403.
    await c.refused(c.post("/v1/units/hist-b1/regulation", adopt, c.nde_office), 403, None)
    await c.refused(c.post("/v1/units/hist/regulation", adopt, c.nde_office), 403, None)
    # Nor a Party group, nor a branch secretary.
    await c.refused(c.post("/v1/units/hist-b1-g1/regulation", adopt, c.hist_office), 403, None)
    await c.refused(c.post("/v1/units/hist-b1/regulation", adopt, c.h1), 403, None)
    # The university admin adopting for a group: the unit cannot adopt (409, field unit_id).
    await c.refused(
        c.post("/v1/units/hist-b1-g1/regulation", adopt),
        409,
        "unit_not_school_or_branch",
        "unit_id",
    )
    # A regulation nobody published: 409 regulation_unknown.
    await c.refused(
        c.post("/v1/units/hist/regulation", {**adopt, "regulation_id": "hist-9"}, c.hist_office),
        409,
        "regulation_unknown",
        "regulation_id",
    )
    # Before its first version takes effect (1 May 2010): 409 regulation_not_in_force.
    await c.refused(
        c.post(
            "/v1/units/hist/regulation", {**adopt, "effective_from": "2010-04-30"}, c.hist_office
        ),
        409,
        "regulation_not_in_force",
        "effective_from",
    )
    # What the unit follows already: 409 nothing_changes.
    await c.refused(
        c.post("/v1/units/hist/regulation", {**adopt, "regulation_id": "nde-2010"}, c.hist_office),
        409,
        "nothing_changes",
    )

    # The School of History adopts its own from 1 September; nde-b2 its trial from 1 July.
    await c.ok(
        "/v1/units/hist/regulation", {**adopt, "effective_from": "2010-09-01"}, c.hist_office
    )
    await c.ok(
        "/v1/units/nde-b2/regulation",
        {"regulation_id": "b2-trial", "effective_from": "2010-07-01", "decided_on": "2010-06-20"},
        c.nde_office,
    )

    async def follows(unit: str, day: str) -> tuple[str, int | None, str]:
        found = await c.get(f"/v1/units/{unit}/regulation", as_of=day)
        assert found["as_of"] == day
        return (found["regulation_id"], found["regulation_version"], found["source"])

    assert await follows("hist-b1", "2010-08-31") == ("nde-2010", 1, "university")
    assert await follows("hist-b1", "2010-09-01") == ("hist-own", 1, "school")
    assert await follows("hist", "2010-09-01") == ("hist-own", 1, "own")
    assert await follows("nde-b2", "2010-06-30") == ("nde-2010", 1, "university")
    assert await follows("nde-b2", "2010-07-01") == ("b2-trial", 1, "own")
    assert await follows("nde-b1", "2010-07-01") == ("nde-2010", 1, "university")
    # before the university's regulation takes effect it is still the one followed, in no
    # version yet
    assert await follows("nde-b1", "2010-04-30") == ("nde-2010", None, "university")
    found = await c.get("/v1/units/hist-b1/regulation", as_of="2010-09-01")
    assert found["adoptions"] == [
        {"unit_id": "hist", "regulation_id": "hist-own", "from": "2010-09-01"}
    ]
    missing = await c.scoring.client.get("/v1/units/nowhere/regulation", headers=c.auditor)
    assert missing.status_code == 404


async def test_a_closed_period_stops_an_adoption_until_it_is_reopened_and_rescored(
    campus: Campus,
) -> None:
    c = campus
    # hist-b1 under the university's nde-2010 (base 60, precision 1):
    #   h1 = 60 + 2 (agreement) + 3 (mentoring) = 65.0  basic
    #   h3 = 60.0                                       basic
    #   h2 = 60 − 5 (plaque withdrawn)          = 55.0  unqualified
    assert await c.totals("hist-b1") == [
        ("h1", "65.0", 1, "basic"),
        ("h3", "60.0", 2, "basic"),
        ("h2", "55.0", 3, "unqualified"),
    ]
    await c.ok("/v1/branches/hist-b1/periods/2010/close", {"closed_on": "2010-12-31"})
    await c.ok("/v1/regulations", HIST_OWN, c.hist_office, published_on="2010-04-20")

    adopt = {
        "regulation_id": "hist-own",
        "effective_from": "2010-05-01",
        "decided_on": "2011-01-04",
    }
    problem = await c.refused(
        c.post("/v1/units/hist/regulation", adopt, c.hist_office),
        409,
        "period_closed",
        "effective_from",
    )
    assert "hist-b1" in problem["detail"]
    assert "2010" in problem["detail"]
    # the closed table is as it was
    assert (await c.table("hist-b1"))["closed"]["revision"] == 1

    await c.ok(
        "/v1/branches/hist-b1/periods/2010/reopen",
        {"reason": "学院采用新办法", "reopened_on": "2011-01-05"},
    )
    await c.ok("/v1/units/hist/regulation", adopt, c.hist_office)

    # Re-scored under hist-own (base 70, precision 0: whole points, "79" not "79.0"):
    #   h1 = 70 + 5 (agreement) + 4 (mentoring) = 79
    #   h3 = 70
    #   h2 = 70 − 3 (plaque withdrawn)          = 67     all qualified (≥ 60)
    table = await c.table("hist-b1")
    assert (table["regulation_id"], table["regulation_source"], table["closed"]) == (
        "hist-own",
        "school",
        None,
    )
    assert [(r["member_id"], r["total"], r["rank"], r["grade"]) for r in table["members"]] == [
        ("h1", "79", 1, "qualified"),
        ("h3", "70", 2, "qualified"),
        ("h2", "67", 3, "qualified"),
    ]
    h1 = await c.score("h1")
    assert (h1["regulation_id"], h1["base"], h1["total"]) == ("hist-own", "70", "79")
    assert [(e["rule_id"], e["points"], e["running_total"]) for e in h1["ledger"]] == [
        ("agreement", "5", "75"),
        ("mentor", "4", "79"),
    ]
    assert h1["by_rule"] == {
        "agreement": {"raw": "5", "counted": "5"},
        "mentor": {"raw": "4", "counted": "4"},
    }
    # the school's summary: average (79 + 70 + 67) / 3 = 216 / 3 = 72
    [summary] = await c.get("/v1/schools/hist/periods/2010")
    assert (summary["average"], summary["highest"], summary["lowest"]) == ("72", "79", "67")
    assert summary["regulation_id"] == "hist-own"

    # the second close is revision 2, with the new numbers
    await c.ok("/v1/branches/hist-b1/periods/2010/close", {"closed_on": "2011-01-06"})
    assert (await c.table("hist-b1"))["closed"]["revision"] == 2
    closes = await c.scoring.context.store.read_all(types=["assessment.closed"])
    assert [[(r["member_id"], str(r["total"])) for r in e.data["results"]] for e in closes] == [
        [("h1", "65.0"), ("h3", "60.0"), ("h2", "55.0")],
        [("h1", "79"), ("h3", "70"), ("h2", "67")],
    ]


async def test_a_branch_following_its_own_does_not_stop_its_schools_adoption(
    campus: Campus,
) -> None:
    """nde-b2 follows its own b2-trial from 1 May 2010 and has closed its 2010: a regulation
    the school nde adopts from 1 September changes nothing for nde-b2, so its close is not in
    the way; nde-b1 (open) is re-scored."""
    c = campus
    await c.ok("/v1/regulations", B2_TRIAL, c.nde_office, published_on="2010-04-20")
    await c.ok(
        "/v1/units/nde-b2/regulation",
        {"regulation_id": "b2-trial", "effective_from": "2010-05-01", "decided_on": "2010-04-28"},
        c.nde_office,
    )
    await c.ok("/v1/branches/nde-b2/periods/2010/close", {"closed_on": "2010-12-31"})
    nde_own = regulation("nde-own", base="50")
    await c.ok("/v1/regulations", nde_own, c.nde_office, published_on="2010-08-20")
    await c.ok(
        "/v1/units/nde/regulation",
        {"regulation_id": "nde-own", "effective_from": "2010-09-01", "decided_on": "2010-08-25"},
        c.nde_office,
    )
    # nde-b1 follows nde-own on the period's last day: base 50; m1's agreement of 10 May counts
    # under nde-2010 (+2), the plaque of 15 November under nde-own, which has no plaque rule.
    #   m1 = 50 + 2 = 52.0; m2 = m3 = 50.0
    assert await c.totals("nde-b1") == [
        ("m1", "52.0", 1, "unqualified"),
        ("m2", "50.0", 2, "unqualified"),
        ("m3", "50.0", 2, "unqualified"),
    ]
    b2 = await c.table("nde-b2")
    assert (b2["regulation_id"], b2["closed"]["revision"]) == ("b2-trial", 1)


# -- adjustments ----------------------------------------------------------------------------------


async def test_adjustments_are_dated_in_an_open_period_of_the_branch(campus: Campus) -> None:
    c = campus

    def ask(**fields: Any) -> dict[str, Any]:
        return {"member_id": "m3", "points": "1.5", "reason": "抗洪表彰", **fields}

    path = "/v1/branches/nde-b1/adjustments"
    # In no period of nde-2010 (it begins on 1 May 2010; 2011-h1 ends on 30 June 2011): 422.
    for day in ("2010-03-01", "2011-07-15"):
        problem = await c.refused(
            c.post(path, ask(effective_on=day), c.m1),
            422,
            "effective_on_outside_periods",
            "effective_on",
        )
        assert day in problem["errors"][0]["reason"]
    # In the future: 422.
    tomorrow = (beijing_today() + timedelta(days=1)).isoformat()
    await c.refused(
        c.post(path, ask(effective_on=tomorrow), c.m1),
        422,
        "effective_on_in_future",
        "effective_on",
    )
    # Finer than the precision (one decimal): 422.
    await c.refused(
        c.post(path, ask(points="1.25", effective_on="2010-10-15"), c.m1),
        422,
        "points_precision",
        "points",
    )
    # A period_id that is not the period of the day: 422.
    await c.refused(
        c.post(path, ask(effective_on="2010-10-15", period_id="2011-h1"), c.m1),
        422,
        "period_mismatch",
        "period_id",
    )
    # Not on the committee (m3 asks for himself? he is not on it): 409; nor a member of
    # another branch: 409.
    m3 = c.scoring.auth("committee_member", branches=["nde-b1"], member_id="m3", subject="m3")
    await c.refused(
        c.post(path, ask(effective_on="2010-10-15"), m3), 409, "not_on_committee", "requested_by"
    )
    await c.refused(
        c.post(path, ask(member_id="n1", effective_on="2010-10-15"), c.m1),
        409,
        "member_not_in_branch",
        "member_id",
    )

    # In a closed period: 422 (reopen it first or date it in an open period).
    await c.ok("/v1/branches/nde-b1/periods/2010/close", {"closed_on": "2010-12-31"})
    await c.refused(
        c.post(path, ask(effective_on="2010-10-15"), c.m1),
        422,
        "effective_on_in_closed_period",
        "effective_on",
    )

    # The default effective_on is today: with a regulation whose period spans this year,
    # adopted by nde-b1 from 1 January, it is accepted and counts once approved.
    year = beijing_today().year
    await c.ok("/v1/regulations", this_year(), published_on=f"{year}-01-01")
    await c.ok(
        "/v1/units/nde-b1/regulation",
        {"regulation_id": "this-year", "effective_from": f"{year}-01-01"},
    )
    created = await c.ok(path, {**ask(), "adjustment_id": "adj-today"}, c.m1)
    assert created["id"] == "adj-today"
    # four eyes: m1 asked, m1 may not approve; m2 does
    await c.refused(c.post(f"{path}/adj-today/approval", {}, c.m1), 409, "four_eyes", "approved_by")
    await c.ok(f"{path}/adj-today/approval", {}, c.m2)
    await c.refused(c.post(f"{path}/adj-today/approval", {}, c.m2), 409, "adjustment_approved")
    # 60 + 1.5 = 61.5; the ledger line of the adjustment dated today
    m3_now = await c.score("m3", period=f"y{year}")
    assert m3_now["total"] == "61.5"
    [line] = m3_now["ledger"]
    assert (line["kind"], line["points"], line["running_total"]) == ("adjustment", "1.5", "61.5")
    assert datetime.fromisoformat(line["cause_occurred_at"]).astimezone(BEIJING).date() == (
        beijing_today()
    )
    [adjusted] = m3_now["adjustments"]
    assert (adjusted["requested_by"], adjusted["approved_by"]) == ("m1", "m2")


# -- what-if --------------------------------------------------------------------------------------


async def test_what_if_across_branches_of_different_regulations_names_the_regulation(
    campus: Campus,
) -> None:
    c = campus
    await c.ok("/v1/regulations", B2_TRIAL, c.nde_office, published_on="2010-04-20")
    await c.ok(
        "/v1/units/nde-b2/regulation",
        {"regulation_id": "b2-trial", "effective_from": "2010-05-01"},
        c.nde_office,
    )
    body = {"period_id": "2010", "school_id": "nde", "regulation_version": 1}
    before = await c.scoring.event_count()
    response = await c.post("/v1/what-if", body)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "body.regulation_id"
    assert "b2-trial" in error["reason"]
    assert "nde-2010" in error["reason"]

    # Named, it runs; each number in the scale of its regulation. Under nde-2010 (precision 1):
    #   m1 = 60 + 2 − 5 = 57.0 (live, nde-2010); m2, m3 = 60.0
    #   n1..n3 live under b2-trial (precision 2): 75.00; under nde-2010 60.0; delta −15.0
    found = await c.ok("/v1/what-if", {**body, "regulation_id": "nde-2010"})
    assert await c.scoring.event_count() == before  # a what-if writes nothing
    rows = {m["member_id"]: (m["old_total"], m["new_total"], m["delta"]) for m in found["members"]}
    assert rows == {
        "m1": ("57.0", "57.0", "0.0"),
        "m2": ("60.0", "60.0", "0.0"),
        "m3": ("60.0", "60.0", "0.0"),
        "n1": ("75.00", "60.0", "-15.0"),
        "n2": ("75.00", "60.0", "-15.0"),
        "n3": ("75.00", "60.0", "-15.0"),
    }
    assert found["live_regulations"] == {
        "nde-b1": {"id": "nde-2010", "version": 1},
        "nde-b2": {"id": "b2-trial", "version": 1},
    }
    assert found["live_regulation_version"] == 1  # both are at version 1
    # one branch alone needs no regulation_id; a draft neither
    one = await c.ok(
        "/v1/what-if", {"period_id": "2010", "branch_id": "nde-b2", "regulation_version": 1}
    )
    assert {m["new_total"] for m in one["members"]} == {"75.00"}  # b2-trial v1 against itself
    draft = await c.ok(
        "/v1/what-if",
        {"period_id": "2010", "school_id": "nde", "draft": regulation("draft", precision=0)},
    )
    # the draft: base 60, agreement +2, precision 0: m1 = 62 (no plaque rule)
    assert {m["member_id"]: m["new_total"] for m in draft["members"]}["m1"] == "62"
    assert {m["member_id"]: m["delta"] for m in draft["members"]}["n1"] == "-15"

    # The school's summary, each branch in its regulation's scale.
    summary = {s["branch_id"]: s for s in await c.get("/v1/schools/nde/periods/2010")}
    # nde-b1: (57.0 + 60.0 + 60.0) / 3 = 59.0
    assert (summary["nde-b1"]["average"], summary["nde-b1"]["lowest"]) == ("59.0", "57.0")
    assert (summary["nde-b2"]["average"], summary["nde-b2"]["highest"]) == ("75.00", "75.00")
    university = {s["branch_id"]: s for s in await c.get("/v1/periods/2010/summary")}
    assert university["hist-b1"]["average"] == "60.0"  # (65.0 + 60.0 + 55.0) / 3
    assert await c.totals("nde-b2") == [
        ("n1", "75.00", 1, "qualified"),
        ("n2", "75.00", 1, "qualified"),
        ("n3", "75.00", 1, "qualified"),
    ]


# -- as_of and known_at ---------------------------------------------------------------------------


async def test_as_of_and_known_at_take_a_day_or_an_instant_with_its_offset(
    campus: Campus,
) -> None:
    c = campus
    # m1: 60 + 2 (agreement, 10 May) = 62.0 until 14 November; − 5 (plaque, 15 November) = 57.0
    assert (await c.score("m1", as_of="2010-11-14"))["total"] == "62.0"
    assert (await c.score("m1", as_of="2010-11-15"))["total"] == "57.0"
    # the plaque was withdrawn at the start of 15 November in Beijing, 16:00 UTC the day before
    assert (await c.score("m1", as_of="2010-11-14T15:59:59Z"))["total"] == "62.0"
    assert (await c.score("m1", as_of="2010-11-14T16:00:00Z"))["total"] == "57.0"
    assert (await c.score("m1", as_of="2010-11-15T00:00:00+08:00"))["total"] == "57.0"

    # The same moment in three forms gives the same table (httpx encodes the '+' as %2B).
    forms = ("2010-12-31", "2010-12-31T23:59:59.999999+08:00", "2010-12-31T15:59:59.999999Z")
    tables = [await c.table("nde-b1", as_of=form) for form in forms]
    assert [t["members"] for t in tables] == [tables[0]["members"]] * 3
    assert [(r["member_id"], r["total"]) for r in tables[0]["members"]] == [
        ("m2", "60.0"),
        ("m3", "60.0"),
        ("m1", "57.0"),
    ]
    # The last second of the year with its offset and in UTC: one moment, one answer.
    offset, utc = [
        await c.table("nde-b1", as_of=form)
        for form in ("2010-12-31T23:59:59+08:00", "2010-12-31T15:59:59Z")
    ]
    assert offset["members"] == utc["members"] == tables[0]["members"]
    assert datetime.fromisoformat(offset["as_of"]) == datetime.fromisoformat(utc["as_of"])
    assert (await c.score("m1", as_of="2010-12-31T23:59:59+08:00")) == (
        await c.score("m1", as_of="2010-12-31T15:59:59Z")
    )

    # known_at: an instant with its offset; Z and +08:00 of one moment agree.
    now = datetime.now(BEIJING).replace(microsecond=0)
    later = now + timedelta(hours=1)
    with_offset = await c.score("m1", known_at=later.isoformat())
    in_utc = await c.score(
        "m1", known_at=later.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")
    )
    assert with_offset == in_utc
    assert with_offset["total"] == "57.0"
    # before anything was recorded, nothing: no period for m1 yet
    assert await c.get("/v1/members/m1/score", known_at="2010-01-01T00:00:00Z") == []

    # A naive known_at: 422 naming the field and saying the offset is missing.
    naive = await c.scoring.client.get(
        "/v1/members/m1/score", params={"known_at": "2011-01-01T00:00:00"}, headers=c.auditor
    )
    assert naive.status_code == 422, naive.text
    [error] = naive.json()["errors"]
    assert error["field"] == "query.known_at"
    assert "offset" in error["reason"]

    # A '+' typed into a URL by hand means a space; the service says to write %2B. httpx
    # sends a literal '+' of a URL string as it is (only params are encoded).
    raw = "/v1/members/m1/score?known_at=2011-01-01T00:00:00+08:00"
    assert httpx.URL(raw).query == b"known_at=2011-01-01T00:00:00+08:00"
    plus = await c.scoring.client.get(raw, headers=c.auditor)
    assert plus.status_code == 422, plus.text
    [error] = plus.json()["errors"]
    assert error["field"] == "query.known_at"
    assert "%2B" in error["reason"]
    assert "2011-01-01T00:00:00%2B08:00" in error["reason"]
    # the same with %2B is accepted
    encoded = await c.scoring.client.get(
        "/v1/members/m1/score?known_at=2011-01-01T00:00:00%2B08:00", headers=c.auditor
    )
    assert encoded.status_code == 200, encoded.text
    # as_of with a '+' as a space is refused the same way
    as_of_plus = await c.scoring.client.get(
        "/v1/branches/nde-b1/periods/2010?as_of=2010-12-31T23:59:59+08:00", headers=c.auditor
    )
    assert as_of_plus.status_code == 422, as_of_plus.text
    assert as_of_plus.json()["errors"][0]["field"] == "query.as_of"
    # not a date at all
    wrong = await c.scoring.client.get(
        "/v1/branches/nde-b1/periods/2010", params={"as_of": "2010-02-30"}, headers=c.auditor
    )
    assert wrong.status_code == 422, wrong.text
