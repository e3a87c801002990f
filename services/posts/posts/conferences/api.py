"""Conferences' HTTP handlers: a teacher's (or admin's) schedule, families booking, moving and
cancelling, the teacher's overview, a family's schedules side by side, and calendars.

Who may (posts' own copies, read per request): the teachers of a schedule's groups and the admins of
its school are its staff; a guardian whose child the schedule is for sees it and books for that child
only. Anyone else gets 404 for the schedule and its bookings, as for one that does not exist. Times
come from the database's clock (one clock for every replica)."""

import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from posts.conferences import store
from posts.conferences.calendar import MEDIA_TYPE, calendar
from posts.conferences.domain import (
    BookingView,
    BookSlot,
    CalendarFeedList,
    CalendarFeedRef,
    CalendarFeedView,
    ChildSchedule,
    CreateSchedule,
    MoveBooking,
    MySchedules,
    NotBooked,
    Problem,
    ScheduleOverview,
    ScheduleView,
    SlotView,
    TeacherSlot,
    full_name,
    in_zone,
    plan_slots,
)
from posts.signups import announce, withdraw
from shared.app import POOL
from shared.contracts import ConferenceOpened, SlotBooked, SlotCancelled, SlotMoved
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.http import json_response, path_id, read_json
from shared.outbox import publish
from shared.tokens import require_caller

# A calendar feed's token: 32 random bytes, base64url (43 characters).
_TOKEN_LENGTH = 43


def _local(instant: datetime, time_zone: str) -> str:
    return f"{in_zone(instant, time_zone):%Y-%m-%d %H:%M} ({time_zone})"


def _booking_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every slot event (SlotBooked, SlotMoved, SlotCancelled) takes from a booking row as
    ``store.booking`` reads it: which booking, whose child, its guardians (to tell) and its start."""
    return {
        "booking_id": row["booking_id"],
        "schedule_id": row["schedule_id"],
        "school_id": row["school_id"],
        "child_id": row["child_id"],
        "child_name": row["given_name"],
        "title": row["title"],
        "guardian_ids": list(row["guardian_ids"]),
        "starts_at": row["starts_at"],
    }


def _slot_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """``_booking_fields`` and what SlotBooked and SlotMoved also say of the slot: group, place, end."""
    return {
        **_booking_fields(row),
        "group_id": row["group_id"],
        "location": row["location"],
        "ends_at": row["ends_at"],
    }


def booking_view(row: Mapping[str, Any]) -> BookingView:
    tz = row["time_zone"]
    return BookingView(
        booking_id=row["booking_id"],
        schedule_id=row["schedule_id"],
        slot_id=row["slot_id"],
        child_id=row["child_id"],
        child_name=row["given_name"],
        group_id=row["group_id"],
        title=row["title"],
        location=row["location"],
        starts_at=in_zone(row["starts_at"], tz),
        ends_at=in_zone(row["ends_at"], tz),
        booked_by=row["booked_by"],
        booked_at=row["booked_at"],
        moved_at=row["moved_at"],
    )


def _schedule_view(
    schedule: asyncpg.Record, slots: list[asyncpg.Record], mine: set[uuid.UUID]
) -> ScheduleView:
    """The schedule with each slot free, taken, or yours (booked for one of ``mine``)."""
    tz = schedule["time_zone"]
    return ScheduleView(
        schedule_id=schedule["schedule_id"],
        school_id=schedule["school_id"],
        school_year=schedule["school_year"],
        time_zone=tz,
        group_ids=list(schedule["group_ids"]),
        title=schedule["title"],
        location=schedule["location"],
        slot_minutes=schedule["slot_minutes"],
        break_minutes=schedule["break_minutes"],
        opens_at=in_zone(schedule["opens_at"], tz),
        early_opens_at=in_zone(schedule["early_opens_at"], tz) if schedule["early_opens_at"] else None,
        closes_at=in_zone(schedule["closes_at"], tz),
        change_deadline=in_zone(schedule["change_deadline"], tz),
        created_at=schedule["created_at"],
        slots=[
            SlotView(
                slot_id=s["slot_id"],
                starts_at=in_zone(s["starts_at"], tz),
                ends_at=in_zone(s["ends_at"], tz),
                state="free" if s["booking_id"] is None else "yours" if s["child_id"] in mine else "taken",
                booking_id=s["booking_id"] if s["child_id"] in mine else None,
                child_id=s["child_id"] if s["child_id"] in mine else None,
            )
            for s in slots
        ],
    )


async def _visible(conn: asyncpg.Connection, schedule_id: uuid.UUID, person_id: uuid.UUID) -> asyncpg.Record:
    """The schedule as ``store.access`` reads it, if the person is its staff or a guardian of a child
    it is for; NotFound (404) otherwise."""
    row = await store.access(conn, schedule_id, person_id)
    if row is None or not (row["staff"] or row["children"]):
        raise NotFound("no such conference schedule")
    return row


def _opens_for(row: asyncpg.Record) -> datetime:
    """When booking opens for the caller: early for a family with several children at the school."""
    opens: datetime = row["opens_at"]
    if row["several_children"] and row["early_opens_at"] is not None:
        opens = row["early_opens_at"]
    return opens


def _check_window(row: asyncpg.Record) -> None:
    """A guardian books inside the window: 409 before it opens for them (saying when) or after it closed."""
    now, tz = row["now"], row["time_zone"]
    opens = _opens_for(row)
    if now < opens:
        raise Conflict(
            f"booking for {row['title']} opens for you at {_local(opens, tz)}",
            {"opens_at": in_zone(opens, tz).isoformat(), "early": opens != row["opens_at"]},
        )
    if now >= row["closes_at"]:
        raise Conflict(
            f"booking for {row['title']} closed at {_local(row['closes_at'], tz)}; ask the teacher",
            {"closes_at": in_zone(row["closes_at"], tz).isoformat()},
        )


def _check_deadline(row: asyncpg.Record, now: datetime, what: str) -> None:
    tz = row["time_zone"]
    if now >= row["change_deadline"]:
        raise Conflict(
            f"bookings could be {what} until {_local(row['change_deadline'], tz)}; ask the teacher",
            {"change_deadline": in_zone(row["change_deadline"], tz).isoformat()},
        )


async def create_schedule(request: web.Request) -> web.Response:
    """A conference schedule for groups of one school and year, announced in each group's feed (a post
    with a sign-up reference, not counted against the posts per day) and to the families
    (ConferenceOpened). 404 for a group the caller is not in, 403 for a parent, 422 for bad times."""
    caller = require_caller(request)
    command = await read_json(request, CreateSchedule)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        groups = await store.creator_groups(conn, command.group_ids, caller.person_id)
        seen = {g["group_id"] for g in groups if g["role"] is not None or g["admin"]}
        unknown = [str(g) for g in command.group_ids if g not in seen]
        if unknown:
            raise NotFound("no such group", {"group_ids": unknown})
        if any(g["role"] != "teacher" and not g["admin"] for g in groups):
            raise Forbidden("only the groups' teachers and the school's admins plan conferences")
        if len({g["school_id"] for g in groups}) > 1 or len({g["school_year"] for g in groups}) > 1:
            raise ValidationFailed(
                "a schedule is for groups of one school and one school year",
                [{"field": "group_ids", "problem": "groups of more than one school or school year"}],
            )
        school_id, school_year, time_zone = (
            groups[0]["school_id"],
            groups[0]["school_year"],
            groups[0]["time_zone"],
        )
        slots, problems = plan_slots(command, time_zone)
        now: datetime = await conn.fetchval("SELECT now()")
        if command.closes_at <= now:
            problems.append(Problem("closes_at", "the booking window has already closed"))
        if command.change_deadline <= now:
            problems.append(Problem("change_deadline", "the deadline to move or cancel has already passed"))
        if slots and slots[0][0] <= now:
            problems.append(Problem("days", "the first conference has already begun"))
        if problems:
            raise ValidationFailed("the schedule is not accepted", [p.as_detail() for p in problems])
        schedule_id = uuid.uuid4()
        fields = command.model_dump(exclude={"group_ids", "days"})
        await store.insert_schedule(
            conn, schedule_id, school_id, school_year, fields, command.group_ids, slots, caller.person_id
        )
        children = await store.schedule_children(conn, schedule_id)
        if command.child_ids is not None:
            known = {c["child_id"] for c in children}
            missing = [str(c) for c in command.child_ids if c not in known]
            if missing:
                raise ValidationFailed(
                    "some children are not in these groups",
                    [{"field": "child_ids", "problem": f"not a child of these groups: {', '.join(missing)}"}],
                )
        opens = in_zone(command.opens_at, time_zone)
        body = (
            f"Plan een gesprek{' in ' + command.location if command.location else ''} tussen "
            f"{in_zone(slots[0][0], time_zone):%d-%m-%Y} en {in_zone(slots[-1][1], time_zone):%d-%m-%Y}. "
            f"Inschrijven kan vanaf {opens:%d-%m-%Y %H:%M} tot {in_zone(command.closes_at, time_zone):%d-%m-%Y %H:%M}."
        )
        await announce(
            conn,
            kind="conference",
            signup_id=schedule_id,
            group_ids=command.group_ids,
            author_id=caller.person_id,
            title=command.title,
            body=body,
        )
        guardians = sorted({g for c in children for g in c["guardian_ids"]})
        event = ConferenceOpened(
            schedule_id=schedule_id,
            school_id=school_id,
            group_ids=command.group_ids,
            title=command.title,
            opens_at=command.opens_at,
            early_opens_at=command.early_opens_at,
            closes_at=command.closes_at,
            guardian_ids=guardians,
        )
        await publish(conn, event, school_id)
        row = await _visible(conn, schedule_id, caller.person_id)
        view = _schedule_view(row, await store.slots(conn, schedule_id), set())
    return json_response(view, status=201)


async def get_schedule(request: web.Request) -> web.Response:
    """The schedule for its staff and for guardians of its children: other families' slots only "taken"."""
    caller = require_caller(request)
    schedule_id = path_id(request, "schedule_id")
    async with request.app[POOL].acquire() as conn:
        row = await _visible(conn, schedule_id, caller.person_id)
        view = _schedule_view(row, await store.slots(conn, schedule_id), set(row["children"]))
    return json_response(view)


async def get_overview(request: web.Request) -> web.Response:
    """The teacher's view: each slot with the child's name, and the children not booked yet with their
    guardians (to book on their behalf). 403 for a guardian, 404 for anyone else."""
    caller = require_caller(request)
    schedule_id = path_id(request, "schedule_id")
    async with request.app[POOL].acquire() as conn:
        row = await _visible(conn, schedule_id, caller.person_id)
        if not row["staff"]:
            raise Forbidden("only the groups' teachers and the school's admins see who booked")
        slot_rows = await store.slots(conn, schedule_id)
        children = await store.schedule_children(conn, schedule_id)
        names = await _names(conn, [c["child_id"] for c in children])
    tz = row["time_zone"]
    booked = {s["child_id"] for s in slot_rows if s["child_id"] is not None}
    slots = [
        TeacherSlot(
            slot_id=s["slot_id"],
            starts_at=in_zone(s["starts_at"], tz),
            ends_at=in_zone(s["ends_at"], tz),
            booking=None if s["booking_id"] is None else booking_view(_with(s, row)),
        )
        for s in slot_rows
    ]
    not_booked = [
        NotBooked(
            child_id=c["child_id"],
            child_name=names.get(c["child_id"], ""),
            group_id=c["group_id"],
            guardian_ids=sorted(c["guardian_ids"]),
        )
        for c in children
        if c["child_id"] not in booked
    ]
    overview = ScheduleOverview(
        schedule=_schedule_view(row, slot_rows, set()), slots=slots, not_booked=not_booked
    )
    return json_response(overview)


def _with(slot: asyncpg.Record, schedule: asyncpg.Record) -> dict[str, object]:
    """A slot row with its booking, as the fields booking_view reads."""
    return {
        **dict(slot),
        "schedule_id": schedule["schedule_id"],
        "title": schedule["title"],
        "location": schedule["location"],
        "time_zone": schedule["time_zone"],
        "given_name": full_name((slot["given_name"], slot["family_name"])),
    }


async def _names(conn: asyncpg.Connection, child_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.fetch(
        "SELECT child_id, given_name, family_name FROM children WHERE child_id = ANY($1::uuid[])", child_ids
    )
    return {r["child_id"]: full_name((r["given_name"], r["family_name"])) for r in rows}


async def my_schedules(request: web.Request) -> web.Response:
    """The caller's children's schedules side by side (across groups and teachers), soonest first, so a
    family books back to back; each with when booking opens for them and their booking, if any."""
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn:
        pairs = await store.my_schedules(conn, caller.person_id)
        names = await _names(conn, list({p["child_id"] for p in pairs}))
        entries: list[ChildSchedule] = []
        several = False
        for schedule_id in dict.fromkeys(p["schedule_id"] for p in pairs):
            row = await store.access(conn, schedule_id, caller.person_id)
            if row is None:
                continue
            several = several or bool(row["several_children"])
            slot_rows = await store.slots(conn, schedule_id)
            view = _schedule_view(row, slot_rows, set(row["children"]))
            for pair in (p for p in pairs if p["schedule_id"] == schedule_id):
                mine = next((s for s in slot_rows if s["child_id"] == pair["child_id"]), None)
                entries.append(
                    ChildSchedule(
                        child_id=pair["child_id"],
                        child_name=names.get(pair["child_id"], ""),
                        group_id=pair["group_id"],
                        opens_for_you_at=in_zone(_opens_for(row), row["time_zone"]),
                        booking=None if mine is None else booking_view(_with(mine, row)),
                        schedule=view,
                    )
                )
    entries.sort(
        key=lambda e: (
            e.schedule.slots[0].starts_at if e.schedule.slots else e.schedule.closes_at,
            str(e.child_id),
        )
    )
    return json_response(MySchedules(several_children=several, schedules=entries))


async def book(request: web.Request) -> web.Response:
    """Book a slot for a child: one per child and schedule, one booking per slot, whatever the
    concurrency (409 saying which). Guardians for their own children inside the booking window (409
    before it opens for them, with ``opens_at``); the schedule's staff for any of its children."""
    caller = require_caller(request)
    schedule_id = path_id(request, "schedule_id")
    command = await read_json(request, BookSlot)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        # One round trip for who the caller is here, the child's group and the slot.
        row = await store.access(
            conn, schedule_id, caller.person_id, command.child_id, command.slot_id, lock=True
        )
        if row is None or not (row["staff"] or row["children"]):
            raise NotFound("no such conference schedule")
        staff = row["staff"]
        if row["child_group"] is None or (not staff and command.child_id not in row["children"]):
            raise NotFound("no such child in this schedule")
        if row["slot_starts_at"] is None:
            raise ValidationFailed(
                "no such slot", [{"field": "slot_id", "problem": "not a slot of this schedule"}]
            )
        if not staff:
            _check_window(row)
        if row["slot_starts_at"] <= row["now"]:
            raise Conflict("that slot has passed", {"slot_id": str(command.slot_id)})
        booked = await store.book(
            conn, schedule_id, command.slot_id, command.child_id, row["child_group"], caller.person_id
        )
        if booked is None:
            existing = await store.booking_of_child(conn, schedule_id, command.child_id)
            if existing is not None:
                raise Conflict(
                    "this child already has a slot in this schedule; move that booking instead",
                    {"booking_id": str(existing)},
                )
            raise Conflict("that slot has just been taken; choose another", {"slot_id": str(command.slot_id)})
        event = SlotBooked(**_slot_fields(booked), booked_by=caller.person_id)
        await publish(conn, event, booked["school_id"])
    return json_response(booking_view(booked), status=201)


async def _changeable(
    conn: asyncpg.Connection, booking_id: uuid.UUID, person_id: uuid.UUID, what: str
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """The booking (locked) and its schedule's access row, if the person may change it now: its
    staff at any time, a guardian of the child until the deadline (409 after it); 404 otherwise."""
    booked = await store.booking(conn, booking_id, lock=True)
    if booked is None:
        raise NotFound("no such booking")
    row = await store.access(conn, booked["schedule_id"], person_id)
    if row is None or not (row["staff"] or booked["child_id"] in row["children"]):
        raise NotFound("no such booking")
    if not row["staff"]:
        _check_deadline(row, row["now"], what)
    return booked, row


async def move_booking(request: web.Request) -> web.Response:
    """Move a booking to another free slot of its schedule (guardians until the move/cancel deadline,
    staff always); 409 when that slot is taken or the deadline passed."""
    caller = require_caller(request)
    booking_id = path_id(request, "booking_id")
    command = await read_json(request, MoveBooking)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        booked, row = await _changeable(conn, booking_id, caller.person_id, "moved")
        slot = await store.slot(conn, booked["schedule_id"], command.slot_id)
        if slot is None:
            raise ValidationFailed(
                "no such slot", [{"field": "slot_id", "problem": "not a slot of this booking's schedule"}]
            )
        if slot["slot_id"] == booked["slot_id"]:
            return json_response(booking_view(booked))
        if slot["starts_at"] <= row["now"]:
            raise Conflict("that slot has passed", {"slot_id": str(command.slot_id)})
        if not await store.move(conn, booking_id, command.slot_id):
            raise Conflict("that slot is taken; choose another", {"slot_id": str(command.slot_id)})
        moved = await store.booking(conn, booking_id)
        assert moved is not None
        event = SlotMoved(
            **_slot_fields(moved), previous_starts_at=booked["starts_at"], moved_by=caller.person_id
        )
        await publish(conn, event, moved["school_id"])
    return json_response(booking_view(moved))


async def cancel_booking(request: web.Request) -> web.Response:
    """Cancel a booking (guardians until the move/cancel deadline, staff always); the slot is free again."""
    caller = require_caller(request)
    booking_id = path_id(request, "booking_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        booked, _ = await _changeable(conn, booking_id, caller.person_id, "cancelled")
        await store.cancel(conn, booking_id)
        event = SlotCancelled(**_booking_fields(booked), cancelled_by=caller.person_id)
        await publish(conn, event, booked["school_id"])
    return web.Response(status=204)


async def withdraw_schedule(request: web.Request) -> web.Response:
    """Withdraw a schedule (its staff): every booking is cancelled (SlotCancelled to each family), the
    posts announcing it leave the feeds, and the schedule is gone (404 from then on)."""
    caller = require_caller(request)
    schedule_id = path_id(request, "schedule_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await _visible(conn, schedule_id, caller.person_id)
        if not row["staff"]:
            raise Forbidden("only the groups' teachers and the school's admins withdraw a schedule")
        # Bookings under way finish first and are cancelled with the rest; none slips in after.
        await store.lock_schedule(conn, schedule_id)
        for booked in await store.schedule_bookings(conn, schedule_id):
            event = SlotCancelled(**_booking_fields(booked), cancelled_by=caller.person_id)
            await publish(conn, event, booked["school_id"])
        await withdraw(conn, schedule_id)
        await store.delete_schedule(conn, schedule_id)
    return web.Response(status=204)


def _ics(data: bytes, filename: str) -> web.Response:
    return web.Response(
        body=data,
        content_type=MEDIA_TYPE,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


async def booking_ics(request: web.Request) -> web.Response:
    """One booking as an .ics file (RFC 5545) in the school's time zone, for its family and staff."""
    caller = require_caller(request)
    booking_id = path_id(request, "booking_id")
    async with request.app[POOL].acquire() as conn:
        booked = await store.booking(conn, booking_id)
        if booked is None:
            raise NotFound("no such booking")
        row = await store.access(conn, booked["schedule_id"], caller.person_id)
        if row is None or not (row["staff"] or booked["child_id"] in row["children"]):
            raise NotFound("no such booking")
    return _ics(calendar([booked], booked["title"]), "oudergesprek.ics")


async def create_feed(request: web.Request) -> web.Response:
    """A personal calendar feed URL (auth none, the token is the key): the caller's children's bookings
    and those of the groups they teach. The token is shown once and stored only as a hash."""
    caller = require_caller(request)
    token = secrets.token_urlsafe(32)
    feed_id = uuid.uuid4()
    async with request.app[POOL].acquire() as conn:
        created = await store.add_feed(conn, feed_id, caller.person_id, token)
    view = CalendarFeedView(feed_id=feed_id, url=f"/calendar/{token}", token=token, created_at=created)
    return json_response(view, status=201)


async def list_feeds(request: web.Request) -> web.Response:
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn:
        rows = await store.feeds(conn, caller.person_id)
    return json_response(
        CalendarFeedList(
            feeds=[CalendarFeedRef(feed_id=r["feed_id"], created_at=r["created_at"]) for r in rows]
        )
    )


async def revoke_feed(request: web.Request) -> web.Response:
    """Revoke a calendar feed: its URL answers 404 from now on."""
    caller = require_caller(request)
    feed_id = path_id(request, "feed_id")
    async with request.app[POOL].acquire() as conn:
        if not await store.revoke_feed(conn, feed_id, caller.person_id):
            raise NotFound("no such calendar feed")
    return web.Response(status=204)


async def feed_ics(request: web.Request) -> web.Response:
    """The calendar feed of the token's owner (no access token: calendar apps cannot send one). 404 for
    a token that is unknown or revoked."""
    token = request.match_info["token"]
    if len(token) != _TOKEN_LENGTH or not token.isascii():
        raise NotFound("no such calendar feed")
    async with request.app[POOL].acquire() as conn:
        person_id = await store.feed_owner(conn, token)
        if person_id is None:
            raise NotFound("no such calendar feed")
        rows = await store.person_bookings(conn, person_id)
    return _ics(calendar(rows, "Klaspost oudergesprekken"), "klaspost.ics")
