"""What parents chose, through a running notifier: events published on the broker, mails at a real
SMTP server, pushes at a local Web Push service that decrypts them. Held messages (quiet hours,
digest, scheduled reminders) are released by calling the schedule job with a chosen ``now``.

Covers issue 8: three parents with different preferences get exactly what they chose; the digest
arrives once at the digest time with all of that day's posts (not deleted ones); quiet hours hold the
push until the morning and an urgent post bypasses them; one-click unsubscribe works and is
idempotent; the teacher's weekly reminder arrives once per teacher; a promotion once; a booking's
confirmation, move, cancellation and day-before reminder.
"""

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.tokens import TokenSigner
from notifier import message_store
from notifier.app import spec
from notifier.delivery_reports import report_deliveries
from notifier.preferences import Choice, QuietHours
from notifier.schedule import run_schedule
from notifier.settings import Settings
from notifier.vapid import generate_vapid_keys
from shared import bus
from shared.app import POOL, create_app
from shared.contracts import (
    AccountChanged,
    BookingReminderDue,
    ConferenceOpened,
    GroupChanged,
    GroupQuiet,
    MembershipGranted,
    PasswordResetRequested,
    PostDeleted,
    PostPublished,
    SchoolChanged,
    SignupPromoted,
    SlotBooked,
    SlotCancelled,
    SlotMoved,
)
from shared.envelope import Envelope, Event, envelope
from shared.outbox import to_message
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port
from shared.testing.pushservice import PushService
from shared.testing.smtp import ReceivedMail, SmtpSink
from shared.tokens import Caller

from .conftest import eventually

ZONE = ZoneInfo("Europe/Amsterdam")
API = "https://notifier.klaspost.test"


@dataclass
class Site:
    settings: Settings
    runner: web.AppRunner
    base_url: str
    sink: SmtpSink
    push: PushService
    exchange: AbstractExchange
    broker: AbstractRobustConnection
    signer: TokenSigner

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runner.app[POOL]

    def auth(self, person_id: uuid.UUID) -> dict[str, str]:
        """The Authorization header of an access token for the person, as identity signs it."""
        return {"Authorization": f"Bearer {self.signer.issue(Caller(person_id=person_id))}"}

    async def publish(self, event: Event, school_id: uuid.UUID | None = None) -> Envelope:
        env = envelope(event, school_id, f"test-{uuid.uuid4().hex[:8]}")
        await self.again(env)
        return env

    async def again(self, env: Envelope) -> None:
        await self.exchange.publish(
            to_message(env.model_dump(mode="json"), env.event_id), routing_key=env.type, mandatory=True
        )

    def mails_to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.sink.messages if address in m.rcpt_tos]

    async def settle(self) -> None:
        """Until nothing is pending (every due message sent or failed)."""

        async def idle() -> bool:
            return not await self.pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")

        await eventually(idle, what="no pending deliveries")

    async def schedule(self, now: datetime) -> tuple[int, int]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await run_schedule(conn, now, "Europe/Amsterdam")


@pytest.fixture(scope="module")
async def site() -> AsyncIterator[Site]:
    async with contextlib.AsyncExitStack() as stack:
        amqp_url = await create_vhost()
        stack.push_async_callback(delete_vhost, amqp_url)
        database_url = await create_database("notifier")
        stack.push_async_callback(drop_database, database_url)
        sink = await stack.enter_async_context(SmtpSink())
        push = await stack.enter_async_context(PushService())
        private, public = generate_vapid_keys()
        port = free_port()
        signer = TokenSigner(Ed25519PrivateKey.generate(), issuer="klaspost-identity", ttl_seconds=3600)
        settings = Settings.model_validate(
            {
                "http_port": port,
                "database_url": database_url,
                "amqp_url": amqp_url,
                "jwks_json": json.dumps(signer.jwks()),
                "smtp_host": sink.host,
                "smtp_port": sink.port,
                "smtp_timeout_seconds": 5,
                "mail_from": "Klaspost <noreply@klaspost.test>",
                "public_base_url": "https://klaspost.test",
                "public_api_url": API,
                "vapid_private_key": private,
                "vapid_public_key": public,
                "vapid_subject": "mailto:beheer@klaspost.nl",
                "retry_delays_ms": [200, 1000],
                "outbox_sweep_seconds": 0.5,
                # The job runs by itself too: it must not get ahead of the tests' own clock.
                "schedule_seconds": 3600,
            }
        )
        runner = web.AppRunner(create_app(spec(), settings), access_log=None)
        stack.push_async_callback(runner.cleanup)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        broker = await bus.connect(amqp_url, "notifier-preference-tests")
        stack.push_async_callback(broker.close)
        exchange = await bus.declare_exchange(await bus.publisher_channel(broker), settings.exchange)
        yield Site(settings, runner, f"http://127.0.0.1:{port}", sink, push, exchange, broker, signer)


@dataclass
class Parent:
    person_id: uuid.UUID
    email: str
    subscription: dict[str, Any] | None


@dataclass
class Klas:
    school_id: uuid.UUID
    group_id: uuid.UUID
    parents: list[Parent]


async def a_class(
    site: Site, count: int, *, devices: bool = True, digest_time: str = "18:00", locale: str = "nl"
) -> Klas:
    """A school (Amsterdam), a group and count parents (each with a Web Push device), known to the
    notifier through the events identity publishes."""
    school_id, group_id = uuid.uuid4(), uuid.uuid4()
    await site.publish(
        SchoolChanged(
            school_id=school_id, name="De Regenboog", time_zone="Europe/Amsterdam", max_posts_per_day=5,
            min_posts_per_week=1, digest_time=digest_time, photo_retention_days=365, share_notice="",
            revision=1,
        ),
        school_id,
    )  # fmt: skip
    await site.publish(
        GroupChanged(
            group_id=group_id, school_id=school_id, name="Groep 5", school_year="2026-2027", revision=1
        ),
        school_id,
    )
    parents = []
    for i in range(count):
        person = uuid.uuid4()
        address = f"ouder{i}-{uuid.uuid4().hex[:8]}@ouders.test"
        await site.publish(
            AccountChanged(
                person_id=person, email=address, display_name=f"Ouder {i}", locale=locale, revision=1
            )
        )
        await site.publish(
            MembershipGranted(
                group_id=group_id, person_id=person, role="guardian", revision=1, children=[uuid.uuid4()]
            ),
            school_id,
        )
        subscription = None
        if devices:
            subscription = site.push.subscribe(site.settings.vapid_public_key or "")
            async with site.pool.acquire() as conn:
                await conn.execute(
                    """INSERT INTO devices (device_id, person_id, endpoint, p256dh, auth)
                       VALUES ($1, $2, $3, $4, $5)""",
                    uuid.uuid4(),
                    person,
                    subscription["endpoint"],
                    subscription["keys"]["p256dh"],
                    subscription["keys"]["auth"],
                )
        parents.append(Parent(person, address, subscription))
    klas = Klas(school_id, group_id, parents)

    async def known() -> bool:
        return bool(
            await site.pool.fetchval(
                """SELECT count(*) = $2 FROM memberships m JOIN people p USING (person_id)
                   WHERE m.group_id = $1""",
                group_id,
                count,
            )
            and await site.pool.fetchval("SELECT count(*) FROM schools WHERE school_id = $1", school_id)
        )

    await eventually(known, what="the class in the notifier's copies")
    return klas


async def choose(
    site: Site, parent: Parent, channel: str, timing: str = "immediate", quiet: QuietHours | None = None
) -> None:
    async with site.pool.acquire() as conn:
        await message_store.save_preferences(
            conn,
            parent.person_id,
            {c: Choice(channel, timing) for c in ("posts", "signups", "reminders")},  # type: ignore[arg-type]
            quiet,
        )


async def post(site: Site, klas: Klas, excerpt: str, **kw: Any) -> uuid.UUID:
    post_id = uuid.uuid4()
    await site.publish(
        PostPublished(post_id=post_id, group_id=klas.group_id, author_id=uuid.uuid4(), excerpt=excerpt, **kw),
        klas.school_id,
    )

    async def stored() -> bool:
        return bool(
            await site.pool.fetchval("SELECT count(*) FROM notifications WHERE post_id = $1", post_id)
        )

    await eventually(stored, what="the post's notification")
    return post_id


async def deletion_handled(site: Site, post_id: uuid.UUID) -> None:
    """Until the post's deletion reached the notifier: nothing of it waits any more (events are
    handled concurrently, so a digest made before that could still carry it)."""

    async def handled() -> bool:
        return not await site.pool.fetchval(
            """SELECT count(*) FROM deliveries d JOIN notifications n USING (notification_id)
               WHERE n.post_id = $1 AND d.status IN ('pending', 'held')""",
            post_id,
        )

    await eventually(handled, what="the post's deletion handled")


def pushes(site: Site, parent: Parent) -> list[Any]:
    assert parent.subscription is not None
    return [p.json() for p in site.push.pushes_for(parent.subscription)]


async def test_three_parents_get_exactly_what_they_chose_and_the_digest_once(site: Site) -> None:
    now = datetime.now(UTC)
    # The digest time 20 minutes from now (school-local), the job's clock 40 minutes from now.
    digest_at = (now + timedelta(minutes=20)).astimezone(ZONE)
    klas = await a_class(site, 3, digest_time=f"{digest_at:%H:%M}")
    push_only, email_only, digest = klas.parents
    await choose(site, push_only, "push")
    await choose(site, email_only, "email")
    await choose(site, digest, "email", "digest")

    first = await post(site, klas, "Morgen gymles, neem gymschoenen mee.", title="Gym")
    deleted = await post(site, klas, "Dit bericht wordt verwijderd.")
    second = await post(site, klas, "De schoolreis gaat naar Artis!", title="Schoolreis")
    await site.publish(PostDeleted(post_id=deleted, group_id=klas.group_id), klas.school_id)
    await deletion_handled(site, deleted)
    await site.settle()

    urls = {f"https://klaspost.test/posts/{first}", f"https://klaspost.test/posts/{second}"}
    # The deleted post may have reached the immediate ones before its deletion did: leave it out here.
    deleted_url = f"https://klaspost.test/posts/{deleted}"

    def pushed() -> list[str]:
        return [p["url"] for p in pushes(site, push_only) if p["url"] != deleted_url]

    def mailed() -> list[str]:
        return [u for m in site.mails_to(email_only.email) for u in urls if u in m.text]

    async def told() -> bool:
        return sorted(pushed()) == sorted(urls) and sorted(mailed()) == sorted(urls)

    await eventually(told, what="a push to the push parent and an email to the email parent, per post")
    assert site.mails_to(push_only.email) == []
    assert pushes(site, email_only) == []
    assert site.mails_to(digest.email) == []
    assert pushes(site, digest) == []

    # The delivery report counts the digest parent's email as held.
    async with site.pool.acquire() as conn, conn.transaction():
        await report_deliveries(conn)
        held = await conn.fetchval(
            """SELECT r.held FROM delivery_reports r JOIN notifications n USING (notification_id)
               WHERE n.post_id = $1""",
            first,
        )
    assert held == 1

    # Before the digest time nothing; at it one digest; later that day no second one.
    assert await site.schedule(now + timedelta(minutes=10)) == (0, 0)
    assert (await site.schedule(now + timedelta(minutes=40)))[1] == 1
    await site.settle()
    mails = site.mails_to(digest.email)
    assert len(mails) == 1
    text = mails[0].text
    assert "Morgen gymles" in text
    assert "Artis" in text
    assert "verwijderd" not in text
    assert f"https://klaspost.test/posts/{first}" in text
    assert f"https://klaspost.test/posts/{second}" in text
    assert mails[0].message["Subject"] == "Klaspost: 2 nieuwe berichten"
    assert mails[0].message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (await site.schedule(now + timedelta(minutes=50)))[1] == 0
    await site.settle()
    assert len(site.mails_to(digest.email)) == 1
    statuses = await site.pool.fetch(
        """SELECT d.status FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE d.person_id = $1 AND n.post_id = ANY($2::uuid[])""",
        digest.person_id,
        [first, second],
    )
    assert [r["status"] for r in statuses] == ["sent", "sent"]
    # Still exactly once: nobody got anything twice.
    assert sorted(pushed()) == sorted(urls)
    assert sorted(mailed()) == sorted(urls)


async def test_defaults_push_with_a_device_else_email(site: Site) -> None:
    klas = await a_class(site, 1)
    without = await a_class(site, 1, devices=False)
    await post(site, klas, "Met apparaat")
    await post(site, without, "Zonder apparaat")
    await site.settle()
    [with_device], [without_device] = klas.parents, without.parents
    await eventually(lambda: _true(len(pushes(site, with_device)) == 1), what="a push")
    await eventually(lambda: _true(len(site.mails_to(without_device.email)) == 1), what="an email")
    assert site.mails_to(with_device.email) == []


async def _true(value: bool) -> bool:
    return value


def _local(moment: datetime) -> time:
    return moment.astimezone(ZONE).time().replace(second=0, microsecond=0)


async def test_quiet_hours_hold_the_push_until_their_end_and_urgent_bypasses_them(site: Site) -> None:
    now = datetime.now(UTC)
    klas = await a_class(site, 1)
    [parent] = klas.parents
    # Quiet from an hour ago until an hour from now (school-local): it is "night" for this parent.
    quiet = QuietHours(_local(now - timedelta(hours=1)), _local(now + timedelta(hours=1)))
    await choose(site, parent, "both", quiet=quiet)

    held_post = await post(site, klas, "Morgen later beginnen")
    deleted_post = await post(site, klas, "Dit wordt verwijderd")
    await site.publish(PostDeleted(post_id=deleted_post, group_id=klas.group_id), klas.school_id)
    await deletion_handled(site, deleted_post)
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(parent.email)) == 2), what="the emails (not held)")
    assert pushes(site, parent) == []
    row = await site.pool.fetchrow(
        """SELECT d.status, d.hold_reason, d.hold_until FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE n.post_id = $1 AND d.channel = 'push'""",
        held_post,
    )
    assert row is not None
    assert (row["status"], row["hold_reason"]) == ("held", "quiet_hours")
    assert _local(row["hold_until"]) == quiet.ends

    # An urgent post goes out at once, push and email, quiet hours or not.
    urgent = await post(site, klas, "School vandaag dicht wegens storm", urgent=True)
    await site.settle()
    await eventually(lambda: _true(len(pushes(site, parent)) == 1), what="the urgent push")
    assert pushes(site, parent)[0]["url"].endswith(str(urgent))

    # Still night: nothing released. In the morning the held push goes, the deleted post's does not.
    assert (await site.schedule(now))[0] == 0
    assert (await site.schedule(row["hold_until"] + timedelta(seconds=1)))[0] == 1
    await site.settle()
    await eventually(lambda: _true(len(pushes(site, parent)) == 2), what="the held push in the morning")
    assert pushes(site, parent)[1]["url"].endswith(str(held_post))
    assert all(not p["url"].endswith(str(deleted_post)) for p in pushes(site, parent))


async def test_one_click_unsubscribe_turns_that_email_off_and_is_idempotent(site: Site) -> None:
    klas = await a_class(site, 1, devices=False)
    [parent] = klas.parents
    await post(site, klas, "Eerste bericht")
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(parent.email)) == 1), what="the email")
    message = site.mails_to(parent.email)[0].message
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = str(message["List-Unsubscribe"])
    assert header.startswith(f"<{API}/unsubscribe/")
    assert header.endswith(">")
    path = urlsplit(header[1:-1]).path
    url = site.base_url + path
    async with aiohttp.ClientSession() as http:
        browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        async with http.get(url, headers=browser) as answer:  # a mail program without one-click opens it
            assert answer.status == 200
            assert answer.content_type == "text/html"
            page = await answer.text()
            assert '<form method="post"' in page
            assert "nieuwe berichten" in page
        async with http.get(url) as answer:
            assert answer.status == 200
            assert await answer.json() == {"category": "posts", "email_off": False, "done": False}
        for _ in range(2):  # the same answer and effect again
            async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as answer:
                assert answer.status == 200
                assert await answer.json() == {"category": "posts", "email_off": True, "done": True}
        async with http.get(url) as answer:
            assert (await answer.json())["email_off"] is True
        async with http.post(url, headers=browser) as answer:  # the page's button
            assert answer.status == 200
            assert "U bent afgemeld" in await answer.text()
        forged = url[:-2] + ("AA" if not url.endswith("AA") else "BB")
        async with http.post(forged) as answer:
            assert answer.status == 404
        async with http.get(site.base_url + "/unsubscribe/not-a-token") as answer:
            assert answer.status == 404
    async with site.pool.acquire() as conn:
        choices = await message_store.choices_of(conn, parent.person_id)
    assert choices["posts"].channel == "push"  # no device: nothing is sent at all
    await post(site, klas, "Tweede bericht")
    await site.settle()
    assert len(site.mails_to(parent.email)) == 1

    # A password link is not a list mail: no unsubscribe there.
    address = f"reset-{uuid.uuid4().hex[:8]}@ouders.test"
    await site.publish(
        PasswordResetRequested(
            request_id=uuid.uuid4(), person_id=uuid.uuid4(), email=address, reset_token="t" * 32,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )  # fmt: skip
    await eventually(lambda: _true(len(site.mails_to(address)) == 1), what="the reset mail")
    assert site.mails_to(address)[0].message["List-Unsubscribe"] is None


async def test_the_weekly_reminder_reaches_each_teacher_once(site: Site) -> None:
    klas = await a_class(site, 2, locale="en")
    teachers = klas.parents  # people with an account (and a device); the event names them as teachers
    event = GroupQuiet(
        group_id=klas.group_id, school_id=klas.school_id, group_name="Groep 5", week="2026-W49",
        posts_this_week=0, min_posts_per_week=1, teacher_ids=[t.person_id for t in teachers],
    )  # fmt: skip
    env = await site.publish(event, klas.school_id)
    await site.again(env)  # redelivered
    await site.publish(event, klas.school_id)  # and the job looked again (another event id)
    await site.settle()

    async def reminded() -> bool:
        return all(len(site.mails_to(t.email)) == 1 for t in teachers)

    await eventually(reminded, what="the reminder to each teacher")
    await site.settle()
    for teacher in teachers:
        [mail] = site.mails_to(teacher.email)
        assert mail.message["Subject"] == "Nothing posted in Groep 5 this week yet"
        assert "2026-W49" in mail.text
        assert mail.message["List-Unsubscribe"] is not None
        assert pushes(site, teacher) == []  # a teacher who never chose gets this reminder by email


async def test_a_promotion_is_told_exactly_once(site: Site) -> None:
    klas = await a_class(site, 1, devices=False)
    [parent] = klas.parents
    event = SignupPromoted(
        signup_id=uuid.uuid4(), list_id=uuid.uuid4(), item_id=uuid.uuid4(), school_id=klas.school_id,
        group_id=klas.group_id, person_id=parent.person_id, list_title="Hulpouders schoolreis",
        item_title="Begeleiden groep 5", deadline=datetime(2099, 6, 1, 10, 0, tzinfo=UTC),
    )  # fmt: skip
    env = await site.publish(event, klas.school_id)
    await site.again(env)
    await site.publish(event, klas.school_id)
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(parent.email)) == 1), what="the promotion")
    await site.settle()
    [mail] = site.mails_to(parent.email)
    assert "Begeleiden groep 5" in mail.message["Subject"]
    assert "maandag 1 juni 2099 om 12:00" in mail.text  # the deadline, school-local


async def test_a_booking_is_confirmed_moved_reminded_the_day_before_and_cancelled(site: Site) -> None:
    klas = await a_class(site, 2, devices=False)
    guardians = [p.person_id for p in klas.parents]
    first, second = klas.parents
    starts = datetime.combine(datetime.now(ZONE).date() + timedelta(days=5), time(15, 30), tzinfo=ZONE)
    booking, schedule_id = uuid.uuid4(), uuid.uuid4()
    common = {
        "booking_id": booking, "schedule_id": schedule_id, "school_id": klas.school_id,
        "group_id": klas.group_id, "child_id": uuid.uuid4(), "child_name": "Sam",
        "title": "10-minutengesprek", "teacher_names": ["Juf Anne"], "location": "Lokaal 3",
        "guardian_ids": guardians,
    }  # fmt: skip
    await site.publish(
        SlotBooked(**common, starts_at=starts, ends_at=starts + timedelta(minutes=10), booked_by=guardians[0])
    )
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(first.email)) == 1), what="the confirmation")
    assert "Bevestiging: 10-minutengesprek voor Sam" in site.mails_to(first.email)[0].message["Subject"]

    moved = starts + timedelta(days=1, hours=-1)
    await site.publish(
        SlotMoved(
            **common, starts_at=moved, ends_at=moved + timedelta(minutes=10), previous_starts_at=starts,
            moved_by=guardians[1],
        )
    )  # fmt: skip
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(second.email)) == 2), what="the move")
    assert "Verzet" in site.mails_to(second.email)[1].message["Subject"]

    # The day before the old time: nothing; the day before the new time, 09:00: the reminder, once.
    old_reminder = datetime.combine(starts.date() - timedelta(days=1), time(9, 0), tzinfo=ZONE)
    new_reminder = datetime.combine(moved.date() - timedelta(days=1), time(9, 0), tzinfo=ZONE)
    assert (await site.schedule(old_reminder + timedelta(minutes=1)))[0] == 0
    assert (await site.schedule(new_reminder + timedelta(minutes=1)))[0] == 2
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(first.email)) == 3), what="the day-before reminder")
    reminder = site.mails_to(first.email)[2]
    assert reminder.message["Subject"] == "Morgen: 10-minutengesprek voor Sam om 14:30"

    # Another booking, cancelled: its reminder never comes, the cancellation does.
    other = uuid.uuid4()
    await site.publish(
        SlotBooked(
            **(common | {"booking_id": other}), starts_at=starts, ends_at=starts, booked_by=guardians[0]
        )
    )
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(first.email)) == 4), what="the second confirmation")
    await site.publish(
        SlotCancelled(
            booking_id=other, schedule_id=schedule_id, school_id=klas.school_id, child_id=uuid.uuid4(),
            child_name="Sam", title="10-minutengesprek", starts_at=starts, guardian_ids=guardians,
            cancelled_by=guardians[0],
        )
    )  # fmt: skip
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(first.email)) == 5), what="the cancellation")
    assert "Geannuleerd" in site.mails_to(first.email)[4].message["Subject"]
    assert (await site.schedule(old_reminder + timedelta(minutes=2)))[0] == 0
    await site.settle()
    assert len(site.mails_to(first.email)) == 5


async def test_conference_opening_is_told_at_each_family_s_opening_and_a_reminder_once(site: Site) -> None:
    klas = await a_class(site, 2, devices=False, locale="en")
    several, one = klas.parents
    # The first family has two children in the school: it may book early.
    await site.publish(
        MembershipGranted(
            group_id=klas.group_id, person_id=several.person_id, role="guardian", revision=2,
            children=[uuid.uuid4(), uuid.uuid4()],
        ),
        klas.school_id,
    )  # fmt: skip

    async def two_children() -> bool:
        return bool(
            await site.pool.fetchval(
                "SELECT cardinality(children) = 2 FROM memberships WHERE person_id = $1", several.person_id
            )
        )

    await eventually(two_children, what="the family's two children in the copy")
    now = datetime.now(UTC)
    early, opens, closes = now + timedelta(days=1), now + timedelta(days=2), now + timedelta(days=9)
    schedule_id = uuid.uuid4()
    await site.publish(
        ConferenceOpened(
            schedule_id=schedule_id, school_id=klas.school_id, group_ids=[klas.group_id],
            title="Rapportgesprekken", opens_at=opens, early_opens_at=early, closes_at=closes,
            guardian_ids=[several.person_id, one.person_id],
        ),
        klas.school_id,
    )  # fmt: skip

    async def held() -> bool:
        return bool(
            await site.pool.fetchval(
                "SELECT count(*) = 2 FROM deliveries WHERE status = 'held' AND hold_reason = 'scheduled'"
                " AND person_id = ANY($1::uuid[])",
                [several.person_id, one.person_id],
            )
        )

    await eventually(held, what="both openings held")
    assert (await site.schedule(early + timedelta(minutes=1)))[0] == 1
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(several.email)) == 1), what="the early opening")
    assert site.mails_to(one.email) == []
    assert site.mails_to(several.email)[0].message["Subject"] == "Booking is open: Rapportgesprekken"
    assert (await site.schedule(opens + timedelta(minutes=1)))[0] == 1
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(one.email)) == 1), what="the opening for the others")

    reminder = BookingReminderDue(
        schedule_id=schedule_id, school_id=klas.school_id, child_id=uuid.uuid4(), child_name="Noor",
        title="Rapportgesprekken", closes_at=closes, guardian_ids=[one.person_id],
    )  # fmt: skip
    env = await site.publish(reminder, klas.school_id)
    await site.again(env)
    await site.publish(reminder, klas.school_id)
    await site.settle()
    await eventually(lambda: _true(len(site.mails_to(one.email)) == 2), what="the not-yet-booked reminder")
    await site.settle()
    assert len(site.mails_to(one.email)) == 2
    assert site.mails_to(one.email)[1].message["Subject"] == "Not booked yet: Rapportgesprekken for Noor"


async def test_booking_events_out_of_order_leave_one_reminder_for_the_latest_time(site: Site) -> None:
    klas = await a_class(site, 1, devices=False)
    [parent] = klas.parents
    starts = datetime.combine(datetime.now(ZONE).date() + timedelta(days=6), time(15, 30), tzinfo=ZONE)
    moved = starts + timedelta(days=1)
    booking, cancelled = uuid.uuid4(), uuid.uuid4()
    common = {
        "schedule_id": uuid.uuid4(), "school_id": klas.school_id, "group_id": klas.group_id,
        "child_id": uuid.uuid4(), "child_name": "Sam", "title": "10-minutengesprek",
        "guardian_ids": [parent.person_id],
    }  # fmt: skip
    # The move is handled before the booking it moves.
    await site.publish(
        SlotMoved(
            **common, booking_id=booking, starts_at=moved, ends_at=moved, previous_starts_at=starts,
            moved_by=parent.person_id,
        )
    )  # fmt: skip
    await eventually(lambda: _true(len(site.mails_to(parent.email)) == 1), what="the move")
    await site.publish(
        SlotBooked(**common, booking_id=booking, starts_at=starts, ends_at=starts, booked_by=parent.person_id)
    )
    await eventually(lambda: _true(len(site.mails_to(parent.email)) == 2), what="the booking")
    # A cancellation handled before its booking: no reminder at all, and told once.
    cancel = SlotCancelled(
        booking_id=cancelled, schedule_id=common["schedule_id"], school_id=klas.school_id,
        child_id=common["child_id"], child_name="Sam", title="10-minutengesprek", starts_at=starts,
        guardian_ids=[parent.person_id], cancelled_by=parent.person_id,
    )  # fmt: skip
    await site.publish(cancel)
    await site.publish(cancel)  # published twice (another event id)
    await site.publish(
        SlotBooked(
            **common, booking_id=cancelled, starts_at=starts, ends_at=starts, booked_by=parent.person_id
        )
    )
    await eventually(
        lambda: _true(len(site.mails_to(parent.email)) == 4), what="the cancellation and its booking"
    )
    await site.settle()
    reminders = await site.pool.fetch(
        """SELECT d.hold_until FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE n.kind = 'day_before' AND d.person_id = $1 AND d.status = 'held'""",
        parent.person_id,
    )
    day_before_move = datetime.combine(moved.date() - timedelta(days=1), time(9, 0), tzinfo=ZONE)
    assert [r["hold_until"] for r in reminders] == [day_before_move]
    assert len(site.mails_to(parent.email)) == 4
