"""What the notifier does with other services' events: keep its copy of accounts, schools, groups
and memberships, turn a published post into deliveries to every parent of the group, queue the
one-off mails (invitations, password links) identity asks for, and turn posts' sign-up and policy
events into notices (conference bookings, reminders, promotions) by each person's preferences."""

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from notifier import erasure, message_store, store
from notifier.delivery import NOTIFY_CHANNEL
from notifier.mails import MailKind
from notifier.notices import CATEGORY
from notifier.preferences import DEFAULT_CHOICE, Choice, wall_clock_instant
from notifier.settings import Settings
from shared.app import settings_of
from shared.consumer import Handlers
from shared.contracts import (
    AccountChanged,
    BookingReminderDue,
    ChildErased,
    ConferenceOpened,
    GroupChanged,
    GroupQuiet,
    InvitationIssued,
    PasswordResetRequested,
    PostDeleted,
    PostPublished,
    PostUpdated,
    SchoolChanged,
    SignupPromoted,
    SlotBooked,
    SlotCancelled,
    SlotMoved,
)
from shared.envelope import Envelope
from shared.membership_copy import keep_membership_copy, role_in

log = logging.getLogger(__name__)

# What an operator does when an invitation or reset comes without its secret (a parked event
# replayed: shared/consumer.py withholds secrets from parked copies). README, "Parked events".
NEW_INVITATION = (
    "send a new access code in identity: POST /guardianships/{guardianship_id}/invitation (a school "
    "admin; the guardianship is identity's access_codes row whose code_id is the invitation_id)"
)
NEW_RESET = "ask identity for a new link: POST /auth/password-reset with the account's email address"


async def _membership_changed(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> None:
    # A grant through a child erased before it was handled does not bring the child's id back.
    await erasure.drop_erased_children(conn, group_id, person_id)
    # Out of the group (as the copy says now: events come out of order): what is held for them of
    # its messages is not sent.
    if await role_in(conn, group_id, person_id) is None:
        await message_store.drop_held_of_group(conn, group_id, person_id)


handlers = Handlers()
# With the children: a family with several children may book a conference early (ConferenceOpened).
keep_membership_copy(handlers, with_children=True, after=_membership_changed)

# The day-before reminder of a conference slot goes out at this school-local time the day before.
DAY_BEFORE_AT = time(9, 0)


async def default_zone(app: web.Application) -> AsyncIterator[None]:
    """App context: the handlers read a school the copy does not know yet in the deployment's
    DEFAULT_TIME_ZONE, the zone the schedule and the mails read it in (one setting, not two)."""
    message_store.use_default_zone(settings_of(app, Settings).default_time_zone)
    yield


@handlers.on(AccountChanged)
async def account_changed(conn: asyncpg.Connection, _env: Envelope, event: AccountChanged) -> None:
    await store.upsert_person(
        conn, event.person_id, event.email, event.display_name, event.locale, event.revision
    )
    # Messages fanned out before the account reached the copy are owed to the person (message_store).
    if await message_store.deliver_awaited(conn, event.person_id, datetime.now(UTC)):
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


@handlers.on(SchoolChanged)
async def school_changed(conn: asyncpg.Connection, _env: Envelope, event: SchoolChanged) -> None:
    await store.upsert_school(
        conn, event.school_id, event.name, event.time_zone, event.locale, event.revision
    )
    await message_store.set_digest_time(conn, event.school_id, event.digest_time, event.revision)


@handlers.on(GroupChanged)
async def group_changed(conn: asyncpg.Connection, _env: Envelope, event: GroupChanged) -> None:
    await store.upsert_group(conn, event.group_id, event.school_id, event.name, event.revision)


@handlers.on(PostPublished)
async def post_published(conn: asyncpg.Connection, env: Envelope, event: PostPublished) -> None:
    created = await store.create_post_notification(
        conn,
        uuid.uuid4(),
        env.school_id,
        event.group_id,
        event.post_id,
        event.excerpt,
        env.correlation_id,
        urgent=event.urgent,
        author_id=event.author_id,
        title=event.title,
    )
    if created:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


@handlers.on(PostUpdated)
async def post_updated(conn: asyncpg.Connection, _env: Envelope, event: PostUpdated) -> None:
    # Nobody is notified again; what is still to be sent says what the post says now, digests too.
    await store.update_excerpt(conn, event.post_id, event.excerpt)
    await message_store.follow_post_edit(conn, event.post_id, event.title, event.excerpt)


@handlers.on(PostDeleted)
async def post_deleted(conn: asyncpg.Connection, _env: Envelope, event: PostDeleted) -> None:
    # A deleted post disappears everywhere: what was not sent yet of it is not sent (a delivery a
    # sender holds at this very moment may still go out), and no digest carries it any more.
    await store.cancel_post_deliveries(conn, event.post_id)
    await message_store.forget_post(conn, event.post_id)
    await message_store.forget_awaited(conn, post_id=event.post_id)


@handlers.on(ChildErased)
async def child_erased(conn: asyncpg.Connection, _env: Envelope, event: ChildErased) -> None:
    # The child's name leaves every notice about them; what was still to be sent of those is not sent.
    await erasure.forget_child(conn, event.child_id, event.school_id)
    await message_store.forget_awaited(conn, child_id=event.child_id)


@handlers.on(InvitationIssued)
async def invitation_issued(conn: asyncpg.Connection, env: Envelope, event: InvitationIssued) -> None:
    context: dict[str, Any] = {
        "school_name": event.school_name,
        "child_name": event.child_name,
        "expires_at": _utc(event.expires_at).isoformat(),
        "reminder": event.reminder,
    }
    # The child's id: a ChildErased finds the mails that name the child by it (erasure.py). An event
    # published before InvitationIssued carried it has none: its mail is sent as ever, but no
    # erasure can find it (erasure.py says what that leaves).
    if event.child_id is not None:
        context["child_id"] = str(event.child_id)
    kind: MailKind = "invitation_reminder" if event.reminder else "invitation"
    if event.child_id is not None and await erasure.is_erased(conn, event.child_id):
        # Erased before this was handled: no mail, and the row keeps neither code nor name.
        await _queue_mail(conn, env, kind, event.email, event.locale, context | {"child_name": ""}, "",
                          event.school_id, None)  # fmt: skip
        await erasure.refuse_mail(conn, env.event_id)
        return
    if not event.access_code:
        log.warning(
            "invitation without its access code, not mailed (a parked event replayed?): %s",
            NEW_INVITATION,
            extra={"invitation_id": str(event.invitation_id), "school_id": str(event.school_id)},
        )
    await _queue_mail(
        conn, env, kind, event.email, event.locale, context, event.access_code, event.school_id, None
    )


@handlers.on(PasswordResetRequested)
async def password_reset_requested(
    conn: asyncpg.Connection, env: Envelope, event: PasswordResetRequested
) -> None:
    context = {"school_name": event.school_name, "expires_at": _utc(event.expires_at).isoformat()}
    kind: MailKind = "welcome" if event.purpose == "welcome" else "password_reset"
    if not event.reset_token:
        log.warning(
            "password link without its token, not mailed (a parked event replayed?): %s",
            NEW_RESET,
            extra={"request_id": str(event.request_id), "person_id": str(event.person_id)},
        )
    await _queue_mail(
        conn, env, kind, event.email, event.locale, context, event.reset_token, env.school_id, event.person_id
    )


@handlers.on(GroupQuiet)
async def group_quiet(conn: asyncpg.Connection, env: Envelope, event: GroupQuiet) -> None:
    # Once per group and week, however often the weekly job looks (and whatever id its event has).
    context = {
        "group_id": str(event.group_id),
        "group_name": event.group_name,
        "week": event.week,
        "posts_this_week": event.posts_this_week,
        "min_posts_per_week": event.min_posts_per_week,
    }
    key = f"group_quiet:{event.group_id}:{event.week}"
    # By email unless the teacher chose otherwise for reminders (the contract: "emails each teacher").
    await _notice(
        conn, env, "group_quiet", event.school_id, event.teacher_ids, context, key,
        group_id=event.group_id, default=Choice("email"),
    )  # fmt: skip


@handlers.on(ConferenceOpened)
async def conference_opened(conn: asyncpg.Connection, env: Envelope, event: ConferenceOpened) -> None:
    # Each guardian hears when booking opens for them: families with several children early.
    early: set[uuid.UUID] = set()
    if event.early_opens_at is not None:
        early = await message_store.families_with_several_children(conn, event.school_id, event.guardian_ids)
    send_at = {
        person: _utc(event.early_opens_at if person in early and event.early_opens_at else event.opens_at)
        for person in event.guardian_ids
    }
    context = {
        "schedule_id": str(event.schedule_id),
        "title": event.title,
        "opens_at": _iso(event.opens_at),
        "closes_at": _iso(event.closes_at),
    }
    key = f"conference_opened:{event.schedule_id}"
    await _notice(
        conn, env, "conference_opened", event.school_id, event.guardian_ids, context, key, send_at=send_at
    )


@handlers.on(SlotBooked)
async def slot_booked(conn: asyncpg.Connection, env: Envelope, event: SlotBooked) -> None:
    context = _booking_context(event)
    await _notice(
        conn, env, "slot_booked", event.school_id, event.guardian_ids, context, f"slot_booked:{env.event_id}"
    )
    # Handled after a move of the same booking (events may arrive out of order): the move's reminder,
    # for the newer time, stands.
    if not await message_store.day_before_waiting(conn, event.booking_id):
        await _day_before(conn, env, event, context)


@handlers.on(SlotMoved)
async def slot_moved(conn: asyncpg.Connection, env: Envelope, event: SlotMoved) -> None:
    context = _booking_context(event) | {"previous_starts_at": _iso(event.previous_starts_at)}
    await _notice(
        conn, env, "slot_moved", event.school_id, event.guardian_ids, context, f"slot_moved:{env.event_id}"
    )
    # The reminder of the old time is replaced by one for the new time.
    await message_store.cancel_notifications(
        conn, f"day_before:{event.booking_id}:", "cancelled: the booking moved"
    )
    await _day_before(conn, env, event, context)


@handlers.on(SlotCancelled)
async def slot_cancelled(conn: asyncpg.Connection, env: Envelope, event: SlotCancelled) -> None:
    await message_store.cancel_notifications(
        conn, f"day_before:{event.booking_id}:", "cancelled: the booking was cancelled"
    )
    context = {
        "schedule_id": str(event.schedule_id),
        "booking_id": str(event.booking_id),
        "title": event.title,
        # The child's id: a ChildErased finds the notices that name the child by it (erasure.py).
        "child_id": str(event.child_id),
        "child_name": event.child_name,
        "starts_at": _iso(event.starts_at),
    }
    # A booking is cancelled once: told once, and no reminder is made for it afterwards.
    key = f"slot_cancelled:{event.booking_id}"
    await _notice(conn, env, "slot_cancelled", event.school_id, event.guardian_ids, context, key)


@handlers.on(BookingReminderDue)
async def booking_reminder_due(conn: asyncpg.Connection, env: Envelope, event: BookingReminderDue) -> None:
    context = {
        "schedule_id": str(event.schedule_id),
        "title": event.title,
        "child_id": str(event.child_id),
        "child_name": event.child_name,
        "closes_at": _iso(event.closes_at),
    }
    key = f"booking_reminder:{event.schedule_id}:{event.child_id}"
    await _notice(conn, env, "booking_reminder", event.school_id, event.guardian_ids, context, key)


@handlers.on(SignupPromoted)
async def signup_promoted(conn: asyncpg.Connection, env: Envelope, event: SignupPromoted) -> None:
    # Exactly once: a sign-up is promoted from the waiting list at most once.
    context = {
        "list_id": str(event.list_id),
        "item_id": str(event.item_id),
        "list_title": event.list_title,
        "item_title": event.item_title,
        "deadline": _iso(event.deadline) if event.deadline else "",
    }
    key = f"signup_promoted:{event.signup_id}"
    await _notice(
        conn,
        env,
        "signup_promoted",
        event.school_id,
        [event.person_id],
        context,
        key,
        group_id=event.group_id,
    )


def _booking_context(event: SlotBooked | SlotMoved) -> dict[str, Any]:
    return {
        "schedule_id": str(event.schedule_id),
        "booking_id": str(event.booking_id),
        "title": event.title,
        "child_id": str(event.child_id),
        "child_name": event.child_name,
        "teacher_names": list(event.teacher_names),
        "location": event.location,
        "starts_at": _iso(event.starts_at),
        "ends_at": _iso(event.ends_at),
    }


async def _day_before(
    conn: asyncpg.Connection, env: Envelope, event: SlotBooked | SlotMoved, context: dict[str, Any]
) -> None:
    """Hold the reminder until DAY_BEFORE_AT the day before the slot (school-local); at once when
    that moment passed but the day of the slot has not begun; none when the slot is today or past.
    Both moments are the first instants the school's clocks show those times (wall_clock_instant: a
    time skipped by daylight saving is the first instant after the gap, a repeated one its first
    occurrence; a school whose day begins at 01:00 when the clocks skip midnight begins it then)."""
    zone = await message_store.school_zone(conn, event.school_id, message_store.DEFAULT_ZONE)
    slot_day = _utc(event.starts_at).astimezone(zone).date()
    remind_at = wall_clock_instant(slot_day - timedelta(days=1), DAY_BEFORE_AT, zone)
    slot_day_begins = wall_clock_instant(slot_day, time(0, 0), zone)
    if datetime.now(UTC) >= slot_day_begins:
        return
    if await message_store.notification_exists(conn, f"slot_cancelled:{event.booking_id}"):
        return  # the cancellation was handled first
    send_at = {person: remind_at for person in event.guardian_ids}
    key = f"day_before:{event.booking_id}:{env.event_id}"
    await _notice(conn, env, "day_before", event.school_id, event.guardian_ids, context, key, send_at=send_at)


async def _notice(
    conn: asyncpg.Connection,
    env: Envelope,
    kind: str,
    school_id: uuid.UUID,
    person_ids: list[uuid.UUID],
    context: dict[str, Any],
    dedupe_key: str,
    *,
    group_id: uuid.UUID | None = None,
    send_at: dict[uuid.UUID, datetime] | None = None,
    default: Choice = DEFAULT_CHOICE,
) -> None:
    """One notification of kind with its deliveries to person_ids by their preferences; nothing when
    a notification with dedupe_key exists (the event, or its twin, was handled before), or when it
    names a child erased before (erasure.py: posts ended the child's bookings and sign-ups with the
    erasure, so there is nothing left to confirm or remind a parent of)."""
    if "child_id" in context and await erasure.is_erased(conn, uuid.UUID(context["child_id"])):
        log.info("no notice about an erased child", extra={"kind": kind, "event_id": str(env.event_id)})
        return
    notification_id = uuid.uuid4()
    created = await message_store.create_notification(
        conn,
        notification_id,
        kind,
        school_id=school_id,
        group_id=group_id,
        context=context,
        dedupe_key=dedupe_key,
        correlation_id=env.correlation_id,
    )
    if not created:
        return
    await message_store.fan_out(
        conn,
        notification_id,
        person_ids,
        CATEGORY[kind],
        school_id=school_id,
        default_zone=message_store.DEFAULT_ZONE,
        now=datetime.now(UTC),
        send_at=send_at,
        default=default,
    )
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat()


def _utc(moment: datetime) -> datetime:
    """A moment without a zone is taken as UTC, so that it can be compared and shown in any zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _queue_mail(
    conn: asyncpg.Connection,
    env: Envelope,
    kind: MailKind,
    to_email: str,
    locale: str,
    context: dict[str, Any],
    secret: str,
    school_id: uuid.UUID | None,
    person_id: uuid.UUID | None,
) -> None:
    # The event's id is the mail's: an event handled twice (its inbox row trimmed) makes no second mail.
    queued = await store.queue_mail(
        conn, env.event_id, kind, to_email, locale, context, secret, school_id, person_id, env.correlation_id
    )
    if queued:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
