"""Parent-teacher conferences (issue 7, seed rule 7) through the running system: schedules planned by
teachers and admins, families booking under concurrency and in their (early) window, moving and
cancelling until the deadline, the teacher's overview, .ics files and calendar feeds read by an
independent RFC 5545 parser on both sides of a daylight-saving change, the not-booked reminder,
erasure, and who gets 404.

The school, its groups, teachers and families are made through identity's real API. The 50 families
of the concurrency test are written into posts' copies the way its event handlers write them, with
real access tokens signed by identity's key: 50 invitations by mail would take minutes."""

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from identity.settings import Settings as IdentitySettings
from identity.tokens import TokenSigner
from posts.conferences.jobs import remind_not_booked
from shared import bus
from shared.app import POOL, SETTINGS
from shared.contracts import ChildChanged, ChildErased
from shared.envelope import Event, envelope
from shared.outbox import to_message
from shared.tokens import Caller
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    make_school,
    wait_until_linked,
)
from tests.harness.system import System, eventually

pytestmark = pytest.mark.timeout(300)

ZONE = "Europe/Amsterdam"


def pool(system: System) -> asyncpg.Pool:
    return system.services["posts"].app[POOL]


def token_for(system: System, person_id: uuid.UUID) -> str:
    """A real access token for the person, signed with identity's key (as a login would give)."""
    settings = cast(IdentitySettings, system.services["identity"].app[SETTINGS])
    return TokenSigner.from_settings(settings).issue(Caller(person_id))


async def db_now(system: System) -> datetime:
    now: datetime = await pool(system).fetchval("SELECT now()")
    return now


def iso(moment: datetime) -> str:
    return moment.isoformat()


def schedule_body(
    group_ids: list[uuid.UUID], now: datetime, day: date | None = None, **fields: Any
) -> dict[str, Any]:
    """A schedule of one afternoon (15:00-16:00, 10-minute slots) ten days ahead, open now."""
    day = day or (now + timedelta(days=10)).date()
    return {
        "group_ids": [str(g) for g in group_ids],
        "title": "Tienminutengesprekken",
        "location": "Lokaal 3",
        "days": [{"date": day.isoformat(), "ranges": [{"start": "15:00", "end": "16:00"}]}],
        "slot_minutes": 10,
        "break_minutes": 0,
        "opens_at": iso(now - timedelta(hours=1)),
        "closes_at": iso(now + timedelta(days=5)),
        "change_deadline": iso(now + timedelta(days=6)),
        **fields,
    }


async def create(system: System, person: Person | str, body: dict[str, Any]) -> dict[str, Any]:
    token = person if isinstance(person, str) else person.token
    status, schedule = await system.call("POST", "posts", "/conferences", token, json=body)
    assert status == 201, schedule
    return dict(schedule)


async def book(
    system: System, token: str, schedule_id: str, slot_id: str, child_id: uuid.UUID | str
) -> tuple[int, Any]:
    return await system.call(
        "POST",
        "posts",
        f"/conferences/{schedule_id}/bookings",
        token,
        json={"slot_id": slot_id, "child_id": str(child_id)},
    )


def assert_error(body: Any, code: str) -> None:
    """The common error shape of every 4xx."""
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str), body
    assert body["error"]["message"], body


# --- the school made through identity -----------------------------------------------------------


@dataclass
class Conferences:
    school: School
    juf: Person  # teaches Groep 3
    meester: Person  # teaches Groep 5
    family: Person  # a child in Groep 3 and one in Groep 5: several children, the early window
    single: Person  # one child in Groep 3
    other_group: Person  # a child in Groep 7 only
    other_school: Person  # a parent at another school

    def group(self, name: str) -> uuid.UUID:
        return self.school.groups[name]


@pytest.fixture(scope="module")
async def world(system: System) -> Conferences:
    school = await make_school(system)
    for name in ("Groep 3", "Groep 5", "Groep 7"):
        await add_group(system, school, name)
    juf = await add_person(system, school, "juf", "teacher", "Groep 3")
    meester = await add_person(system, school, "meester", "teacher", "Groep 5")
    family = await add_person(system, school, "gezin", "guardian", "Groep 3", "Groep 5")
    single = await add_person(system, school, "enig", "guardian", "Groep 3")
    other_group = await add_person(system, school, "zeven", "guardian", "Groep 7")
    elsewhere = await make_school(system, "De Andere School")
    await add_group(system, elsewhere, "Groep 3")
    other_school = await add_person(system, elsewhere, "elders", "guardian", "Groep 3")
    for person, group in (
        (juf, school.groups["Groep 3"]),
        (meester, school.groups["Groep 5"]),
        (family, school.groups["Groep 3"]),
        (family, school.groups["Groep 5"]),
        (single, school.groups["Groep 3"]),
        (other_group, school.groups["Groep 7"]),
        (other_school, elsewhere.groups["Groep 3"]),
    ):
        await wait_until_linked(system, person, group)

    async def named() -> bool:
        found = await pool(system).fetchval(
            "SELECT count(*) FROM children WHERE child_id = ANY($1::uuid[])", list(school.children.values())
        )
        return bool(found == len(school.children))

    await eventually(named, what="the children's names copied to posts (ChildChanged)")
    return Conferences(school, juf, meester, family, single, other_group, other_school)


# --- 50 families, 30 slots ----------------------------------------------------------------------


async def seeded_group(system: System, families: int) -> tuple[uuid.UUID, str, list[tuple[str, uuid.UUID]]]:
    """A group in posts' copies with a teacher and ``families`` guardians with one child each, as
    posts' handlers write them (GroupChanged, MembershipGranted with children, ChildChanged): the
    group, the teacher's token, and (token, child) per family."""
    school_id, group_id, teacher = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    parents = [(uuid.uuid4(), uuid.uuid4()) for _ in range(families)]
    async with pool(system).acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO groups (group_id, school_id, name, school_year, revision) VALUES ($1, $2, 'Groep 8', '2026-2027', 1)",
            group_id,
            school_id,
        )
        await conn.execute(
            """INSERT INTO memberships (group_id, person_id, role, active, revision, children)
               VALUES ($1, $2, 'teacher', true, 1, '{}')""",
            group_id,
            teacher,
        )
        await conn.executemany(
            """INSERT INTO memberships (group_id, person_id, role, active, revision, children)
               VALUES ($1, $2, 'guardian', true, 1, ARRAY[$3::uuid])""",
            [(group_id, parent, child) for parent, child in parents],
        )
        await conn.executemany(
            """INSERT INTO children (child_id, school_id, given_name, family_name, revision)
               VALUES ($1, $2, $3, 'Jansen', 1)""",
            [(child, school_id, f"Kind {i}") for i, (_, child) in enumerate(parents)],
        )
    return group_id, token_for(system, teacher), [(token_for(system, p), c) for p, c in parents]


async def test_fifty_families_book_thirty_slots_at_once(system: System) -> None:
    group_id, teacher, families = await seeded_group(system, 50)
    now = await db_now(system)
    body = schedule_body(
        [group_id],
        now,
        days=[
            {
                "date": (now + timedelta(days=10)).date().isoformat(),
                "ranges": [{"start": "13:00", "end": "18:00"}],
            }
        ],
    )
    schedule = await create(system, teacher, body)
    assert len(schedule["slots"]) == 30
    slot_ids = [s["slot_id"] for s in schedule["slots"]]
    # Every family goes for a slot at once; the first 30 families aim at all 30 slots, the other 20
    # at slots others aim at too: 50 requests, 30 places.
    aims = [slot_ids[i % 30] for i in range(50)]
    results = await asyncio.gather(
        *(
            book(system, token, schedule["schedule_id"], aim, child)
            for (token, child), aim in zip(families, aims, strict=True)
        )
    )
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 30, statuses
    assert statuses.count(409) == 20, statuses
    for status, answer in results:
        if status == 409:
            assert_error(answer, "conflict")
            assert "taken" in answer["error"]["message"]
    rows = await pool(system).fetch(
        "SELECT slot_id, child_id FROM conference_bookings WHERE schedule_id = $1",
        uuid.UUID(schedule["schedule_id"]),
    )
    assert len(rows) == 30
    assert len({r["slot_id"] for r in rows}) == 30  # no slot twice
    assert len({r["child_id"] for r in rows}) == 30
    # A family sees the others only as taken.
    token, child = families[0]
    status, view = await system.call("GET", "posts", f"/conferences/{schedule['schedule_id']}", token)
    assert status == 200, view
    states = [s["state"] for s in view["slots"]]
    if any(r["child_id"] == child for r in rows):
        assert states.count("yours") == 1
        assert states.count("taken") == 29
    else:
        assert states.count("taken") == 30
    assert all(s["child_id"] in (None, str(child)) for s in view["slots"])
    # The not-booked reminder: the 20 without a slot, once each, when the window closes within two days.
    await pool(system).execute(
        "UPDATE conference_schedules SET closes_at = now() + interval '1 day' WHERE schedule_id = $1",
        uuid.UUID(schedule["schedule_id"]),
    )
    async with pool(system).acquire() as conn, conn.transaction():
        first = await remind_not_booked(conn)
    async with pool(system).acquire() as conn, conn.transaction():
        again = await remind_not_booked(conn)
    reminded = await pool(system).fetch(
        """SELECT envelope->'payload' AS payload FROM outbox
           WHERE routing_key = 'posts.booking_reminder_due' AND envelope->'payload'->>'schedule_id' = $1""",
        schedule["schedule_id"],
    )
    assert first >= 20, (first, again)
    assert again == 0, (first, again)
    children = {r["payload"]["child_id"] for r in reminded}
    booked = {str(r["child_id"]) for r in rows}
    assert len(reminded) == 20
    assert len(children) == 20
    assert not children & booked


# --- the early window, side by side, the teacher's view, who gets 404 ----------------------------


async def test_a_family_with_two_children_books_back_to_back_in_its_early_window(
    system: System, world: Conferences
) -> None:
    now = await db_now(system)
    day = (now + timedelta(days=12)).date()
    window = {
        "early_opens_at": iso(now - timedelta(minutes=5)),
        "opens_at": iso(now + timedelta(hours=20)),
    }
    groep3 = await create(system, world.juf, schedule_body([world.group("Groep 3")], now, day, **window))
    groep5 = await create(system, world.meester, schedule_body([world.group("Groep 5")], now, day, **window))

    # Side by side: the family's two children, each with their own teacher's schedule.
    status, mine = await system.call("GET", "posts", "/my/conferences", world.family.token)
    assert status == 200, mine
    assert mine["several_children"] is True
    by_schedule = {e["schedule"]["schedule_id"]: e for e in mine["schedules"]}
    assert set(by_schedule) == {groep3["schedule_id"], groep5["schedule_id"]}
    child3 = by_schedule[groep3["schedule_id"]]["child_id"]
    child5 = by_schedule[groep5["schedule_id"]]["child_id"]
    assert child3 != child5
    assert by_schedule[groep3["schedule_id"]]["child_name"]  # from posts' copy of identity's children

    # 15:00 with juf, 15:10 with meester: back to back, before the general window opens.
    status, first = await book(
        system, world.family.token, groep3["schedule_id"], groep3["slots"][0]["slot_id"], child3
    )
    assert status == 201, first
    status, second = await book(
        system, world.family.token, groep5["schedule_id"], groep5["slots"][1]["slot_id"], child5
    )
    assert status == 201, second
    assert first["ends_at"] == second["starts_at"]
    assert first["starts_at"].endswith("+01:00") or first["starts_at"].endswith("+02:00")  # school-local
    assert datetime.fromisoformat(first["starts_at"]).strftime("%H:%M") == "15:00"

    # A family with one child waits for the general window: told when it opens.
    child = world.school.children["enig-kind0"]
    status, refused = await book(
        system, world.single.token, groep3["schedule_id"], groep3["slots"][2]["slot_id"], child
    )
    assert status == 409, refused
    assert_error(refused, "conflict")
    opens = datetime.fromisoformat(refused["error"]["details"]["opens_at"])
    assert opens == datetime.fromisoformat(window["opens_at"])
    local = opens.astimezone(ZoneInfo(ZONE))
    assert f"{local:%Y-%m-%d %H:%M}" in refused["error"]["message"]
    status, mine = await system.call("GET", "posts", "/my/conferences", world.single.token)
    assert status == 200
    assert mine["several_children"] is False
    assert mine["schedules"][0]["opens_for_you_at"] == refused["error"]["details"]["opens_at"]

    # The other family's booking is only "taken" to them.
    status, view = await system.call(
        "GET", "posts", f"/conferences/{groep3['schedule_id']}", world.single.token
    )
    assert status == 200, view
    assert view["slots"][0]["state"] == "taken"
    assert view["slots"][0]["booking_id"] is None
    assert view["slots"][0]["child_id"] is None

    # The teacher sees names and who has not booked, and books on the single family's behalf.
    status, overview = await system.call(
        "GET", "posts", f"/conferences/{groep3['schedule_id']}/overview", world.juf.token
    )
    assert status == 200, overview
    assert overview["slots"][0]["booking"]["child_name"].startswith("Gezin-Kind0")
    assert [c["child_id"] for c in overview["not_booked"]] == [str(child)]
    assert overview["not_booked"][0]["guardian_ids"] == [str(world.single.person_id)]
    status, on_behalf = await book(
        system, world.juf.token, groep3["schedule_id"], groep3["slots"][2]["slot_id"], child
    )
    assert status == 201, on_behalf
    assert on_behalf["booked_by"] == str(world.juf.person_id)
    # Parents do not see the overview.
    status, body = await system.call(
        "GET", "posts", f"/conferences/{groep3['schedule_id']}/overview", world.single.token
    )
    assert status == 403, body
    # A second slot for the same child is refused, saying so.
    status, body = await book(
        system, world.juf.token, groep3["schedule_id"], groep3["slots"][3]["slot_id"], child
    )
    assert status == 409, body
    assert "already has a slot" in body["error"]["message"], body

    # The schedule appears in the group's feed as a sign-up, without using the group's post of the day.
    status, feed = await system.call("GET", "posts", "/feed", world.single.token)
    assert status == 200, feed
    signups = [p["signup"] for p in feed["posts"] if p.get("signup")]
    assert {"kind": "conference", "id": groep3["schedule_id"]} in signups
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{world.group('Groep 3')}/posts",
        world.juf.token,
        json={"title": "Vandaag", "body": "We hebben geknutseld."},
    )
    assert status == 201, post

    # Events for the notifier, in the same transactions.
    kinds = await pool(system).fetch(
        """SELECT routing_key, envelope->'payload' AS payload FROM outbox
           WHERE envelope->'payload'->>'schedule_id' = $1 ORDER BY id""",
        groep3["schedule_id"],
    )
    assert [k["routing_key"] for k in kinds] == [
        "posts.conference_opened",
        "posts.slot_booked",
        "posts.slot_booked",
    ]
    opened = kinds[0]["payload"]
    assert set(opened["guardian_ids"]) == {str(world.family.person_id), str(world.single.person_id)}
    assert kinds[1]["payload"]["guardian_ids"] == [str(world.family.person_id)]

    # Nobody outside the groups sees or books anything of it: 404 like a schedule that does not exist.
    for outsider in (world.other_group, world.other_school, world.meester):
        for schedule in (groep3,) if outsider is world.meester else (groep3, groep5):
            sid = schedule["schedule_id"]
            for method, path, body in (
                ("GET", f"/conferences/{sid}", None),
                ("GET", f"/conferences/{sid}/overview", None),
                (
                    "POST",
                    f"/conferences/{sid}/bookings",
                    {"slot_id": schedule["slots"][5]["slot_id"], "child_id": str(child)},
                ),
            ):
                status, answer = await system.call(method, "posts", path, outsider.token, json=body)
                assert status == 404, (outsider.email, method, path, answer)
                assert_error(answer, "not_found")
        for booking in (first, second):
            if outsider is world.meester and booking is second:
                continue  # meester teaches Groep 5: that booking is his to see
            for method, path in (
                ("GET", f"/conference-bookings/{booking['booking_id']}/calendar"),
                ("DELETE", f"/conference-bookings/{booking['booking_id']}"),
            ):
                status, answer = await system.call(method, "posts", path, outsider.token)
                assert status == 404, (outsider.email, method, path, answer)
        status, mine = await system.call("GET", "posts", "/my/conferences", outsider.token)
        assert status == 200, mine
        assert mine["schedules"] == [], mine
    # A parent books for their own children only.
    status, answer = await book(
        system, world.single.token, groep5["schedule_id"], groep5["slots"][4]["slot_id"], child5
    )
    assert status == 404, answer


# --- move and cancel until the deadline ----------------------------------------------------------


async def test_move_and_cancel_until_the_deadline_and_refused_after(
    system: System, world: Conferences
) -> None:
    now = await db_now(system)
    deadline = now + timedelta(seconds=4)
    schedule = await create(
        system,
        world.school.admin,
        schedule_body(
            [world.group("Groep 5")], now, (now + timedelta(days=14)).date(), change_deadline=iso(deadline)
        ),
    )
    sid, slots = schedule["schedule_id"], [s["slot_id"] for s in schedule["slots"]]
    child = world.school.children["gezin-kind1"]
    status, booking = await book(system, world.family.token, sid, slots[0], child)
    assert status == 201, booking
    path = f"/conference-bookings/{booking['booking_id']}"
    status, moved = await system.call(
        "PUT", "posts", path + "/slot", world.family.token, json={"slot_id": slots[3]}
    )
    assert status == 200, moved
    assert moved["slot_id"] == slots[3], moved
    status, body = await system.call("DELETE", "posts", path, world.family.token)
    assert status == 204, body
    status, booking = await book(system, world.family.token, sid, slots[1], child)
    assert status == 201, booking
    path = f"/conference-bookings/{booking['booking_id']}"
    # One booking per child, for the teacher too.
    status, twice = await book(system, world.meester.token, sid, slots[2], child)
    assert status == 409, twice
    assert twice["error"]["details"]["booking_id"] == booking["booking_id"], twice

    await asyncio.sleep(max(0.0, (deadline - await db_now(system)).total_seconds()) + 0.1)
    status, refused = await system.call(
        "PUT", "posts", path + "/slot", world.family.token, json={"slot_id": slots[4]}
    )
    assert status == 409, refused
    assert_error(refused, "conflict")
    assert "until" in refused["error"]["message"]
    assert "change_deadline" in refused["error"]["details"]
    status, refused = await system.call("DELETE", "posts", path, world.family.token)
    assert status == 409, refused
    assert "cancelled until" in refused["error"]["message"]
    # The teacher still moves it on the family's behalf; SlotMoved tells them.
    status, moved = await system.call(
        "PUT", "posts", path + "/slot", world.meester.token, json={"slot_id": slots[4]}
    )
    assert status == 200, moved
    assert moved["slot_id"] == slots[4], moved
    # Withdrawn by its staff (not by a family): the booking is cancelled, the schedule and its post gone.
    status, body = await system.call("DELETE", "posts", f"/conferences/{sid}", world.family.token)
    assert status == 403, body
    status, body = await system.call("DELETE", "posts", f"/conferences/{sid}", world.meester.token)
    assert status == 204, body
    status, body = await system.call("GET", "posts", f"/conferences/{sid}", world.family.token)
    assert status == 404, body
    status, body = await system.call("GET", "posts", path + "/calendar", world.family.token)
    assert status == 404, body
    status, feed = await system.call("GET", "posts", "/feed", world.family.token)
    assert all((p.get("signup") or {}).get("id") != sid for p in feed["posts"])
    keys = await pool(system).fetch(
        "SELECT routing_key FROM outbox WHERE envelope->'payload'->>'schedule_id' = $1 ORDER BY id", sid
    )
    assert [k["routing_key"] for k in keys] == [
        "posts.conference_opened",
        "posts.slot_booked",
        "posts.slot_moved",
        "posts.slot_cancelled",
        "posts.slot_booked",
        "posts.slot_moved",
        "posts.slot_cancelled",
    ]


# --- calendars across a daylight-saving change --------------------------------------------------


def unfold(ics: str) -> list[str]:
    """RFC 5545 3.1: lines end in CRLF; a line starting with a space or tab continues the previous one."""
    assert "\r\n" in ics
    lines: list[str] = []
    for raw in ics.split("\r\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def components(lines: list[str], name: str) -> list[list[str]]:
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        if line == f"BEGIN:{name}":
            current = []
        elif line == f"END:{name}":
            assert current is not None
            found.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return found


def prop(lines: list[str], name: str) -> tuple[dict[str, str], str]:
    """(parameters, value) of the first property ``name``."""
    for line in lines:
        head, _, value = line.partition(":")
        parts = head.split(";")
        if parts[0] == name:
            return dict(p.split("=", 1) for p in parts[1:]), value
    raise AssertionError(f"no {name}")


def local(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%dT%H%M%S")


def offset(text: str) -> timedelta:
    sign = -1 if text[0] == "-" else 1
    return sign * timedelta(hours=int(text[1:3]), minutes=int(text[3:5]))


def utc_of(at: datetime, vtimezone: list[str]) -> datetime:
    """The UTC instant of local time ``at`` by the VTIMEZONE's own observances (DTSTART and RDATEs,
    given in the offset before each change): the latest onset at or before it decides the offset."""
    onsets: list[tuple[datetime, timedelta]] = []
    for kind in ("STANDARD", "DAYLIGHT"):
        for observance in components(vtimezone, kind):
            to = offset(prop(observance, "TZOFFSETTO")[1])
            starts = [prop(observance, "DTSTART")[1]]
            for line in observance:
                if line.startswith("RDATE"):
                    starts += line.partition(":")[2].split(",")
            onsets += [(local(s), to) for s in starts]
    onsets.sort()
    applying = [to for onset, to in onsets if onset <= at]
    assert applying, at
    return (at - applying[-1]).replace(tzinfo=UTC)


def parse_events(ics: str) -> list[dict[str, Any]]:
    """Each VEVENT's summary, start and end (local time and its UTC instant by the file's VTIMEZONE)."""
    lines = unfold(ics)
    assert lines[0] == "BEGIN:VCALENDAR"
    assert lines[-1] == "END:VCALENDAR"
    assert prop(lines, "VERSION")[1] == "2.0"
    zones = {prop(z, "TZID")[1]: z for z in components(lines, "VTIMEZONE")}
    events = []
    for event in components(lines, "VEVENT"):
        row: dict[str, Any] = {"summary": prop(event, "SUMMARY")[1], "uid": prop(event, "UID")[1]}
        for name in ("DTSTART", "DTEND"):
            params, value = prop(event, name)
            row[name] = (params["TZID"], local(value), utc_of(local(value), zones[params["TZID"]]))
        events.append(row)
    return events


async def test_ics_and_calendar_feed_keep_local_time_across_the_dst_change(
    system: System, world: Conferences
) -> None:
    # Summer time starts on Sunday 28 March 2027 in Europe/Amsterdam: 15:00 is 14:00Z on Friday the
    # 26th and 13:00Z on Monday the 29th.
    now = await db_now(system)
    body = schedule_body(
        [world.group("Groep 3"), world.group("Groep 5")],
        now,
        days=[
            {"date": "2027-03-26", "ranges": [{"start": "15:00", "end": "16:00"}]},
            {"date": "2027-03-29", "ranges": [{"start": "15:00", "end": "16:00"}]},
        ],
        title="Rapportgesprekken",
    )
    schedule = await create(system, world.school.admin, body)
    friday = next(s for s in schedule["slots"] if s["starts_at"] == "2027-03-26T15:00:00+01:00")
    monday = next(s for s in schedule["slots"] if s["starts_at"] == "2027-03-29T15:00:00+02:00")
    bookings = []
    for slot, key in ((friday, "gezin-kind0"), (monday, "gezin-kind1")):
        status, booking = await book(
            system, world.family.token, schedule["schedule_id"], slot["slot_id"], world.school.children[key]
        )
        assert status == 201, booking
        bookings.append(booking)

    expected = [datetime(2027, 3, 26, 14, tzinfo=UTC), datetime(2027, 3, 29, 13, tzinfo=UTC)]
    for booking, instant in zip(bookings, expected, strict=True):
        status, ics = await system.call(
            "GET", "posts", f"/conference-bookings/{booking['booking_id']}/calendar", world.family.token
        )
        assert status == 200, ics
        (event,) = parse_events(ics.decode())
        tzid, at, utc = event["DTSTART"]
        assert tzid == ZONE
        assert at.strftime("%H:%M") == "15:00"
        assert utc == instant
        assert event["DTEND"][2] == instant + timedelta(minutes=10)
        assert event["summary"].startswith("Rapportgesprekken: Gezin-Kind")
        assert datetime.fromisoformat(booking["starts_at"]) == instant

    # The personal feed: no access token, the token in the URL; revoked, it is gone.
    status, feed = await system.call("POST", "posts", "/calendar-feeds", world.family.token)
    assert status == 201, feed
    assert re.fullmatch(r"/calendar/[A-Za-z0-9_-]{43}", feed["url"])
    stored = await pool(system).fetchval(
        "SELECT token_hash FROM calendar_feeds WHERE feed_id = $1", uuid.UUID(feed["feed_id"])
    )
    assert feed["token"].encode() not in bytes(stored)
    status, ics = await system.call("GET", "posts", feed["url"])
    assert status == 200, ics
    events = parse_events(ics.decode())
    by_uid = {e["uid"]: e for e in events}
    for booking, instant in zip(bookings, expected, strict=True):
        assert by_uid[f"{booking['booking_id']}@klaspost"]["DTSTART"][2] == instant
    # The teacher's calendar holds their group's bookings, and no one else's.
    status, juf_feed = await system.call("POST", "posts", "/calendar-feeds", world.juf.token)
    assert status == 201
    status, ics = await system.call("GET", "posts", juf_feed["url"])
    juf_uids = {e["uid"] for e in parse_events(ics.decode())}
    assert f"{bookings[0]['booking_id']}@klaspost" in juf_uids
    assert f"{bookings[1]['booking_id']}@klaspost" not in juf_uids

    status, listed = await system.call("GET", "posts", "/calendar-feeds", world.family.token)
    assert [f["feed_id"] for f in listed["feeds"]] == [feed["feed_id"]]
    status, body = await system.call("DELETE", "posts", f"/calendar-feeds/{feed['feed_id']}", world.juf.token)
    assert status == 404, body  # not theirs to revoke
    status, body = await system.call(
        "DELETE", "posts", f"/calendar-feeds/{feed['feed_id']}", world.family.token
    )
    assert status == 204, body
    status, gone = await system.call("GET", "posts", feed["url"])
    assert status == 404, gone
    assert_error(gone, "not_found")
    status, gone = await system.call("GET", "posts", "/calendar/" + "A" * 43)
    assert status == 404, gone


# --- bad input ----------------------------------------------------------------------------------


async def test_bad_schedules_are_refused_whole_in_the_common_shape(
    system: System, world: Conferences
) -> None:
    now = await db_now(system)
    group = world.group("Groep 3")
    day = (now + timedelta(days=20)).date().isoformat()
    later = now + timedelta(days=20)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {
                "days": [
                    {
                        "date": day,
                        "ranges": [{"start": "15:00", "end": "16:00"}, {"start": "15:30", "end": "16:30"}],
                    }
                ]
            },
            "days.0.ranges.1",
        ),
        ({"slot_minutes": 0}, "slot_minutes"),
        ({"days": [{"date": day, "ranges": [{"start": "15:00", "end": "15:00"}]}]}, "days.0.ranges.0"),
        ({"days": [{"date": day, "ranges": [{"start": "16:00", "end": "15:00"}]}]}, "days.0.ranges.0"),
        ({"days": [{"date": day, "ranges": [{"start": "15:00", "end": "15:55"}]}]}, "days.0.ranges.0"),
        ({"break_minutes": 5}, "days.0.ranges.0"),  # 60 minutes is no whole number of 10 + 5
        ({"change_deadline": iso(later + timedelta(days=1))}, "change_deadline"),
        ({"closes_at": iso(later + timedelta(days=1))}, "closes_at"),
        ({"closes_at": iso(now - timedelta(hours=2))}, "closes_at"),  # before it opens
        ({"early_opens_at": iso(now)}, "early_opens_at"),  # after opens_at
        ({"opens_at": "2027-01-01T08:00:00"}, "opens_at"),  # no offset
        (
            {"days": [{"date": "2027-03-28", "ranges": [{"start": "02:00", "end": "03:00"}]}]},
            "days.0.ranges.0",
        ),
        ({"days": []}, "days"),
        ({"title": "   "}, "title"),
        ({"child_ids": [str(uuid.uuid4())]}, "child_ids"),
        ({"unknown": 1}, "unknown"),
    ]
    before = await pool(system).fetchval("SELECT count(*) FROM conference_schedules")
    posts_before = await pool(system).fetchval("SELECT count(*) FROM posts WHERE group_id = $1", group)
    for change, field in cases:
        body = {**schedule_body([group], now, (now + timedelta(days=20)).date()), **change}
        status, answer = await system.call("POST", "posts", "/conferences", world.juf.token, json=body)
        assert status == 422, (change, answer)
        assert_error(answer, "validation_failed")
        fields = [d["field"] for d in answer["error"]["details"]]
        assert any(f == field or f.startswith(field) for f in fields), (change, answer)
    assert await pool(system).fetchval("SELECT count(*) FROM conference_schedules") == before
    assert (
        await pool(system).fetchval("SELECT count(*) FROM posts WHERE group_id = $1", group) == posts_before
    )

    body = schedule_body([group], now)
    status, answer = await system.call("POST", "posts", "/conferences", world.single.token, json=body)
    assert status == 403, answer  # a parent of the group
    status, answer = await system.call("POST", "posts", "/conferences", world.meester.token, json=body)
    assert status == 404, answer  # not his group
    status, answer = await system.call("POST", "posts", "/conferences", world.other_school.token, json=body)
    assert status == 404, answer
    assert_error(answer, "not_found")
    status, answer = await system.call(
        "POST",
        "posts",
        "/conferences",
        world.juf.token,
        data=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400, answer

    schedule = await create(system, world.juf, schedule_body([group], now, (now + timedelta(days=21)).date()))
    sid = schedule["schedule_id"]
    child = world.school.children["enig-kind0"]
    for payload, expected in (
        ({"slot_id": str(uuid.uuid4()), "child_id": str(child)}, 422),
        ({"slot_id": "nope", "child_id": str(child)}, 422),
        ({"slot_id": schedule["slots"][0]["slot_id"]}, 422),
        ({"slot_id": schedule["slots"][0]["slot_id"], "child_id": str(uuid.uuid4())}, 404),
    ):
        status, answer = await system.call(
            "POST", "posts", f"/conferences/{sid}/bookings", world.single.token, json=payload
        )
        assert status == expected, (payload, answer)
        assert "error" in answer
    status, answer = await system.call("GET", "posts", "/conferences/not-a-uuid", world.single.token)
    assert status == 404, answer
    status, answer = await system.call("GET", "posts", f"/conferences/{uuid.uuid4()}", world.single.token)
    assert status == 404, answer
    status, answer = await system.call("GET", "posts", f"/conferences/{sid}")
    assert status == 401, answer


# --- erasure ------------------------------------------------------------------------------------


async def publish_on_bus(system: System, *events: Event) -> list[uuid.UUID]:
    """Events as identity publishes them, on the real broker, in this order; their event ids."""
    ids = []
    connection = await bus.connect(system.amqp_url, "test-conferences")
    try:
        channel = await bus.publisher_channel(connection)
        exchange = await bus.declare_exchange(channel, "klaspost.events")
        for event in events:
            env = envelope(event, None)
            await exchange.publish(
                to_message(env.model_dump(mode="json"), env.event_id), routing_key=env.type
            )
            ids.append(env.event_id)
    finally:
        await connection.close()
    return ids


async def handled(system: System, event_ids: list[uuid.UUID]) -> None:
    """Until posts has handled each of the events (its inbox)."""

    async def done() -> bool:
        found = await pool(system).fetchval(
            "SELECT count(DISTINCT event_id) FROM inbox WHERE event_id = ANY($1::uuid[])", event_ids
        )
        return bool(found == len(event_ids))

    await eventually(done, what="posts handled the events")


async def test_the_children_copy_keeps_the_newest_name_and_forgets_an_erased_child(system: System) -> None:
    group_id, teacher, families = await seeded_group(system, 2)
    now = await db_now(system)
    schedule = await create(system, teacher, schedule_body([group_id], now))
    (token, child), _ = families
    status, booking = await book(
        system, token, schedule["schedule_id"], schedule["slots"][0]["slot_id"], child
    )
    assert status == 201, booking
    school = uuid.uuid4()

    def changed(name: str, revision: int) -> ChildChanged:
        return ChildChanged(
            child_id=child,
            school_id=school,
            given_name=name,
            family_name="Jansen",
            photo_consent=True,
            revision=revision,
        )

    async def name() -> str | None:
        found: str | None = await pool(system).fetchval(
            "SELECT given_name FROM children WHERE child_id = $1", child
        )
        return found

    # Newest revision wins, whatever the order they arrive in.
    await handled(system, await publish_on_bus(system, changed("Noor", 5), changed("Noortje", 3)))
    assert await name() == "Noor"
    await handled(system, await publish_on_bus(system, changed("Noortje", 4), changed("Noa", 6)))
    assert await name() == "Noa"
    status, overview = await system.call(
        "GET", "posts", f"/conferences/{schedule['schedule_id']}/overview", teacher
    )
    assert status == 200, overview
    assert overview["slots"][0]["booking"]["child_name"] == "Noa Jansen"

    # Erased: name and bookings gone, and a late ChildChanged does not bring the name back.
    await handled(
        system, await publish_on_bus(system, ChildErased(child_id=child, school_id=school), changed("Noa", 7))
    )
    left = await pool(system).fetchval(
        """SELECT (SELECT count(*) FROM conference_bookings WHERE child_id = $1)
                + (SELECT count(*) FROM children WHERE child_id = $1)""",
        child,
    )
    assert left == 0
    status, view = await system.call("GET", "posts", f"/conferences/{schedule['schedule_id']}", teacher)
    assert status == 200, view
    assert all(s["state"] == "free" for s in view["slots"]), view
    # The booking went with a SlotCancelled (the notifier drops its reminder) that names nobody and
    # tells nobody: the system cancelled it.
    cancelled = await pool(system).fetchval(
        "SELECT envelope->'payload' FROM outbox WHERE routing_key = 'posts.slot_cancelled' "
        "AND envelope->'payload'->>'booking_id' = $1",
        booking["booking_id"],
    )
    assert cancelled is not None, "no SlotCancelled for the erased child's booking"
    payload = json.loads(cancelled) if isinstance(cancelled, str) else cancelled
    assert (payload["cancelled_by"], payload["guardian_ids"], payload["child_name"]) == (None, [], ""), (
        payload
    )
