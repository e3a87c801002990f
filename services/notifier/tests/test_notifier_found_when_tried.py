"""The notifier tried as a new user and an operator would (issue 8): each fault found, as a test.

Headers are read back the way a mail program reads them: the mail flattened as the mailer sends it
(aiosmtplib), parsed with the email package's default policy and with ``decode_header``.
"""

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from aiosmtplib.email import flatten_message

from notifier import device_limits, message_store, store, unsubscribe
from notifier.mailer import _classify
from notifier.messages import new_post_email
from notifier.preferences import QuietHours
from notifier.resources import warn_about_local_urls
from notifier.settings import Settings, public_url_problem
from shared.app import POOL
from shared.contracts import MembershipRevoked
from tests.harness.fanout import post_to_parents
from tests.harness.school import add_person, make_class
from tests.harness.system import System

from .conftest import eventually
from .test_delivery_outage import notifier_without_smtp
from .test_preferences import ZONE, Site, a_class, choose, post, pushes, site

__all__ = ["site"]  # the fixture, shared with test_preferences

MAIL_FROM = "Klaspost <noreply@klaspost.nl>"


def subject_and_to(msg: EmailMessage) -> tuple[str, str, str, str]:
    """(Subject as parsed, Subject as decode_header reads it, To's display name, To's address)."""
    raw = flatten_message(msg)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert all(len(line) <= 998 for line in head.split("\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    folded = head.split("\r\nSubject:", 1)[1]
    value = folded.split("\r\n")[0]
    for line in folded.split("\r\n")[1:]:
        if not line.startswith((" ", "\t")):
            break
        value += line
    [to] = parsed["To"].addresses
    return (
        str(parsed["Subject"]),
        str(make_header(decode_header(value.strip()))),
        to.display_name,
        to.addr_spec,
    )


@pytest.mark.parametrize(
    "group",
    [
        "Groep 8 & 9 samen op kamp naar Ameland voor een hele week",  # plain ASCII, folds once
        "Groep 7 en 8 van juf Anne en meester Bas samen naar het Rijksmuseum in Amsterdam",  # 80 characters
    ],
)
def test_a_long_plain_ascii_subject_decodes_without_a_leading_space(group: str) -> None:
    # Python's folder put the whole value on a line of its own ("Subject:\r\n Nieuw bericht ..."):
    # the subject then read " Nieuw bericht in ...", one space too many.
    msg = new_post_email("nl", "Jan", "jan@ouders.nl", group, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM)
    parsed, decoded, _, _ = subject_and_to(msg)
    assert parsed == f"Nieuw bericht in {group}"
    assert decoded == f"Nieuw bericht in {group}"


def test_a_name_that_looks_like_an_encoded_word_is_shown_as_written() -> None:
    # Plain ASCII went out as it was, so a mail program decoded "=?utf-8?q?...?=" in a group's or a
    # parent's name into something else than what the school typed.
    name = "Groep =?utf-8?q?Juf_Anna?= 3"
    msg = new_post_email("nl", name, "jan@ouders.nl", name, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM)
    parsed, decoded, to_name, to_address = subject_and_to(msg)
    assert parsed == f"Nieuw bericht in {name}"
    assert decoded == f"Nieuw bericht in {name}"
    assert (to_name, to_address) == (name, "jan@ouders.nl")


async def test_another_accounts_push_endpoint_cannot_be_registered_again_in_another_spelling(
    system: System,
) -> None:
    # The same push resource written another way (a fragment, which is never sent; the host in
    # capitals) was a new device for a stranger, past the 409 of case 8: their
    # pushes, encrypted for their keys, then went to the owner's browser.
    school, _, _, owner = await make_class(system, "Groep 5")
    stranger = await add_person(system, school, "vreemde", "guardian", "Groep 5")
    status, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    assert status == 200, key
    subscription: dict[str, Any] = system.push.subscribe(key["application_server_key"])
    status, body = await system.call(
        "POST", "notifier", "/devices", owner.token, json={"subscription": subscription}
    )
    assert status == 201, body
    own_keys = system.push.subscribe(key["application_server_key"])["keys"]
    endpoint = subscription["endpoint"]
    assert endpoint.startswith("http://127.0.0.1:")
    for variant in (endpoint + "#again", "HTTP" + endpoint[4:], endpoint + "#"):
        status, body = await system.call(
            "POST",
            "notifier",
            "/devices",
            stranger.token,
            json={"subscription": {"endpoint": variant, "keys": own_keys}},
        )
        assert status in (409, 422), (variant, status, body)
    status, body = await system.call("GET", "notifier", "/devices", stranger.token)
    assert (status, body) == (200, {"devices": []})


async def test_an_smtp_relay_down_for_more_than_ten_minutes_loses_no_email() -> None:
    # The relay unreachable (nothing listens): not this message's fault, and MTAs keep such mail for
    # days. Seven attempts already made (5+10+...+320 s of back-off: the relay down for ~11 minutes),
    # the eighth fails like the others: the post's emails and the invitation (its access code
    # dropped with it) are given up on, and nothing sends them once the relay is back.
    async with notifier_without_smtp() as (app, _):
        pool = app[POOL]
        await post_to_parents(pool, 3)
        async with pool.acquire() as conn:
            await store.queue_mail(
                conn, uuid.uuid4(), "invitation", "ouder@ouders.test", "nl",
                {"school_name": "De Lichtstraat", "child_name": "Noor", "expires_at": "2099-12-14T16:00:00+00:00"},
                "K7QM3XPDWN9RK7QM", None, None, None,
            )  # fmt: skip

        async def first_attempt_over() -> bool:
            return bool(
                await pool.fetchval(
                    """SELECT (SELECT count(*) FROM deliveries WHERE attempts = 1 AND last_error IS NOT NULL)
                            + (SELECT count(*) FROM mails WHERE attempts = 1 AND last_error IS NOT NULL) = 4"""
                )
            )

        await eventually(first_attempt_over, within=20, what="the first attempt at every email")
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE deliveries SET attempts = 7, last_error = NULL, next_attempt_at = now()"
            )
            await conn.execute("UPDATE mails SET attempts = 7, last_error = NULL, next_attempt_at = now()")

        async def eighth_attempt_over() -> bool:
            return bool(
                await pool.fetchval(
                    """SELECT (SELECT count(*) FROM deliveries WHERE attempts = 8 AND last_error IS NOT NULL)
                            + (SELECT count(*) FROM mails WHERE attempts = 8 AND last_error IS NOT NULL) = 4"""
                )
            )

        await eventually(eighth_attempt_over, within=20, what="the eighth attempt at every email")
        failed = await pool.fetchval(
            "SELECT (SELECT count(*) FROM deliveries WHERE status = 'failed') + "
            "(SELECT count(*) FROM mails WHERE status = 'failed')"
        )
        assert failed == 0
        # Still tried every few minutes (back-off capped at 10), the reason kept for the operator,
        # the invitation's code kept so it can still be sent.
        waits = await pool.fetch(
            """SELECT extract(epoch FROM next_attempt_at - now()) AS wait, last_error FROM deliveries
               UNION ALL SELECT extract(epoch FROM next_attempt_at - now()), last_error FROM mails"""
        )
        assert all(0 < row["wait"] <= 600 and "smtp" in row["last_error"] for row in waits), waits
        assert await pool.fetchval("SELECT secret FROM mails") == "K7QM3XPDWN9RK7QM"

        # A day later the relay is still down: then, and only then, the mails are given up on.
        async with pool.acquire() as conn:
            await conn.execute(
                """UPDATE deliveries SET created_at = now() - interval '25 hours', last_error = NULL,
                   next_attempt_at = now()"""
            )
            await conn.execute(
                """UPDATE mails SET created_at = now() - interval '25 hours', last_error = NULL,
                   next_attempt_at = now()"""
            )

        async def given_up() -> bool:
            return bool(
                await pool.fetchval(
                    """SELECT (SELECT count(*) FROM deliveries WHERE status = 'failed')
                            + (SELECT count(*) FROM mails WHERE status = 'failed' AND secret IS NULL) = 4"""
                )
            )

        await eventually(given_up, within=20, what="every email given up on after a day")


async def test_a_refused_address_still_fails_at_once_and_a_failure_is_one_statement() -> None:
    # Recording a failure was a transaction of several statements (a worker paused between them held
    # the row's lock); now one statement, which also deletes a push device that is gone. A permanent
    # refusal (5xx for the address) is given up on at its first attempt, email or not.
    async with notifier_without_smtp() as (app, _):
        pool = app[POOL]
        await post_to_parents(pool, 2)

        async def first_attempt_over() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) = 2 FROM deliveries WHERE attempts = 1 AND last_error IS NOT NULL"
                )
            )

        await eventually(first_attempt_over, within=20, what="the first attempt at every email")
        refused, passing = [r["delivery_id"] for r in await pool.fetch("SELECT delivery_id FROM deliveries")]
        async with pool.acquire() as conn:
            device = await store.register_native_device(conn, uuid.uuid4(), uuid.uuid4(), "fcm", "gone-token")
            outcome = await store.record_delivery_failure(
                conn, refused, "recipients refused: 550 no such user", permanent=True, out_of_attempts=False,
                keep_trying_seconds=86_400, retry_in_seconds=5, forget_device=device["device_id"],
            )  # fmt: skip
            assert outcome == "failed"
            outcome = await store.record_delivery_failure(
                conn, passing, "smtp connection failed", permanent=False, out_of_attempts=True,
                keep_trying_seconds=86_400, retry_in_seconds=600,
            )  # fmt: skip
            assert outcome == "pending"
            assert await conn.fetchval("SELECT count(*) FROM devices") == 0
            again = await store.record_delivery_failure(
                conn, refused, "late", permanent=False, out_of_attempts=False, keep_trying_seconds=None,
                retry_in_seconds=5,
            )  # fmt: skip
            assert again is None  # no longer pending: left as it was
            assert await conn.fetchval(
                "SELECT last_error FROM deliveries WHERE delivery_id = $1", refused
            ) == ("recipients refused: 550 no such user")


@pytest.mark.parametrize("target", ["digest", "posts"])
async def test_an_unsubscribed_digest_reader_gets_no_digest_of_what_was_held_before(
    site: Site, target: unsubscribe.Target
) -> None:
    # A digest reader clicked unsubscribe (in today's digest, or in the settings' stead) after posts
    # had been held for tomorrow's digest: that digest still came, made of the held emails.
    now = datetime.now(UTC)
    digest_at = (now + timedelta(minutes=20)).astimezone(ZONE)
    klas = await a_class(site, 1, devices=False, digest_time=f"{digest_at:%H:%M}")
    [parent] = klas.parents
    await choose(site, parent, "email", "digest")
    await post(site, klas, "Morgen gymles.")
    async with site.pool.acquire() as conn:
        token = unsubscribe.make_token(await message_store.unsubscribe_key(conn), parent.person_id, target)
    async with aiohttp.ClientSession() as http, http.post(f"{site.base_url}/unsubscribe/{token}") as answer:
        assert answer.status == 200
        assert (await answer.json())["done"] is True
    assert (await site.schedule(now + timedelta(minutes=40)))[1] == 0
    await site.settle()
    assert site.mails_to(parent.email) == []


async def test_email_turned_off_in_the_settings_drops_the_emails_held_for_the_digest(site: Site) -> None:
    now = datetime.now(UTC)
    digest_at = (now + timedelta(minutes=20)).astimezone(ZONE)
    klas = await a_class(site, 1, devices=False, digest_time=f"{digest_at:%H:%M}")
    [parent] = klas.parents
    await choose(site, parent, "email", "digest")
    await post(site, klas, "Morgen gymles.")
    await choose(site, parent, "none")  # what PUT /preferences stores
    assert (await site.schedule(now + timedelta(minutes=40)))[1] == 0
    await site.settle()
    assert site.mails_to(parent.email) == []


async def test_a_reminder_waiting_for_its_moment_stays_for_who_switches_email_to_push_without_a_device(
    site: Site,
) -> None:
    # The other side of the fix above: switching reminders from email to push in the settings must not
    # take away a day-before reminder already planned as an email when no push would carry it. Turned
    # off altogether ("none"), it goes.
    klas = await a_class(site, 1, devices=False)
    [parent] = klas.parents
    await choose(site, parent, "email")
    notification_id, now = uuid.uuid4(), datetime.now(UTC)
    async with site.pool.acquire() as conn, conn.transaction():
        await message_store.create_notification(
            conn, notification_id, "day_before", school_id=klas.school_id, context={"title": "Gesprek"}
        )
        await message_store.fan_out(
            conn, notification_id, [parent.person_id], "reminders", school_id=klas.school_id,
            default_zone="Europe/Amsterdam", now=now, send_at={parent.person_id: now + timedelta(hours=20)},
        )  # fmt: skip

    async def status() -> str:
        return str(
            await site.pool.fetchval(
                "SELECT status FROM deliveries WHERE notification_id = $1", notification_id
            )
        )

    assert await status() == "held"
    await choose(site, parent, "push")
    assert await status() == "held"
    await choose(site, parent, "none")
    assert await status() == "failed"


async def test_a_guardian_who_left_the_group_gets_no_digest_or_held_push_of_its_posts(site: Site) -> None:
    # A guardian taken out of a group (a custody decision, a child moved to another class) in the
    # evening: the next day's digest still carried the group's posts held for them, and the pushes
    # held for their quiet hours still came in the morning, each leading to a post that is now a 404.
    now = datetime.now(UTC)
    digest_at = (now + timedelta(minutes=20)).astimezone(ZONE)
    klas = await a_class(site, 2, digest_time=f"{digest_at:%H:%M}")
    digest_reader, night_reader = klas.parents
    await choose(site, digest_reader, "email", "digest")
    local = now.astimezone(ZONE)
    quiet = QuietHours((local - timedelta(minutes=5)).time().replace(second=0, microsecond=0),
                       (local + timedelta(hours=1)).time().replace(second=0, microsecond=0))  # fmt: skip
    await choose(site, night_reader, "push", quiet=quiet)
    post_id = await post(site, klas, "Morgen gymles.")

    async def held() -> bool:
        return bool(
            await site.pool.fetchval(
                """SELECT count(*) = 2 FROM deliveries d JOIN notifications n USING (notification_id)
                   WHERE n.post_id = $1 AND d.status = 'held'""",
                post_id,
            )
        )

    await eventually(held, what="the digest email and the quiet-hours push held")
    for parent in klas.parents:
        await site.publish(
            MembershipRevoked(
                group_id=klas.group_id, person_id=parent.person_id, role="guardian", revision=2
            ),
            klas.school_id,
        )

    async def left() -> bool:
        return not await site.pool.fetchval(
            "SELECT count(*) FROM memberships WHERE group_id = $1 AND active", klas.group_id
        )

    await eventually(left, what="both guardians out of the group in the notifier's copy")
    await site.schedule(now + timedelta(hours=2))
    await site.settle()
    assert site.mails_to(digest_reader.email) == []
    assert pushes(site, night_reader) == []


@pytest.mark.parametrize("channel", ["email", "none"])
async def test_push_turned_off_in_the_settings_drops_the_pushes_held_for_quiet_hours(
    site: Site, channel: str
) -> None:
    # Pushes held for the night came in the morning after the parent had chosen no push at all.
    now = datetime.now(UTC)
    klas = await a_class(site, 1)
    [parent] = klas.parents
    local = now.astimezone(ZONE)
    quiet = QuietHours((local - timedelta(minutes=5)).time().replace(second=0, microsecond=0),
                       (local + timedelta(hours=1)).time().replace(second=0, microsecond=0))  # fmt: skip
    await choose(site, parent, "push", quiet=quiet)
    post_id = await post(site, klas, "Morgen gymles.")

    async def held() -> bool:
        return bool(
            await site.pool.fetchval(
                """SELECT count(*) = 1 FROM deliveries d JOIN notifications n USING (notification_id)
                   WHERE n.post_id = $1 AND d.status = 'held' AND d.channel = 'push'""",
                post_id,
            )
        )

    await eventually(held, what="the push held for quiet hours")
    await choose(site, parent, channel, quiet=quiet)
    await site.schedule(now + timedelta(hours=2))
    await site.settle()
    assert pushes(site, parent) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8084",
        "http://127.0.0.1:8084",
        "http://[::1]:8084",
        "http://10.0.0.5",
        "https://klaspost.local",
        "https://notifier.test/",
        "https://mail.example.com",
        "http://notifier:8084",  # a compose service name: only inside the compose network
    ],
)
def test_a_public_url_that_reaches_no_reader_is_named_at_start_up(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # PUBLIC_API_URL unset (NOTIFIER_PUBLIC_URL in compose) left every one-click unsubscribe link
    # pointing at http://localhost:8084, and nothing said so.
    settings = Settings(
        database_url="postgresql://x@127.0.0.1/x", public_api_url=url, public_base_url="https://klaspost.nl"
    )
    with caplog.at_level(logging.WARNING, logger="notifier.resources"):
        problems = warn_about_local_urls(settings)
    assert len(problems) == 1, problems
    assert problems[0].startswith("PUBLIC_API_URL"), problems
    assert any("PUBLIC_API_URL" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_a_public_url_on_a_real_domain_is_accepted() -> None:
    assert public_url_problem("https://api.klaspost.nl") is None
    assert public_url_problem("https://notifier.deschool.nl:8443/") is None
    assert public_url_problem("https://93.184.216.34") is None  # a public address
    settings = Settings(
        database_url="postgresql://x@127.0.0.1/x", public_api_url="https://api.klaspost.nl",
        public_base_url="https://klaspost.nl",
    )  # fmt: skip
    assert warn_about_local_urls(settings) == []


async def test_a_person_keeps_at_most_twenty_devices_and_registers_at_most_thirty_an_hour(
    system: System,
) -> None:
    # One token registered 500 fake push devices in a second: every post then meant 500 sends. Now
    # the 21st device replaces the least recently registered one (a parent's new phone just works),
    # and the 31st registration in an hour is refused with 429 and Retry-After.
    school, _, _, parent = await make_class(system, "Groep 6")
    status, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    assert status == 200, key
    registered = []
    for _ in range(30):
        subscription: dict[str, Any] = system.push.subscribe(key["application_server_key"])
        status, body = await system.call(
            "POST", "notifier", "/devices", parent.token, json={"subscription": subscription}
        )
        assert status == 201, body
        registered.append(body["device_id"])
    status, body = await system.call("GET", "notifier", "/devices", parent.token)
    assert status == 200, body
    assert sorted(d["device_id"] for d in body["devices"]) == sorted(registered[-20:])

    subscription = system.push.subscribe(key["application_server_key"])
    assert system.http is not None
    async with system.http.post(
        system.url("notifier", "/devices"),
        headers={"Authorization": f"Bearer {parent.token}"},
        json={"subscription": subscription},
    ) as response:
        assert response.status == 429, await response.text()
        assert 1 <= int(response.headers["Retry-After"]) <= 3600
        assert (await response.json())["error"]["code"] == "too_many_requests"
    # Another person is not held back by this one's registrations.
    other = await add_person(system, school, "buur", "guardian", "Groep 6")
    status, body = await system.call(
        "POST",
        "notifier",
        "/devices",
        other.token,
        json={"subscription": system.push.subscribe(key["application_server_key"])},
    )
    assert status == 201, body


def test_a_relay_refusing_our_sender_keeps_the_mail_while_a_refused_address_fails() -> None:
    # A 5xx to MAIL FROM is the relay's set-up (the sender not allowed), the same for every mail:
    # like an authentication failure it must keep the mail waiting, not fail the whole backlog.
    # A 5xx for the recipient is about that address: given up on at once.
    sender = _classify(
        aiosmtplib.SMTPSenderRefused(553, "5.7.1 Sender address rejected", "noreply@klaspost.nl")
    )
    assert not sender.permanent
    auth = _classify(aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Authentication credentials invalid"))
    assert not auth.permanent
    busy = _classify(aiosmtplib.SMTPResponseException(421, "4.3.2 Service not available"))
    assert not busy.permanent
    refused = _classify(
        aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(550, "5.1.1 No such user", "x@ouders.nl")]
        )
    )
    assert refused.permanent


async def test_registrations_at_once_still_keep_at_most_the_cap() -> None:
    # Two registrations of one person at once each trimmed to the cap from what they saw: together
    # they could leave one device too many. They take turns at the trim.
    async with notifier_without_smtp() as (app, _):
        pool = app[POOL]
        person_id = uuid.uuid4()

        async def register(i: int) -> None:
            async with pool.acquire() as conn:
                await device_limits.register_native(conn, person_id, "fcm", f"token-{i}", 3)

        await asyncio.gather(*(register(i) for i in range(12)))
        assert await pool.fetchval("SELECT count(*) FROM devices WHERE person_id = $1", person_id) == 3
