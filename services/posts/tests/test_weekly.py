"""The weekly minimum of seed rule 5 against the real servers: the weekly check reminds a quiet group's
teachers once per group and week (from Friday 12:00 school-local, across daylight-saving weeks, however
often it runs), a week with a post (also a send-later one) reminds nobody; and the admin's posting
report matches the checked-in fixtures, as JSON and as CSV, for admins only."""

import asyncio
import json
import os
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from posts.weekly.domain import check_offset, iso_week, quiet_event_id, week_start
from posts.weekly.jobs import remind_quiet_groups
from shared.app import POOL
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    add_school_year,
    mail_text,
    make_class,
    make_school,
    teach,
    wait_until_linked,
)
from tests.harness.system import System, eventually

AMS = ZoneInfo("Europe/Amsterdam")
FRIDAY_NOON = check_offset(5, time(12, 0))
FIXTURES = Path(__file__).parent / "fixtures"


def pool(system: System) -> asyncpg.Pool:
    return system.services["posts"].app[POOL]


def local(text: str) -> datetime:
    """A wall-clock time in Amsterdam, as an aware instant."""
    return datetime.fromisoformat(text).replace(tzinfo=AMS)


async def check(system: System, school: School, at: datetime) -> int:
    async with pool(system).acquire() as conn, conn.transaction():
        return await remind_quiet_groups(conn, FRIDAY_NOON, at, school.school_id)


async def quiet_events(system: System, group_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool(system).fetch(
        """SELECT event_id, envelope FROM outbox
           WHERE routing_key = 'posts.group_quiet' AND envelope -> 'payload' ->> 'group_id' = $1
           ORDER BY id""",
        str(group_id),
    )
    return [{"event_id": r["event_id"], **r["envelope"]["payload"]} for r in rows]


async def test_a_quiet_week_reminds_each_teacher_once_from_friday_noon_across_daylight_saving(
    system: System,
) -> None:
    school, group, juf, _parent = await make_class(system, "Groep 4")
    meester = await add_person(system, school, "meester", "teacher", "Groep 4")
    await wait_until_linked(system, meester, group)
    teachers = sorted(str(t.person_id) for t in (juf, meester))
    mails_before = len(system.smtp.messages)

    # Week 2026-W48, winter time (UTC+1): nothing before Friday 12:00, one reminder from then on,
    # however often the check runs (twice at the same moment, again on Sunday night).
    assert await check(system, school, local("2026-11-27T11:59:59")) == 0
    assert await check(system, school, local("2026-11-27T12:00:00")) == 1
    assert await check(system, school, local("2026-11-27T12:00:00")) == 0
    assert await check(system, school, local("2026-11-29T23:59:00")) == 0
    # Week 2026-W43 ends with the autumn change (Sunday 25 October, 03:00 -> 02:00): 12:00 is 10:00 UTC.
    assert await check(system, school, datetime(2026, 10, 23, 9, 59, 59, tzinfo=UTC)) == 0
    assert await check(system, school, datetime(2026, 10, 23, 10, 0, tzinfo=UTC)) == 1
    assert await check(system, school, local("2026-10-25T02:30:00")) == 0
    # Monday after the change is a new week, but not yet Friday.
    assert await check(system, school, local("2026-10-26T00:30:00")) == 0
    # Week 2027-W12 ends with the spring change (Sunday 28 March, 02:00 -> 03:00): 12:00 is 11:00 UTC.
    assert await check(system, school, datetime(2027, 3, 26, 10, 59, 59, tzinfo=UTC)) == 0
    assert await check(system, school, datetime(2027, 3, 26, 11, 0, tzinfo=UTC)) == 1
    assert await check(system, school, local("2027-03-28T23:30:00")) == 0

    events = await quiet_events(system, group)
    assert [e["week"] for e in events] == ["2026-W48", "2026-W43", "2027-W12"]
    for event in events:
        assert sorted(event["teacher_ids"]) == teachers  # one reminder per teacher, each named once
        assert event["group_name"] == "Groep 4"
        assert event["school_id"] == str(school.school_id)
        assert (event["posts_this_week"], event["min_posts_per_week"]) == (0, 1)
    assert events[0]["event_id"] == quiet_event_id(group, date(2026, 11, 23))
    assert events[1]["event_id"] == quiet_event_id(group, date(2026, 10, 19))
    assert events[2]["event_id"] == quiet_event_id(group, date(2027, 3, 22))

    # The notifier mails each teacher one reminder per quiet week, and no more.
    def reminders(teacher: Person) -> list[str]:
        texts = [mail_text(m) for m in system.smtp.messages[mails_before:] if teacher.email in m.rcpt_tos]
        return sorted(week for week in ("2026-W48", "2026-W43", "2027-W12") for text in texts if week in text)

    async def mailed() -> bool:
        return all(len(reminders(t)) >= 3 for t in (juf, meester))

    await eventually(mailed, what="a reminder per quiet week to each teacher")
    await asyncio.sleep(1)
    for teacher in (juf, meester):
        assert reminders(teacher) == ["2026-W43", "2026-W48", "2027-W12"]


async def test_a_week_with_a_post_reminds_nobody_and_a_send_later_post_counts_for_its_week(
    system: System,
) -> None:
    school = await make_school(system)
    posted, scheduled = await add_group(system, school, "Groep 5"), await add_group(system, school, "Groep 6")
    teacher = await add_person(system, school, "juf", "teacher", "Groep 5")
    await teach(system, school, teacher, "Groep 6")
    await wait_until_linked(system, teacher, posted)
    await wait_until_linked(system, teacher, scheduled)

    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{posted}/posts",
        teacher.token,
        json={"title": "Gym", "body": "Morgen gym."},
    )
    assert status == 201, body
    later = datetime.now(UTC) + timedelta(hours=19)
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{scheduled}/posts",
        teacher.token,
        json={"title": "Uitje", "body": "Vrijdag naar het bos.", "publish_at": later.isoformat()},
    )
    assert status == 201, body
    assert body["status"] == "scheduled"

    weeks = set()
    for group_id in (posted, scheduled):
        day = await pool(system).fetchval("SELECT local_day FROM posts WHERE group_id = $1", group_id)
        friday = datetime.combine(week_start(day) + timedelta(days=4), time(12), tzinfo=AMS)
        assert await check(system, school, friday) == 0, iso_week(day)
        assert await check(system, school, friday + timedelta(days=2, hours=11)) == 0, iso_week(day)
        assert await quiet_events(system, group_id) == []
        weeks.add(week_start(day))
    # The week after the last post, without a post, is quiet for both.
    monday = max(weeks) + timedelta(days=7)
    friday = datetime.combine(monday + timedelta(days=4), time(12), tzinfo=AMS)
    assert await check(system, school, friday) == 2
    for group_id in (posted, scheduled):
        [event] = await quiet_events(system, group_id)
        assert event["week"] == iso_week(monday)
        assert event["teacher_ids"] == [str(teacher.person_id)]


# --- The admin's report ---------------------------------------------------------------------------

REPORT_YEAR = "2025-2026"


async def insert_post(
    system: System,
    school: School,
    group_id: uuid.UUID,
    day: str,
    *,
    announcement: bool = False,
    deleted: bool = False,
) -> None:
    """A post as the publishing code leaves it, on a chosen local day of the past year (the report
    reads posts, however they were made)."""
    appeared = datetime.combine(date.fromisoformat(day), time(9), tzinfo=AMS)
    await pool(system).execute(
        """INSERT INTO posts (post_id, group_id, school_id, author_id, body, created_at, published_at, local_day,
                              announcement_id, deleted_at)
           VALUES ($1, $2, $3, $4, 'Nieuws', $5, $5, $6, $7, CASE WHEN $8 THEN $5::timestamptz END)""",
        uuid.uuid4(),
        group_id,
        school.school_id,
        school.admin.person_id,
        appeared,
        appeared.date(),
        uuid.uuid4() if announcement else None,
        deleted,
    )


async def report_school(system: System) -> tuple[School, dict[str, uuid.UUID]]:
    """A school whose 2025-2026 year ran six weeks (Monday 29 September to Sunday 9 November 2025,
    the autumn clock change on 26 October in week 43), with three groups and their posts."""
    school = await make_school(system)
    await add_school_year(system, school, REPORT_YEAR, starts_on="2025-09-29", ends_on="2025-11-09")
    names = ["Groep 3", '=HYPERLINK("http://x.example","klik")', "Groep 8, de Uilen"]
    groups = {name: await add_group(system, school, name, REPORT_YEAR) for name in names}

    async def copied() -> bool:
        found = await pool(system).fetchval(
            "SELECT count(*) FROM groups WHERE school_id = $1 AND school_year = $2 AND year_ends_on = '2025-11-09'",
            school.school_id,
            REPORT_YEAR,
        )
        return bool(found == 3)

    await eventually(copied, what="the year's groups with their dates copied to posts")
    g3, formula, uilen = groups.values()
    for day in ("2025-09-29", "2025-10-07", "2025-10-26", "2025-11-03", "2025-11-04", "2025-11-04"):
        await insert_post(system, school, g3, day)
    await insert_post(system, school, g3, "2025-10-14", announcement=True)  # the school's, not counted
    await insert_post(system, school, g3, "2025-10-15", deleted=True)  # gone, not counted
    await insert_post(system, school, formula, "2025-10-01")
    await insert_post(system, school, uilen, "2025-10-30")
    # The copy as it was that year: Groep 3 and the formula group had a teacher, the Uilen none.
    teacher = uuid.UUID("00000000-0000-4000-8000-00000000000a")
    for group_id in (g3, formula):
        await pool(system).execute(
            "INSERT INTO memberships (group_id, person_id, role, active, revision) VALUES ($1, $2, 'teacher', true, 1)",
            group_id,
            teacher,
        )
    for friday in ("2025-10-03", "2025-10-10", "2025-10-17", "2025-10-24", "2025-10-31", "2025-11-07"):
        await check(system, school, local(f"{friday}T15:00:00"))
    await pool(system).execute("DELETE FROM memberships WHERE person_id = $1", teacher)
    return school, groups


def normalised(report: dict[str, Any], groups: dict[str, uuid.UUID]) -> dict[str, Any]:
    names = {str(v): k for k, v in groups.items()}
    report = dict(report, school_id="SCHOOL")
    report["weeks"] = [dict(w, group_id=f"GROUP {names[w['group_id']]}") for w in report["weeks"]]
    return report


async def test_the_admins_report_matches_the_fixtures_as_json_and_csv(system: System) -> None:
    school, groups = await report_school(system)
    path = f"/schools/{school.school_id}/posting-report"

    status, body = await system.call("GET", "posts", f"{path}?school_year={REPORT_YEAR}", school.admin.token)
    assert status == 200, body
    if os.environ.get("KLASPOST_WRITE_FIXTURES"):  # after a deliberate change: write, then review the diff
        FIXTURES.mkdir(exist_ok=True)
        (FIXTURES / "posting_report.json").write_text(json.dumps(normalised(body, groups), indent=2) + "\n")
        status, text = await system.call(
            "GET", "posts", f"{path}?school_year={REPORT_YEAR}&format=csv", school.admin.token
        )
        (FIXTURES / "posting_report.csv").write_bytes(text)
    expected = json.loads((FIXTURES / "posting_report.json").read_text())
    assert normalised(body, groups) == expected

    status, text = await system.call(
        "GET", "posts", f"{path}?school_year={REPORT_YEAR}&format=csv", school.admin.token
    )
    assert status == 200, text
    assert text == (FIXTURES / "posting_report.csv").read_bytes()
    async with system.http.get(  # type: ignore[union-attr]
        system.url("posts", f"{path}?school_year={REPORT_YEAR}"),
        headers={"Authorization": f"Bearer {school.admin.token}", "Accept": "text/csv"},
    ) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert (
            response.headers["Content-Disposition"]
            == f'attachment; filename="posting-report-{REPORT_YEAR}.csv"'
        )
        assert await response.read() == (FIXTURES / "posting_report.csv").read_bytes()


async def test_the_report_is_only_for_the_schools_admins(system: System) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 7")
    other = await make_school(system)
    path = f"/schools/{school.school_id}/posting-report?school_year=2026-2027"
    for token in (teacher.token, parent.token, other.admin.token):
        status, body = await system.call("GET", "posts", path, token)
        assert status == 404, body
        assert body["error"]["code"] == "not_found"
    status, body = await system.call("GET", "posts", path, school.admin.token)
    assert status == 200, body
    assert {w["group_id"] for w in body["weeks"]} == {str(group)}
    status, body = await system.call(
        "GET", "posts", f"/schools/{school.school_id}/posting-report?school_year=26-27", school.admin.token
    )
    assert status == 422, body
