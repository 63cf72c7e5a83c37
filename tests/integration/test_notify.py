"""Notify against the real PostgreSQL and Redis, fed over the real streams by stand-in
producers, delivering to a local HTTP receiver, a local SMTP server and a Redis stream:
deadlines from events, moving and meeting them, retries, exactly-once across replicas, a replay
that sends nothing, the iCalendar feed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import icalendar
import pytest
import redis.asyncio as redis
import yaml

from contracts.events import (
    ActivityRescheduled,
    ActivityScheduled,
    AgreementSigned,
    AttendanceRecorded,
    CommitteeElected,
    MemberEnrolled,
    ReportRequired,
    ReportSubmitted,
    UnitRegistered,
)
from contracts.events.activity import Attendees
from services.notify.channels import EmailChannel, WebhookChannel, sign, verify
from services.notify.scheduler import ReminderScheduler
from services.notify.service import DEFAULT_CONFIG
from services.notify.service import DEFINITION as NOTIFY
from tests.conftest import REDIS_URL
from tests.support.apps import Api, SettableClock, running, service_settings
from tests.support.keys import keys_dir
from tests.support.producer import Producer, at, producer
from tests.support.receivers import mail_server, subject_of, webhook_receiver
from tests.support.servers import free_port
from tests.support.waiting import wait_until

SHANGHAI = ZoneInfo("Asia/Shanghai")
SECRET = "webhook-secret-for-tests"
ROOT = Path(__file__).resolve().parents[2]


def local(day: str, hh: int = 18, mm: int = 0) -> datetime:
    return datetime.fromisoformat(f"{day}T{hh:02d}:{mm:02d}:00").replace(tzinfo=SHANGHAI)


class World:
    def __init__(
        self, api: Api, roster: Producer, activities: Producer, clock: SettableClock
    ) -> None:
        self.api = api
        self.roster = roster
        self.activities = activities
        self.clock = clock
        self.admin = api.auth("university_admin", subject="org-office")
        self.expected = 0

    @property
    def scheduler(self) -> ReminderScheduler:
        scheduler: ReminderScheduler = self.api.context.extras["notify_scheduler"]
        return scheduler

    async def emit(
        self, source: Producer, payload: Any, occurred: datetime, branch: str | None = "nde-b1"
    ) -> Any:
        self.expected += 1
        return await source.emit(payload, occurred, branch)

    async def settle(self) -> None:
        await self.roster.publish()
        await self.activities.publish()
        context = self.api.context

        async def applied() -> bool:
            count = await context.pool.fetchval(f'SELECT count(*) FROM "{context.schema}".inbox')
            return bool(count >= self.expected)

        await wait_until(applied, within=30, what="notify to apply every event")
        head, _ = await context.store.head()
        assert context.local_projector is not None
        await context.local_projector.wait_for(head)

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.api.client.get(path, params=params, headers=self.admin)
        assert response.status_code == 200, response.text
        return response.json()

    async def deadlines(self, status: str = "all") -> dict[str, dict[str, Any]]:
        rows = await self.get("/v1/branches/nde-b1/deadlines", status=status)
        return {r["deadline_id"]: r for r in rows}

    async def deliveries(self, deadline_id: str) -> list[dict[str, Any]]:
        return (await self.get(f"/v1/deadlines/{deadline_id}"))["deliveries"]  # type: ignore[no-any-return]


def notify_config(tmp_path: Path, **changes: Any) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw.update(changes)
    path = tmp_path / f"notify-{uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


@pytest.fixture
async def world(
    database_url: str,
    stream_prefix: str,
    redis_client: redis.Redis,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[World]:
    changes = getattr(request, "param", {})
    monkeypatch.setenv("PARTY_NOTIFY_CONFIG", str(notify_config(tmp_path, **changes)))
    monkeypatch.setenv("PARTY_NOTIFY_SCHEDULER", "false")
    clock = SettableClock()
    clock.now = local("2010-05-01", 8)
    settings = service_settings(
        database_url, f"t_notify_{uuid4().hex[:8]}", stream_prefix, REDIS_URL
    )
    async with (
        running(NOTIFY, settings, clock) as api,
        producer(pool, redis_client, stream_prefix, "roster") as roster,
        producer(pool, redis_client, stream_prefix, "activities") as activities,
    ):
        yield World(api, roster, activities, clock)


def enrolment(member_id: str, n: int, standing: str = "full") -> MemberEnrolled:
    probationary = standing == "probationary"
    return MemberEnrolled(
        member_id=member_id,
        student_number=f"2009{n:04d}",
        name=f"党员{n}",
        branch_id="nde-b1",
        group_id="nde-b1-g1" if n % 2 else "nde-b1-g2",
        class_name=None,
        company=None,
        dormitory=None,
        bed=None,
        standing=standing,
        joined_on=None if probationary else date(2009, 6, 1),
        probation_started_on=date(2010, 4, 20) if probationary else None,
        probation_ends_on=date(2011, 4, 20) if probationary else None,
        cadre_post=None,
        expected_graduation=date(2012, 7, 1),
        enrolled_on=date(2010, 5, 4),
    )


async def organise(world: World, members: int = 10) -> list[str]:
    r = world.roster
    await world.emit(
        r,
        UnitRegistered(unit_id="nde", kind="school", name="国防教育学院", parent_id=None),
        at("2010-05-01", 8),
        None,
    )
    await world.emit(
        r,
        UnitRegistered(
            unit_id="nde-b1",
            kind="branch",
            name="学生第一党支部",
            parent_id="nde",
            branch_kind="student",
        ),
        at("2010-05-01", 9),
    )
    ids = [f"m{n:02d}" for n in range(1, members + 1)]
    for n, member_id in enumerate(ids, start=1):
        standing = "probationary" if n > members - 2 else "full"
        await world.emit(r, enrolment(member_id, n, standing), at("2010-05-04", 9))
    await world.emit(
        r,
        CommitteeElected(
            branch_id="nde-b1",
            secretary_id="m01",
            member_ids=["m01", "m02", "m03"],
            term_starts_on=date(2010, 5, 5),
            term_ends_on=date(2013, 5, 4),
            elected_on=date(2010, 5, 5),
        ),
        at("2010-05-05", 9),
    )
    return ids


def meeting(activity_id: str, starts: datetime, group: str | None = None) -> ActivityScheduled:
    return ActivityScheduled(
        activity_id=activity_id,
        kind="group_meeting" if group else "all_member_meeting",
        title="党小组会" if group else "全体党员大会",
        branch_id="nde-b1",
        group_id=group,
        starts_at=starts,
        ends_at=starts + timedelta(hours=1),
        place="学院301",
        attendees=Attendees(scope="group", group_id=group) if group else Attendees(scope="branch"),
    )


async def test_a_semesters_deadlines_for_a_branch_of_ten(world: World) -> None:
    await organise(world)
    await world.emit(
        world.roster,
        AgreementSigned(
            agreement_id="agr-m01",
            member_id="m01",
            academic_year="2009-2010",
            signed_on=date(2010, 5, 15),
            expires_on=date(2011, 5, 15),
        ),
        at("2010-05-15", 10),
    )
    await world.emit(world.activities, meeting("a1", local("2010-05-12", 19)), at("2010-05-06", 10))
    await world.emit(
        world.activities,
        ReportRequired(
            obligation_id="thought-m10-2010-Q2",
            member_id="m10",
            kind="thought",
            branch_id="nde-b1",
            due_on=date(2010, 6, 30),
            period_label="2010-Q2",
        ),
        at("2010-05-06", 10),
    )
    await world.settle()
    deadlines = await world.deadlines()

    def due(deadline_id: str) -> str:
        return str(deadlines[deadline_id]["due_at"])

    def expect(day: str, hh: int = 18) -> str:
        return local(day, hh).astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")

    assert due("probation-m10") == expect("2011-04-20")
    assert due("conversion-application-m10") == expect("2011-03-21")
    assert "probation-m01" not in deadlines  # a full member has no probation
    assert due("agreement-m02-2009") == expect("2010-06-03")  # joined after 31 March: 30 days
    assert deadlines["agreement-m01-2009"]["status"] == "met"
    assert due("agreement-m01-2010") == expect("2011-03-31")  # renewal each academic year
    assert due("graduation-m01") == expect("2012-07-01")
    assert due("lapsed-m01") == expect("2010-08-04")  # three months without organisational life
    assert due("midterm_review-nde-b1-2010") == expect("2010-10-31")
    assert due("year_end_assessment-nde-b1-2010") == expect("2010-12-31")
    assert due("democratic_appraisal-nde-b1-2010") == expect("2010-12-20")
    assert due("regulation_revision-nde-b1-2011") == expect("2011-04-30")
    assert "regulation_revision-nde-b1-2010" not in deadlines  # before the branch existed
    assert due("meeting-a1") == expect("2010-05-12", 19)
    assert due("report-thought-m10-2010-Q2") == expect("2010-06-30")
    # Reminders: the thought report to its member 7 and 1 days before; a meeting of the branch
    # to all ten members a day and an hour before.
    report = await world.deliveries("report-thought-m10-2010-Q2")
    assert {(d["recipient_id"], d["lead_seconds"], d["send_at"]) for d in report} >= {
        ("m10", 7 * 86400, expect("2010-06-23")),
        ("m10", 86400, expect("2010-06-29")),
    }
    assert {d["recipient_id"] for d in report if d["lead_seconds"] < 0} == {"m01", "office-nde"}
    meeting_reminders = await world.deliveries("meeting-a1")
    assert len({d["recipient_id"] for d in meeting_reminders}) == 10
    assert {d["lead_seconds"] for d in meeting_reminders} == {86400, 3600}
    probation = await world.deliveries("probation-m10")
    assert {d["recipient_id"] for d in probation} >= {"m01"}  # the secretary


async def test_moving_a_meeting_moves_its_reminders_and_a_report_meets_its_deadline(
    world: World,
) -> None:
    await organise(world, 4)
    await world.emit(
        world.activities, meeting("a1", local("2010-05-12", 19), "nde-b1-g1"), at("2010-05-06", 10)
    )
    await world.emit(
        world.activities,
        ReportRequired(
            obligation_id="sit-m01",
            member_id="m01",
            kind="situation",
            branch_id="nde-b1",
            due_on=date(2010, 5, 31),
            period_label="2010-W22",
        ),
        at("2010-05-06", 10),
    )
    await world.settle()
    before = await world.deliveries("meeting-a1")
    assert {d["recipient_id"] for d in before} == {"m01", "m03"}  # group g1 only
    await world.emit(
        world.activities,
        ActivityRescheduled(
            activity_id="a1",
            kind="group_meeting",
            branch_id="nde-b1",
            group_id="nde-b1-g1",
            previous_starts_at=local("2010-05-12", 19),
            starts_at=local("2010-05-14", 19),
            ends_at=local("2010-05-14", 20),
            place="学院302",
            reason="考试周",
        ),
        at("2010-05-08", 9),
    )
    await world.settle()
    after = await world.deliveries("meeting-a1")
    assert sorted(d["send_at"] for d in after) == sorted(
        (datetime.fromisoformat(d["send_at"]) + timedelta(days=2))
        .isoformat()
        .replace("+00:00", "Z")
        for d in before
    )
    assert (await world.deadlines())["meeting-a1"]["revision"] == 2

    await world.emit(
        world.activities,
        ReportSubmitted(
            obligation_id="sit-m01",
            member_id="m01",
            kind="situation",
            branch_id="nde-b1",
            due_on=date(2010, 5, 31),
            submitted_at=local("2010-05-20", 10),
            on_time=True,
            days_late=0,
        ),
        at("2010-05-20", 10),
    )
    await world.settle()
    deadline = await world.get("/v1/deadlines/report-sit-m01")
    assert deadline["status"] == "met"
    assert deadline["deliveries"] == []  # nothing left to remind of
    # Time passes: the report's reminders are not sent, the moved ones go on the new days.
    world.clock.now = local("2010-05-13", 19, 5)
    sent = await world.scheduler.run_due()
    assert sent == 2  # one day before the moved meeting, to both members of the group
    assert (await world.get("/v1/members/m01/deadlines", status="overdue")) == []

    # Attendance is taken: the meeting was held, its last reminders are not sent.
    await world.emit(world.activities, attended("a1", "m01", "2010-05-14"), at("2010-05-14", 18))
    await world.settle()
    held = await world.get("/v1/deadlines/meeting-a1")
    assert held["status"] == "met"
    assert {(d["lead_seconds"], d["status"]) for d in held["deliveries"]} == {(86400, "sent")}

    # A meeting entered once it had begun: "in 1 h" would mislead, nothing is sent.
    world.clock.now = local("2010-05-15", 20)
    await world.emit(world.activities, meeting("a2", local("2010-05-15", 19)), at("2010-05-15", 20))
    await world.settle()
    assert await world.scheduler.run_due() == 0
    late = await world.get("/v1/deadlines/meeting-a2")
    assert {d["status"] for d in late["deliveries"]} == {"skipped"}
    assert {d["lead_seconds"]: d["last_error"] for d in late["deliveries"]} == {
        86400: "too late to be useful",
        3600: "the due time has passed",
    }


async def test_a_meeting_moved_only_to_another_room_keeps_its_reminders_once(
    world: World,
) -> None:
    await organise(world, 4)
    await world.emit(
        world.activities, meeting("a1", local("2010-05-12", 19), "nde-b1-g1"), at("2010-05-06", 10)
    )
    await world.settle()
    before = await world.deliveries("meeting-a1")
    # The same start, another room: a later cause naming the same due time is recorded (its
    # order kept) as revision 2 with the same due time and the title the reschedule names.
    await world.emit(
        world.activities,
        ActivityRescheduled(
            activity_id="a1",
            kind="group_meeting",
            branch_id="nde-b1",
            group_id="nde-b1-g1",
            previous_starts_at=local("2010-05-12", 19),
            starts_at=local("2010-05-12", 19),
            ends_at=local("2010-05-12", 20),
            place="学院302",
            title="党小组会（改在302）",
        ),
        at("2010-05-08", 9),
    )
    await world.settle()
    deadline = await world.get("/v1/deadlines/meeting-a1")
    assert (deadline["revision"], deadline["title"]) == (2, "党小组会（改在302）")
    assert deadline["due_at"] == "2010-05-12T11:00:00Z"  # 19:00 in Beijing, unchanged
    after = deadline["deliveries"]
    key = ("delivery_id", "recipient_id", "lead_seconds", "send_at", "status")
    assert [tuple(d[k] for k in key) for d in after] == [tuple(d[k] for k in key) for d in before]
    # a day before, each member of the group is reminded once
    world.clock.now = local("2010-05-11", 19, 5)
    assert await world.scheduler.run_due() == 2
    assert await world.scheduler.run_due() == 0


def attended(activity_id: str, member_id: str, day: str) -> AttendanceRecorded:
    return AttendanceRecorded(
        activity_id=activity_id,
        member_id=member_id,
        status="present",
        activity_kind="group_meeting",
        branch_id="nde-b1",
        group_id="nde-b1-g1",
        activity_date=date.fromisoformat(day),
    )


@pytest.mark.parametrize(
    "world",
    [{"retry": {"attempts": 6, "backoff_seconds": 1, "max_backoff_seconds": 10}}],
    indirect=True,
)
async def test_a_webhook_that_fails_twice_gets_exactly_one_accepted_delivery(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with webhook_receiver(SECRET, fail_first=2) as receiver:
        scheduler = world.scheduler
        scheduler.channels["webhook"] = WebhookChannel(
            world.api.context.extras["notify_config"].model_copy(
                update={
                    "webhook": world.api.context.extras["notify_config"].webhook.model_copy(
                        update={"url": receiver.url, "secret": SECRET}
                    )
                }
            )
        )
        await organise(world, 2)
        response = await world.api.client.put(
            "/v1/recipients/m01", headers=world.admin, json={"channels": ["webhook"]}
        )
        assert response.status_code == 200
        await world.emit(
            world.activities,
            ReportRequired(
                obligation_id="r1",
                member_id="m01",
                kind="situation",
                branch_id="nde-b1",
                due_on=date(2010, 5, 31),
                period_label="2010-W22",
            ),
            at("2010-05-06", 10),
        )
        await world.settle()
        world.clock.now = local("2010-05-24", 18, 1)  # the 7-day reminder is due
        for _ in range(4):
            await scheduler.run_due()
            world.clock.now += timedelta(seconds=5)
        assert receiver.requests == 3
        assert receiver.accepted == {next(iter(receiver.accepted)): 1}
        [sent] = [d for d in await world.deliveries("report-r1") if d["status"] == "sent"]
        assert (sent["channel"], sent["attempts"], sent["lead_seconds"]) == (
            "webhook",
            3,
            7 * 86400,
        )
        payload = receiver.payloads[0]
        assert payload["deadline_id"] == "report-r1"
        assert "信息汇报" in payload["subject"]
    # A receiver tells a forged or replayed request from a real one.
    body = b'{"delivery_id": "x"}'
    stamp = str(int(datetime.now().timestamp()))
    assert verify(SECRET, stamp, body, sign(SECRET, stamp, body))
    assert not verify(SECRET, stamp, body, sign("another-secret", stamp, body))
    assert not verify(SECRET, stamp, body + b" ", sign(SECRET, stamp, body))
    assert not verify(
        SECRET, str(int(stamp) - 3600), body, sign(SECRET, str(int(stamp) - 3600), body)
    )


async def test_email_in_chinese_and_english(world: World) -> None:
    with mail_server() as mail:
        config = world.api.context.extras["notify_config"]
        world.scheduler.channels["email"] = EmailChannel(
            config.model_copy(
                update={
                    "email": config.email.model_copy(
                        update={"host": "127.0.0.1", "port": mail.port}
                    )
                }
            )
        )
        await organise(world, 2)
        await world.api.client.put(
            "/v1/recipients/m02",
            headers=world.admin,
            json={"channels": ["email"], "email": "m02@example.edu"},
        )
        await world.emit(
            world.activities,
            ReportRequired(
                obligation_id="r2",
                member_id="m02",
                kind="thought",
                branch_id="nde-b1",
                due_on=date(2010, 6, 30),
                period_label="2010-Q2",
            ),
            at("2010-05-06", 10),
        )
        await world.settle()
        world.clock.now = local("2010-06-29", 18, 5)  # the 1-day reminder
        await world.scheduler.run_due()
        [message] = mail.messages
        assert message["To"] == "m02@example.edu"
        subject = subject_of(message)
        assert "思想汇报" in subject
        assert "due in 1 day" in subject
        body = message.get_payload(decode=True).decode()
        assert "截止时间：2010-06-30 18:00" in body
        assert "Due: 2010-06-30 18:00 (Asia/Shanghai)" in body


async def test_a_full_replay_of_the_projections_sends_nothing(
    world: World, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await organise(world, 3)
    await world.emit(world.activities, meeting("a1", local("2010-05-12", 19)), at("2010-05-06", 10))
    await world.settle()
    world.clock.now = local("2010-05-12", 18, 1)  # both reminders of the meeting are due
    sent = await world.scheduler.run_due()
    assert sent == 6  # three members, a day and an hour before
    stream = f"{stream_prefix}:notifications"
    assert await redis_client.xlen(stream) == 6
    context = world.api.context
    events_before = await world.api.event_count()
    assert context.local_projector is not None
    await context.local_projector.rebuild()
    assert await world.scheduler.run_due() == 0
    world.clock.now += timedelta(hours=2)
    assert await world.scheduler.run_due() == 0
    assert await redis_client.xlen(stream) == 6
    assert await world.api.event_count() == events_before
    statuses = {d["status"] for d in await world.deliveries("meeting-a1")}
    assert statuses == {"sent"}


async def test_the_calendar_parses_with_an_icalendar_parser(world: World) -> None:
    await organise(world, 2)
    await world.emit(world.activities, meeting("a1", local("2010-05-12", 19)), at("2010-05-06", 10))
    await world.settle()
    response = await world.api.client.get("/v1/branches/nde-b1/calendar.ics", headers=world.admin)
    assert response.headers["content-type"].startswith("text/calendar")
    parsed = icalendar.Calendar.from_ical(response.content)
    events = {str(e["UID"]): e for e in parsed.walk("VEVENT")}
    meeting_event = events["meeting-a1@nde-b1.party-members"]
    assert meeting_event.decoded("DTSTART") == local("2010-05-12", 19)
    assert str(meeting_event["SUMMARY"]) == "全体党员大会"
    assert "year_end_assessment-nde-b1-2010@nde-b1.party-members" in events
    assert str(parsed["X-WR-CALNAME"]) == "学生第一党支部"


async def test_two_replicas_deliver_each_reminder_once_even_when_one_is_killed(
    database_url: str,
    stream_prefix: str,
    redis_client: redis.Redis,
    pool: asyncpg.Pool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real time here: meetings begin a little over an hour from now, so their one-hour
    reminders fall due within seconds, and two replicas race for them."""
    config = notify_config(
        tmp_path,
        leads={"meeting": ["1h"]},
        lease_seconds=3,
        stale_after="1d",
        retry={"attempts": 10, "backoff_seconds": 0.5, "max_backoff_seconds": 2},
    )
    schema = f"t_notify_{uuid4().hex[:8]}"
    monkeypatch.setenv("PARTY_NOTIFY_CONFIG", str(config))
    async with webhook_receiver(SECRET, delay=0.15) as receiver:
        monkeypatch.setenv("PARTY_NOTIFY_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("PARTY_NOTIFY_WEBHOOK_SECRET", SECRET)
        settings = service_settings(database_url, schema, stream_prefix, REDIS_URL)
        async with (
            running(NOTIFY, settings) as api,
            producer(pool, redis_client, stream_prefix, "roster") as roster,
            producer(pool, redis_client, stream_prefix, "activities") as activities,
        ):
            world = World(api, roster, activities, SettableClock())
            await organise(world, 10)
            await world.settle()
            for member in [f"m{n:02d}" for n in range(1, 11)]:
                await api.client.put(
                    f"/v1/recipients/{member}",
                    headers=world.admin,
                    json={"channels": ["stream", "webhook"]},
                )
            other_port = free_port()
            other = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.cli",
                "serve",
                "notify",
                cwd=ROOT,
                env={
                    **os.environ,
                    "PARTY_DATABASE_URL": database_url,
                    "PARTY_DB_SCHEMA": schema,
                    "PARTY_REDIS_URL": REDIS_URL,
                    "PARTY_STREAM_PREFIX": stream_prefix,
                    "PARTY_HTTP_PORT": str(other_port),
                    "PARTY_AUTH_SECRET": settings.auth_secret.get_secret_value(),
                    "PARTY_LOG_LEVEL": "WARNING",
                    "PARTY_RELAY_POLL_SECONDS": "0.2",
                    "PARTY_KEYS_DIR": str(keys_dir()),  # the same service: the same key
                    "PARTY_CREATE_MISSING_KEY": "false",
                },
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                await wait_until(
                    lambda: _answers(other_port), within=30, what="the other replica to start"
                )
                start = datetime.now(SHANGHAI) + timedelta(hours=1, seconds=4)
                for n in range(3):
                    await world.emit(activities, meeting(f"live-{n}", start), at("2010-05-06"))
                await world.settle()
                expected = 3 * 10 * 2  # meetings × members × channels
                # Let the other replica start delivering, then kill it mid-delivery.
                ours = api.context.extras["notify_scheduler"].replica
                await wait_until(
                    lambda: _theirs_in_flight(pool, schema, ours),
                    within=30,
                    interval=0.02,
                    what="the other replica to be delivering",
                )
                other.send_signal(signal.SIGKILL)
                await other.wait()
                scheduler: ReminderScheduler = api.context.extras["notify_scheduler"]

                async def all_sent() -> bool:
                    await scheduler.run_due()
                    return await _count(pool, schema, "sent") == expected

                try:
                    await wait_until(all_sent, within=60, interval=0.5, what="every reminder")
                except AssertionError as error:
                    statuses = await pool.fetch(
                        f'SELECT status, count(*) AS n FROM "{schema}".deliveries GROUP BY status'
                    )
                    raise AssertionError(
                        f"{error}: deliveries {dict(tuple(r) for r in statuses)}"
                    ) from None
            finally:
                if other.returncode is None:
                    other.kill()
                    await other.wait()
            sent_events = await pool.fetch(
                f"SELECT data->>'recipient_id' AS r, data->>'channel' AS c, "
                f"data->>'deadline_id' AS d FROM \"{schema}\".events WHERE type = 'reminder.sent'"
            )
            assert len(sent_events) == expected
            assert len({tuple(e) for e in sent_events}) == expected  # each recorded once
            entries = await redis_client.xrange(f"{stream_prefix}:notifications")
            ids = [fields[b"delivery_id"] for _, fields in entries]
            assert len(ids) == len(set(ids)) == expected // 2  # none lost, none twice
            assert len(receiver.accepted) == expected // 2  # every webhook reached the receiver
            assert receiver.bad_signatures == 0


async def _answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def _count(pool: asyncpg.Pool, schema: str, status: str) -> int:
    return int(
        await pool.fetchval(f'SELECT count(*) FROM "{schema}".deliveries WHERE status = $1', status)
    )


async def _theirs_in_flight(pool: asyncpg.Pool, schema: str, ours: str) -> bool:
    """The other replica holds deliveries it has claimed and not finished."""
    return bool(
        await pool.fetchval(
            f"SELECT count(*) FROM \"{schema}\".deliveries WHERE status = 'delivering' "
            "AND claimed_by <> $1",
            ours,
        )
    )
