"""Faults found by trying the sign-ups (issue 7) as a new user would and trying to break them: each test
shows one, through the running system. The groups, teachers and families are written into posts'
copies the way its event handlers write them (as test_conferences.py's 50 families are), with real
access tokens signed by identity's key."""

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import pytest
from icalendar import Calendar

from identity.settings import Settings as IdentitySettings
from identity.tokens import TokenSigner
from shared import bus
from shared.app import POOL, SETTINGS
from shared.contracts import MembershipGranted, MembershipRevoked
from shared.envelope import Event, envelope
from shared.outbox import to_message
from shared.tokens import Caller
from tests.harness.school import add_group, make_class
from tests.harness.system import System, eventually

pytestmark = pytest.mark.timeout(120)


def pool(system: System) -> asyncpg.Pool:
    return system.services["posts"].app[POOL]


def token_for(system: System, person_id: uuid.UUID) -> str:
    settings = cast(IdentitySettings, system.services["identity"].app[SETTINGS])
    return TokenSigner.from_settings(settings).issue(Caller(person_id))


@dataclass
class Group:
    """A group in posts' copies: its teacher and families (parent, child)."""

    school_id: uuid.UUID = field(default_factory=uuid.uuid4)
    group_id: uuid.UUID = field(default_factory=uuid.uuid4)
    teacher: uuid.UUID = field(default_factory=uuid.uuid4)
    families: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)


async def seeded(system: System, families: int, time_zone: str | None = None) -> Group:
    group = Group(families=[(uuid.uuid4(), uuid.uuid4()) for _ in range(families)])
    async with pool(system).acquire() as conn, conn.transaction():
        if time_zone is not None:
            await conn.execute(
                """INSERT INTO schools (school_id, time_zone, max_posts_per_day, min_posts_per_week, revision)
                   VALUES ($1, $2, 3, 0, 1)""",
                group.school_id,
                time_zone,
            )
        await conn.execute(
            """INSERT INTO groups (group_id, school_id, name, school_year, revision)
               VALUES ($1, $2, 'Groep 6', '2026-2027', 1)""",
            group.group_id,
            group.school_id,
        )
        await conn.execute(
            """INSERT INTO memberships (group_id, person_id, role, active, revision, children)
               VALUES ($1, $2, 'teacher', true, 1, '{}')""",
            group.group_id,
            group.teacher,
        )
        await conn.executemany(
            """INSERT INTO memberships (group_id, person_id, role, active, revision, children)
               VALUES ($1, $2, 'guardian', true, 1, ARRAY[$3::uuid])""",
            [(group.group_id, parent, child) for parent, child in group.families],
        )
        await conn.executemany(
            """INSERT INTO children (child_id, school_id, given_name, family_name, revision)
               VALUES ($1, $2, $3, 'de Vries', 1)""",
            [(child, group.school_id, f"Kind {i}") for i, (_, child) in enumerate(group.families)],
        )
    return group


def schedule_body(group: Group, now: datetime, **fields: Any) -> dict[str, Any]:
    """One afternoon ten days ahead, 13:00-18:00 in 10-minute slots (30), open now."""
    return {
        "group_ids": [str(group.group_id)],
        "title": "Tienminutengesprekken",
        "days": [
            {
                "date": (now + timedelta(days=10)).date().isoformat(),
                "ranges": [{"start": "13:00", "end": "18:00"}],
            }
        ],
        "slot_minutes": 10,
        "opens_at": (now - timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(days=5)).isoformat(),
        "change_deadline": (now + timedelta(days=6)).isoformat(),
        **fields,
    }


async def schedule(system: System, group: Group, **fields: Any) -> dict[str, Any]:
    body = schedule_body(group, datetime.now(UTC), **fields)
    status, made = await system.call(
        "POST", "posts", "/conferences", token_for(system, group.teacher), json=body
    )
    assert status == 201, made
    return dict(made)


async def book(system: System, group: Group, family: int, made: dict[str, Any], slot: int) -> tuple[int, Any]:
    parent, child = group.families[family]
    return await system.call(
        "POST",
        "posts",
        f"/conferences/{made['schedule_id']}/bookings",
        token_for(system, parent),
        json={"slot_id": made["slots"][slot]["slot_id"], "child_id": str(child)},
    )


def refused(status: int, body: Any, field_name: str) -> None:
    """A 422 in the common error shape naming the field (not a 500)."""
    assert status == 422, (status, body)
    assert body["error"]["code"] == "validation_failed", body
    assert any(d["field"].startswith(field_name) for d in body["error"]["details"]), body


async def outbox_booking_ids(system: System, routing_key: str, schedule_id: str) -> set[str]:
    rows = await pool(system).fetch(
        "SELECT envelope->'payload'->>'booking_id' AS b FROM outbox "
        "WHERE routing_key = $1 AND envelope->'payload'->>'schedule_id' = $2",
        routing_key,
        schedule_id,
    )
    return {r["b"] for r in rows}


# --- conferences --------------------------------------------------------------------------------


async def test_times_and_days_no_datetime_can_hold_are_refused_not_a_500(system: System) -> None:
    """A window opening in year 1 (+14:00 is before year 1 in UTC) was a 500 from asyncpg; a day in
    year 9999 for a school west of UTC was a 500 from turning it into an instant."""
    group = await seeded(system, 1)
    west = await seeded(system, 1, time_zone="America/Curacao")
    now = datetime.now(UTC)
    teacher = token_for(system, group.teacher)
    for name, value in (
        ("opens_at", "0001-01-01T00:00:00+14:00"),
        ("early_opens_at", "0001-01-01T00:00:00+14:00"),
    ):
        status, body = await system.call(
            "POST", "posts", "/conferences", teacher, json=schedule_body(group, now, **{name: value})
        )
        refused(status, body, name)
    far = {
        "days": [{"date": "9999-12-31", "ranges": [{"start": "20:00", "end": "23:50"}]}],
        "closes_at": "9999-12-30T00:00:00+00:00",
        "change_deadline": "9999-12-30T00:00:00+00:00",
    }
    status, body = await system.call(
        "POST", "posts", "/conferences", token_for(system, west.teacher), json=schedule_body(west, now, **far)
    )
    refused(status, body, "days.0.date")


async def test_a_range_over_the_hour_daylight_saving_repeats_is_refused(system: System) -> None:
    """Times daylight saving skips were refused, but the repeated hour was not: on 31 October 2027
    (Europe/Amsterdam) 01:30-03:30 in 30-minute slots gave a slot from 02:30+02:00 to 03:00+01:00,
    90 minutes long."""
    group = await seeded(system, 1)
    now = datetime.now(UTC)
    body = schedule_body(
        group,
        now,
        days=[{"date": "2027-10-31", "ranges": [{"start": "01:30", "end": "03:30"}]}],
        slot_minutes=30,
    )
    status, answer = await system.call(
        "POST", "posts", "/conferences", token_for(system, group.teacher), json=body
    )
    refused(status, answer, "days.0.ranges.0")
    # Slots whose ends both exist but span the skipped hour (01:00-03:00 on 28 March 2027 lasts 60 minutes).
    body = schedule_body(
        group,
        now,
        days=[{"date": "2027-03-28", "ranges": [{"start": "01:00", "end": "03:00"}]}],
        slot_minutes=120,
    )
    status, answer = await system.call(
        "POST", "posts", "/conferences", token_for(system, group.teacher), json=body
    )
    refused(status, answer, "days.0.ranges.0")


async def test_a_change_deadline_already_passed_is_refused(system: System) -> None:
    """A schedule whose move/cancel deadline had passed before it was made was accepted: families could
    book but never move or cancel."""
    group = await seeded(system, 1)
    now = datetime.now(UTC)
    body = schedule_body(group, now, change_deadline=(now - timedelta(days=3)).isoformat())
    status, answer = await system.call(
        "POST", "posts", "/conferences", token_for(system, group.teacher), json=body
    )
    refused(status, answer, "change_deadline")
    assert not await pool(system).fetchval(
        "SELECT count(*) FROM conference_schedules s JOIN conference_groups g USING (schedule_id) WHERE g.group_id = $1",
        group.group_id,
    )


async def test_a_booking_made_while_the_schedule_is_withdrawn_is_cancelled_too(system: System) -> None:
    """A withdrawal read the bookings, then deleted the schedule: a booking committed in between was
    deleted by the cascade without its SlotCancelled (the family kept a confirmed conference that no
    longer existed). The withdrawal is held after reading the bookings by a lock on its feed post."""
    group = await seeded(system, 2)
    made = await schedule(system, group)
    status, first = await book(system, group, 0, made, 0)
    assert status == 201, first
    async with pool(system).acquire() as blocker:
        hold = blocker.transaction()
        await hold.start()
        await blocker.execute(
            "SELECT 1 FROM posts WHERE signup_id = $1 FOR UPDATE", uuid.UUID(made["schedule_id"])
        )
        withdrawal = asyncio.create_task(
            system.call(
                "DELETE", "posts", f"/conferences/{made['schedule_id']}", token_for(system, group.teacher)
            )
        )
        await asyncio.sleep(0.5)
        late = asyncio.create_task(book(system, group, 1, made, 1))
        await asyncio.sleep(0.5)
        await hold.rollback()
    assert (await withdrawal)[0] == 204
    status, answer = await late
    booked = await outbox_booking_ids(system, "posts.slot_booked", made["schedule_id"])
    cancelled = await outbox_booking_ids(system, "posts.slot_cancelled", made["schedule_id"])
    # Either the late booking came before the withdrawal and is cancelled with the rest, or it found
    # no schedule: never a booking confirmed and silently gone.
    assert status in (201, 404), (status, answer)
    assert booked == cancelled, (booked, cancelled)
    assert not await pool(system).fetchval(
        "SELECT count(*) FROM conference_bookings WHERE schedule_id = $1", uuid.UUID(made["schedule_id"])
    )


async def test_concurrent_moves_and_a_cancel_after_a_move_find_the_booking(system: System) -> None:
    """A move or cancel locked the booking with FOR UPDATE on a join with its slot: when a concurrent
    move had given it another slot, PostgreSQL's recheck dropped the row and the second request got
    404 "no such booking" for a booking that exists (a double click, a parent and a teacher at once)."""
    group = await seeded(system, 1)
    made = await schedule(system, group)
    status, booking = await book(system, group, 0, made, 0)
    assert status == 201, booking
    parent = token_for(system, group.families[0][0])
    path = f"/conference-bookings/{booking['booking_id']}"
    moves = await asyncio.gather(
        *(
            system.call(
                "PUT", "posts", f"{path}/slot", parent, json={"slot_id": made["slots"][5 + i]["slot_id"]}
            )
            for i in range(6)
        )
    )
    assert [status for status, _ in moves] == [200] * 6, moves
    moved = await pool(system).fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'posts.slot_moved' AND envelope->'payload'->>'booking_id' = $1",
        booking["booking_id"],
    )
    assert moved == 6
    move, cancel = await asyncio.gather(
        system.call("PUT", "posts", f"{path}/slot", parent, json={"slot_id": made["slots"][20]["slot_id"]}),
        system.call("DELETE", "posts", path, parent),
    )
    assert cancel[0] == 204, cancel
    assert move[0] in (200, 404), move  # 404 only when the cancel came first
    assert not await pool(system).fetchval(
        "SELECT count(*) FROM conference_bookings WHERE booking_id = $1", uuid.UUID(booking["booking_id"])
    )


async def test_a_title_with_a_line_break_still_gives_an_ics_file(system: System) -> None:
    """The schedule's title (which may hold a line break) named the booking's calendar as an X- property
    icalendar does not escape: GET .../calendar was a 500."""
    group = await seeded(system, 1)
    made = await schedule(system, group, title="Oudergesprekken\ngroep 6; ouders, kinderen")
    status, booking = await book(system, group, 0, made, 0)
    assert status == 201, booking
    status, ics = await system.call(
        "GET",
        "posts",
        f"/conference-bookings/{booking['booking_id']}/calendar",
        token_for(system, group.families[0][0]),
    )
    assert status == 200, ics
    assert isinstance(ics, bytes)
    events = Calendar.from_ical(ics).walk("VEVENT")
    assert len(events) == 1
    assert str(events[0]["summary"]).startswith("Oudergesprekken\ngroep 6; ouders, kinderen")


async def test_an_erased_childs_day_before_reminder_is_not_sent(system: System) -> None:
    """A child's erasure deleted their bookings in posts (posts/children.py) but published nothing: the
    day-before reminder of the erased child's conference stayed held (with the child's name in its
    context) and went out the day before a conference that no longer exists. Each booking now goes
    with a SlotCancelled naming nobody (cancelled_by None), which drops the reminder and tells no one."""
    school, group, teacher, parent = await make_class(system, "Groep 4")
    child = school.children["ouder-kind0"]
    body = schedule_body(Group(group_id=group), datetime.now(UTC))
    status, made = await system.call("POST", "posts", "/conferences", teacher.token, json=body)
    assert status == 201, made
    status, booking = await system.call(
        "POST",
        "posts",
        f"/conferences/{made['schedule_id']}/bookings",
        parent.token,
        json={"slot_id": made["slots"][0]["slot_id"], "child_id": str(child)},
    )
    assert status == 201, booking
    notifier = system.services["notifier"].app[POOL]
    held = """SELECT count(*) FROM notifications n JOIN deliveries d USING (notification_id)
              WHERE n.kind = 'day_before' AND n.context->>'booking_id' = $1 AND d.status IN ('pending', 'held')"""

    async def reminder_held() -> bool:
        return bool(await notifier.fetchval(held, booking["booking_id"]))

    await eventually(reminder_held, what="the notifier holds the day-before reminder")
    status, erased = await system.call("POST", "identity", f"/children/{child}/erasure", school.admin.token)
    assert status == 200, erased

    async def dropped() -> bool:
        return not await pool(system).fetchval(
            "SELECT count(*) FROM conference_bookings WHERE booking_id = $1", uuid.UUID(booking["booking_id"])
        )

    await eventually(dropped, what="posts dropped the erased child's booking")

    async def reminder_gone() -> bool:
        return not await notifier.fetchval(held, booking["booking_id"])

    await eventually(reminder_gone, within=10, what="the day-before reminder cancelled")
    cancelled = await pool(system).fetchval(
        """SELECT envelope->'payload' FROM outbox WHERE routing_key = 'posts.slot_cancelled'
             AND envelope->'payload'->>'booking_id' = $1""",
        booking["booking_id"],
    )
    assert cancelled is not None, "posts published SlotCancelled for the erased child's booking"
    payload = json.loads(cancelled) if isinstance(cancelled, str) else cancelled
    # The system cancelled it, told nobody, and named nobody.
    assert (payload["cancelled_by"], payload["guardian_ids"], payload["child_name"]) == (None, [], ""), (
        payload
    )


async def test_a_calendar_feeds_token_is_not_written_to_the_logs(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """The request log line carried the path, so /calendar/<token> put the feed's secret (stored only as
    a SHA-256) in the logs: at INFO whenever the request was slow (over 250 ms) or failed, always at
    DEBUG. A route whose path holds a {token} is logged by its template."""
    group = await seeded(system, 1)
    parent = token_for(system, group.families[0][0])
    status, feed = await system.call("POST", "posts", "/calendar-feeds", parent)
    assert status == 201, feed
    caplog.set_level(logging.DEBUG, logger="shared.middleware")
    status, _ = await system.call("GET", "posts", feed["url"])
    assert status == 200
    status, _ = await system.call("GET", "posts", f"/calendar/{'x' * 43}")
    assert status == 404
    logged = [r for r in caplog.records if r.name == "shared.middleware"]
    assert any(getattr(r, "path", None) == "/calendar/{token}" for r in logged), [r.__dict__ for r in logged]
    for record in logged:
        assert feed["token"] not in str(record.__dict__), record.__dict__


# --- helper lists --------------------------------------------------------------------------------


def a_list(**fields: Any) -> dict[str, Any]:
    return {
        "title": "Schoolreisje",
        "deadline": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "items": [{"title": "Rijden", "capacity": 2}, {"title": "Begeleiden", "capacity": 2}],
        **fields,
    }


async def test_an_activity_day_no_datetime_can_hold_is_refused_not_a_500(system: System) -> None:
    """activity_on 0001-01-01 was a 500 (its first instant in Europe/Amsterdam is before year 1 in UTC),
    on a new list and on an edit."""
    group = await seeded(system, 1)
    teacher = token_for(system, group.teacher)
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{group.group_id}/helper-lists",
        teacher,
        json=a_list(activity_on="0001-01-01"),
    )
    refused(status, body, "activity_on")
    status, made = await system.call(
        "POST", "posts", f"/groups/{group.group_id}/helper-lists", teacher, json=a_list()
    )
    assert status == 201, made
    status, body = await system.call(
        "PATCH", "posts", f"/helper-lists/{made['list_id']}", teacher, json={"activity_on": "0001-01-01"}
    )
    refused(status, body, "activity_on")


async def test_an_item_cannot_be_renamed_to_another_items_title(system: System) -> None:
    """A new list refuses two items of one title (they cannot be told apart), but an edit made them."""
    group = await seeded(system, 1)
    teacher = token_for(system, group.teacher)
    status, made = await system.call(
        "POST", "posts", f"/groups/{group.group_id}/helper-lists", teacher, json=a_list()
    )
    assert status == 201, made
    second = made["items"][1]["item_id"]
    path = f"/helper-lists/{made['list_id']}/items/{second}"
    status, body = await system.call("PATCH", "posts", path, teacher, json={"title": " rijden "})
    refused(status, body, "title")
    status, body = await system.call("PATCH", "posts", path, teacher, json={"title": "Begeleiden"})
    assert status == 200, body  # its own title again is fine


async def test_the_feed_post_that_lists_the_items_follows_an_item_edit(system: System) -> None:
    """A list without a description is announced in the feed by its items with their places
    ("Rijden (2)"); an item's new title or capacity left the feed's post saying the old ones."""
    group = await seeded(system, 1)
    teacher = token_for(system, group.teacher)
    status, made = await system.call(
        "POST", "posts", f"/groups/{group.group_id}/helper-lists", teacher, json=a_list()
    )
    assert status == 201, made
    post = "SELECT post_id, body FROM posts WHERE signup_id = $1"
    found = await pool(system).fetchrow(post, uuid.UUID(made["list_id"]))
    assert found["body"] == "Rijden (2)\nBegeleiden (2)"
    path = f"/helper-lists/{made['list_id']}/items/{made['items'][0]['item_id']}"
    status, body = await system.call(
        "PATCH", "posts", path, teacher, json={"title": "Autorijden", "capacity": 4}
    )
    assert status == 200, body
    found = await pool(system).fetchrow(post, uuid.UUID(made["list_id"]))
    assert found["body"] == "Autorijden (4)\nBegeleiden (2)"
    updates = await pool(system).fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'posts.post_updated' AND envelope->'payload'->>'post_id' = $1",
        str(found["post_id"]),
    )
    assert updates == 1


# --- a child who leaves -------------------------------------------------------------------------


async def on_bus(system: System, *events: Event) -> None:
    """Events as identity publishes them, on the real broker; until posts has handled each (its inbox)."""
    ids = []
    connection = await bus.connect(system.amqp_url, "test-signups-found")
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

    async def done() -> bool:
        found = await pool(system).fetchval(
            "SELECT count(DISTINCT event_id) FROM inbox WHERE event_id = ANY($1::uuid[])", ids
        )
        return bool(found == len(ids))

    await eventually(done, what="posts handled the events")


async def system_cancellations(system: System, schedule_id: str) -> dict[str, Any]:
    """The SlotCancelled posts published for the schedule's bookings, by booking id."""
    rows = await pool(system).fetch(
        "SELECT envelope->'payload' AS p FROM outbox "
        "WHERE routing_key = 'posts.slot_cancelled' AND envelope->'payload'->>'schedule_id' = $1",
        schedule_id,
    )
    payloads = [json.loads(r["p"]) if isinstance(r["p"], str) else r["p"] for r in rows]
    return {p["booking_id"]: p for p in payloads}


async def test_a_child_who_leaves_the_group_loses_their_booking_and_its_reminder(system: System) -> None:
    """A child moved to another group kept their conference booking: the slot stayed taken, the
    day-before reminder still went out, and the family got 404 for the booking they were reminded of.
    The membership copy's change now cancels it in the same transaction (SlotCancelled, cancelled_by
    None, nobody told): the slot is free and the notifier drops the reminder."""
    school, group, teacher, parent = await make_class(system, "Groep 4")
    other = await add_group(system, school, "Groep 5")
    child = school.children["ouder-kind0"]
    body = schedule_body(Group(group_id=group), datetime.now(UTC))
    status, made = await system.call("POST", "posts", "/conferences", teacher.token, json=body)
    assert status == 201, made
    status, booking = await system.call(
        "POST",
        "posts",
        f"/conferences/{made['schedule_id']}/bookings",
        parent.token,
        json={"slot_id": made["slots"][0]["slot_id"], "child_id": str(child)},
    )
    assert status == 201, booking
    notifier = system.services["notifier"].app[POOL]
    held = """SELECT count(*) FROM notifications n JOIN deliveries d USING (notification_id)
              WHERE n.kind = 'day_before' AND n.context->>'booking_id' = $1 AND d.status IN ('pending', 'held')"""

    async def reminder_held() -> bool:
        return bool(await notifier.fetchval(held, booking["booking_id"]))

    await eventually(reminder_held, what="the notifier holds the day-before reminder")
    status, placed = await system.call(
        "PUT", "identity", f"/children/{child}/placement", school.admin.token, json={"group_id": str(other)}
    )
    assert status == 200, placed

    async def freed() -> bool:
        status, view = await system.call("GET", "posts", f"/conferences/{made['schedule_id']}", teacher.token)
        assert status == 200, view
        return bool(view["slots"][0]["state"] == "free")

    await eventually(freed, what="the slot free again")

    async def reminder_gone() -> bool:
        return not await notifier.fetchval(held, booking["booking_id"])

    await eventually(reminder_gone, within=10, what="the day-before reminder cancelled")
    cancelled = (await system_cancellations(system, made["schedule_id"]))[booking["booking_id"]]
    assert (cancelled["cancelled_by"], cancelled["guardian_ids"], cancelled["child_name"]) == (None, [], "")
    # Nobody was sent a message about it (the family has no access to the schedule any more).
    told = await notifier.fetchval(
        """SELECT count(*) FROM notifications n JOIN deliveries d USING (notification_id)
           WHERE n.kind = 'slot_cancelled' AND n.context->>'booking_id' = $1""",
        booking["booking_id"],
    )
    assert told == 0
    status, _ = await system.call(
        "GET", "posts", f"/conference-bookings/{booking['booking_id']}/calendar", parent.token
    )
    assert status == 404


async def test_fewer_children_or_a_revoked_membership_cancels_just_those_bookings(system: System) -> None:
    """Re-granted with fewer children, a guardian keeps the bookings of the children still in the group
    and loses the other's; a revoked guardian loses their child's; a child still in the group through
    another guardian keeps theirs. Each cancelled booking frees its slot at once."""
    group = await seeded(system, 3)
    (parent, first), (other_parent, other_child), (third_parent, third_child) = group.families
    second = uuid.uuid4()
    async with pool(system).acquire() as conn:
        # The first family has two children; the third child has a second guardian.
        await conn.execute(
            "UPDATE memberships SET children = $3 WHERE group_id = $1 AND person_id = $2",
            group.group_id,
            parent,
            [first, second],
        )
        co_guardian = uuid.uuid4()
        await conn.execute(
            """INSERT INTO memberships (group_id, person_id, role, active, revision, children)
               VALUES ($1, $2, 'guardian', true, 1, $3)""",
            group.group_id,
            co_guardian,
            [third_child],
        )
    made = await schedule(system, group)
    bookings = {}
    for slot, (who, child) in enumerate(
        ((parent, first), (parent, second), (other_parent, other_child), (third_parent, third_child))
    ):
        status, booked = await system.call(
            "POST",
            "posts",
            f"/conferences/{made['schedule_id']}/bookings",
            token_for(system, who),
            json={"slot_id": made["slots"][slot]["slot_id"], "child_id": str(child)},
        )
        assert status == 201, booked
        bookings[child] = booked["booking_id"]
    await on_bus(
        system,
        MembershipGranted(
            group_id=group.group_id, person_id=parent, role="guardian", revision=2, children=[first]
        ),
        MembershipRevoked(group_id=group.group_id, person_id=other_parent, role="guardian", revision=2),
        MembershipRevoked(group_id=group.group_id, person_id=third_parent, role="guardian", revision=2),
    )
    status, view = await system.call(
        "GET", "posts", f"/conferences/{made['schedule_id']}", token_for(system, group.teacher)
    )
    assert status == 200, view
    assert [s["state"] for s in view["slots"][:4]] == ["taken", "free", "free", "taken"], view["slots"][:4]
    cancelled = await system_cancellations(system, made["schedule_id"])
    assert set(cancelled) == {bookings[second], bookings[other_child]}
    assert all(c["cancelled_by"] is None and c["guardian_ids"] == [] for c in cancelled.values())
    status, _ = await system.call(
        "DELETE", "posts", f"/conference-bookings/{bookings[second]}", token_for(system, parent)
    )
    assert status == 404
    # The freed slot is another family's to book at once.
    status, booked = await system.call(
        "POST",
        "posts",
        f"/conferences/{made['schedule_id']}/bookings",
        token_for(system, parent),
        json={"slot_id": made["slots"][1]["slot_id"], "child_id": str(first)},
    )
    assert status == 409, booked  # the first child keeps their one booking


async def test_a_parent_who_leaves_the_group_gives_their_place_to_the_first_waiting(system: System) -> None:
    """A parent whose child left held their place on a helper list until a teacher took them off (the
    first waiting was passed over, never promoted). Their sign-ups now end with the membership: the
    place goes to the first waiting, told once (SignupPromoted), and their place in line goes too."""
    group = await seeded(system, 4)
    teacher = token_for(system, group.teacher)
    status, made = await system.call(
        "POST", "posts", f"/groups/{group.group_id}/helper-lists", teacher,
        json=a_list(items=[{"title": "Rijden", "capacity": 1}, {"title": "Begeleiden", "capacity": 1}]),
    )  # fmt: skip
    assert status == 201, made
    driving, guiding = (i["item_id"] for i in made["items"])
    parents = [token_for(system, p) for p, _ in group.families]
    for who, item in ((0, driving), (1, driving), (2, driving), (3, guiding), (0, guiding)):
        status, body = await system.call(
            "PUT", "posts", f"/helper-lists/{made['list_id']}/items/{item}/signup", parents[who]
        )
        assert status == 200, body
    leaver = group.families[0][0]
    await on_bus(
        system, MembershipRevoked(group_id=group.group_id, person_id=leaver, role="guardian", revision=2)
    )
    status, signups = await system.call("GET", "posts", f"/helper-lists/{made['list_id']}/signups", teacher)
    assert status == 200, signups
    people = {
        item["item_id"]: [(p["person_id"], "signed_up") for p in item["signed_up"]]
        + [(p["person_id"], "waiting") for p in item["waiting"]]
        for item in signups["items"]
    }
    first_waiting, second_waiting = str(group.families[1][0]), str(group.families[2][0])
    assert people[driving] == [(first_waiting, "signed_up"), (second_waiting, "waiting")], people
    assert people[guiding] == [(str(group.families[3][0]), "signed_up")], people
    promoted = await pool(system).fetch(
        "SELECT envelope->'payload'->>'person_id' AS p FROM outbox "
        "WHERE routing_key = 'posts.signup_promoted' AND envelope->'payload'->>'list_id' = $1",
        made["list_id"],
    )
    assert [r["p"] for r in promoted] == [first_waiting]
    # Handled again (a redelivery, an older event): nothing more changes, nobody is told twice.
    await on_bus(
        system, MembershipRevoked(group_id=group.group_id, person_id=leaver, role="guardian", revision=2)
    )
    again = await pool(system).fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'posts.signup_promoted' AND envelope->'payload'->>'list_id' = $1",
        made["list_id"],
    )
    assert again == 1
