"""Building a roster through its HTTP API, as a Party office would."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.support.apps import Api


class RosterClient:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.admin = api.auth("university_admin", subject="org-office")

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        expect: int | None = None,
    ) -> dict[str, Any]:
        response = await self.api.client.post(path, json=body, headers=headers or self.admin)
        if expect is not None:
            assert response.status_code == expect, response.text
        elif response.status_code >= 400:
            raise AssertionError(f"{path}: {response.status_code} {response.text}")
        return response.json()  # type: ignore[no-any-return]

    async def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        response = await self.api.client.get(path, params=params, headers=headers or self.admin)
        assert response.status_code == 200, response.text
        return response.json()

    async def unit(
        self,
        unit_id: str,
        kind: str,
        name: str,
        parent_id: str | None = None,
        branch_kind: str | None = None,
    ) -> None:
        await self.post(
            "/v1/units",
            {
                "unit_id": unit_id,
                "kind": kind,
                "name": name,
                "parent_id": parent_id,
                "branch_kind": branch_kind,
            },
        )

    async def organisation(self) -> None:
        """The School of National Defence Education with two student branches."""
        await self.unit("nde", "school", "国防教育学院")
        await self.unit("nde-b1", "branch", "学生第一党支部", "nde", "student")
        await self.unit("nde-b2", "branch", "学生第二党支部", "nde", "student")
        for group, branch in (
            ("nde-b1-g1", "nde-b1"),
            ("nde-b1-g2", "nde-b1"),
            ("nde-b2-g1", "nde-b2"),
        ):
            await self.unit(group, "group", f"{group} 党小组", branch)

    async def enrol(
        self,
        member_id: str,
        branch_id: str = "nde-b1",
        *,
        standing: str = "full",
        number: str | None = None,
        **fields: Any,
    ) -> str:
        body: dict[str, Any] = {
            "member_id": member_id,
            "branch_id": branch_id,
            # A number of its own for each member, and never a part of its id (the roster
            # refuses an id that holds the student number).
            "student_number": number
            or str(int(hashlib.sha256(member_id.encode()).hexdigest()[:12], 16))[-10:],
            "name": fields.pop("name", f"党员{member_id}"),
            "group_id": fields.pop("group_id", f"{branch_id}-g1"),
            "class_name": fields.pop("class_name", "国防0801"),
            "company": fields.pop("company", "一连"),
            "dormitory": fields.pop("dormitory", "8-312"),
            "bed": fields.pop("bed", "1"),
            "standing": standing,
            "expected_graduation": fields.pop("expected_graduation", "2012-07-01"),
            "enrolled_on": fields.pop("enrolled_on", "2010-05-04"),
        }
        if standing == "full":
            body["joined_on"] = fields.pop("joined_on", "2009-06-01")
        else:
            body["probation_started_on"] = fields.pop("probation_started_on", "2010-04-20")
        body.update(fields)
        result = await self.post("/v1/members", body)
        return str(result["id"])
