"""The notifier tried again as a new user and an operator would (issue 8), after the header,
preference, unsubscribe and device changes: each fault found, as a test.

Mails are read back as a mail program reads them: the bytes the mailer sends, parsed with the email
package's default policy.
"""

import asyncio
import base64
import json
import logging
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from pydantic import ValidationError

from notifier import unsubscribe
from notifier.compose import OutgoingMail, outgoing_email
from notifier.events import handlers
from notifier.messages import MAX_PUSH_PAYLOAD_BYTES, new_post_parts, push_payload_size
from notifier.notices import notice_push
from notifier.resources import warn_about_local_urls
from notifier.schedule import run_schedule
from notifier.settings import Settings
from shared.bus import QueueNames
from shared.contracts import (
    AccountChanged,
    ChildErased,
    MembershipGranted,
    PasswordResetRequested,
    PostDeleted,
    PostUpdated,
    SlotBooked,
)
from shared.deadletters import replay
from shared.envelope import envelope

from .conftest import RunningNotifier, eventually
from .test_mails import a_code, an_address, an_invitation
from .test_preferences import ZONE, Site, a_class, choose, post, site

__all__ = ["site"]  # the fixture, shared with test_preferences

IDN_DOMAIN = "bäckerij-müller.nl"
IDN_ASCII = "xn--bckerij-mller-bfb28a.nl"


def _settings(**values: Any) -> Settings:
    return Settings.model_validate({"database_url": "postgresql://x/y", "amqp_url": "amqp://x/", **values})


def test_a_sender_on_an_international_domain_goes_out_in_its_ascii_form() -> None:
    # MAIL_FROM on an IDN went out as UTF-8 (From, envelope, Message-ID): every mail then needed
    # SMTPUTF8, and a relay without it refused them all (issue 8 case 7 asks for the xn-- form).
    settings = _settings(mail_from=f"Bakkerij Müller <noreply@{IDN_DOMAIN}>")
    parts = new_post_parts(
        "nl",
        "Zoë",
        "ouder@ouders.nl",
        "Groep 5",
        "x",
        "https://klaspost.nl/p",
        uuid.uuid4(),
        settings.mail_from,
    )
    mail = outgoing_email(parts)
    assert isinstance(mail, OutgoingMail)
    assert mail.sender == f"noreply@{IDN_ASCII}"
    parsed = message_from_bytes(mail.data, policy=policy.default)
    [sender] = parsed["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Bakkerij Müller", f"noreply@{IDN_ASCII}")
    assert str(parsed["Message-ID"]).endswith(f"@{IDN_ASCII}>")


@pytest.mark.parametrize(
    "mail_from",
    [
        "Klaspost",  # no address: the envelope sender was "Klaspost", the Message-ID @Klaspost
        "Klaspost <noreply>",  # no domain
        "Klaspost <>",
        "Basisschool De Regenboog, Utrecht <noreply@klaspost.nl>",  # the comma makes two mailboxes
        "Klaspost <noreply@klaspost.nl>, Beheer <beheer@klaspost.nl>",
        "Klaspost <zoë@klaspost.nl>",  # a UTF-8 local part: every mail would need SMTPUTF8
    ],
)
def test_a_sender_that_is_not_one_mailbox_is_refused_at_start_up(mail_from: str) -> None:
    with pytest.raises(ValidationError, match="MAIL_FROM must be one mailbox"):
        _settings(mail_from=mail_from)


@pytest.mark.parametrize(
    "mail_from",
    [
        "Klaspost <noreply@klaspost.nl>",
        "noreply@klaspost.nl",
        '"Basisschool De Regenboog, Utrecht" <noreply@klaspost.nl>',
        "OBS 't Schrijverke <noreply@klaspost.nl>",
        "学校 <noreply@klaspost.nl>",
    ],
)
def test_a_sender_of_one_mailbox_is_taken_as_written(mail_from: str) -> None:
    assert _settings(mail_from=mail_from).mail_from == mail_from


@pytest.mark.parametrize("zone", ["Europe/Amsterdm", "CET+1", "", "../../etc/passwd"])
def test_a_default_time_zone_that_is_no_zone_is_refused_at_start_up(zone: str) -> None:
    # It was taken, and every use fell back to UTC without a word (mails.local_zone): dates in mails,
    # quiet hours and digest times of schools whose zone the notifier does not know yet an hour off.
    with pytest.raises(ValidationError, match="DEFAULT_TIME_ZONE is not a known time zone"):
        _settings(default_time_zone=zone)


@pytest.mark.parametrize(
    ("url", "link_base"),
    [
        (f"https://meldingen.{IDN_DOMAIN}/api", f"https://meldingen.{IDN_ASCII}/api"),
        ("https://klaspost.nl/meldingen/ü", "https://klaspost.nl/meldingen/%C3%BC"),
    ],
)
def test_an_unsubscribe_link_on_an_international_public_url_goes_out_in_ascii(
    url: str, link_base: str
) -> None:
    # PUBLIC_API_URL on an IDN went into List-Unsubscribe as it was (that header is never encoded):
    # the mail could not be written as ASCII, so no mail with an unsubscribe link could be sent.
    settings = _settings(public_api_url=url)
    person = uuid.uuid4()
    unsubscribe_headers = unsubscribe.headers(settings.public_api_url, b"k" * 32, person, "posts")
    parts = new_post_parts(
        "nl",
        "Zoë",
        "ouder@ouders.nl",
        "Groep 5",
        "x",
        "https://klaspost.nl/p",
        uuid.uuid4(),
        settings.mail_from,
    )
    mail = outgoing_email(replace(parts, headers={**parts.headers, **unsubscribe_headers}))
    assert isinstance(mail, OutgoingMail)
    parsed = message_from_bytes(mail.data, policy=policy.default)
    token = unsubscribe.make_token(b"k" * 32, person, "posts")
    assert str(parsed["List-Unsubscribe"]) == f"<{link_base}/unsubscribe/{token}>"


_FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"


@pytest.mark.parametrize(
    ("title", "location"),
    [
        ("Kamp " + _FAMILY * 40, "Lokaal 3"),
        ("Oudergesprek", "Lokaal 3 " + "\U0001f1f3\U0001f1f1" * 300),  # flags: two code points each
    ],
)
def test_a_notice_push_is_cut_between_characters_as_a_reader_sees_them(title: str, location: str) -> None:
    # The title was cut at 120 code points and the body at a quarter of the room left, anywhere:
    # a family emoji ended in a lone zero-width joiner, a flag in half a flag, with no ellipsis.
    context = {
        "title": title, "child_name": "Zoë", "child_id": str(uuid.uuid4()), "booking_id": str(uuid.uuid4()),
        "schedule_id": str(uuid.uuid4()), "starts_at": "2026-12-14T15:00:00+00:00",
        "ends_at": "2026-12-14T15:10:00+00:00", "location": location, "teacher_names": ["Juf Anne"],
    }  # fmt: skip
    payload = notice_push(
        "slot_booked", uuid.uuid4(), "nl", context, ZoneInfo("Europe/Amsterdam"), "https://a.nl"
    )
    for text in (payload["title"], payload["body"]):
        if text.endswith("…"):
            kept = text[:-1].rstrip()
            assert kept.endswith((_FAMILY, "Kamp", "\U0001f1f3\U0001f1f1", "3")), repr(text[-12:])
            assert (len(kept) - len(kept.rstrip("\U0001f1f3\U0001f1f1"))) % 2 == 0, repr(text[-12:])
        else:
            assert text in (title, location) or text.startswith("Bevestiging:"), repr(text)
    assert payload["title"].endswith("…") == (len(title) > 50)
    assert push_payload_size(payload) <= MAX_PUSH_PAYLOAD_BYTES


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def _register(site: Site, person: uuid.UUID, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{site.base_url}/devices", json=body, headers=site.auth(person)) as response,
    ):
        return response.status, await response.json()


def _keys() -> dict[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    return {"p256dh": _b64url(point), "auth": _b64url(os.urandom(16))}


@pytest.mark.parametrize(
    "spelling",
    [
        "https://fcm.googleapis.com/fcm/x/../send/{token}",  # dot-segments, removed when sent
        "https://fcm.googleapis.com/fcm/./send/{token}",
        "https://fcm.googleapis.com/fcm/send/%{hex}{rest}",  # an unreserved character percent-encoded
        "https://fcm.googleapis.com/fcm/send/{token}?",  # an empty query, dropped when sent
    ],
)
async def test_another_accounts_endpoint_in_a_spelling_the_sender_normalises_is_refused(
    site: Site, spelling: str
) -> None:
    # aiohttp (yarl) sends to the normalised URL, so these reach the owner's push resource; they were
    # new devices of the stranger, past case 8's 409 (RFC 3986 6.2.2.2-6.2.2.3).
    owner, stranger = uuid.uuid4(), uuid.uuid4()
    token = "c" + uuid.uuid4().hex
    endpoint = f"https://fcm.googleapis.com/fcm/send/{token}"
    status, body = await _register(site, owner, {"subscription": {"endpoint": endpoint, "keys": _keys()}})
    assert status == 201, body
    variant = spelling.format(token=token, hex=f"{ord(token[0]):02X}", rest=token[1:])
    status, body = await _register(site, stranger, {"subscription": {"endpoint": variant, "keys": _keys()}})
    assert status == 409, (variant, status, body)
    async with site.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM devices WHERE person_id = $1", stranger) == 0


@pytest.mark.parametrize(
    ("field", "keys"),
    [
        (
            "subscription.keys.p256dh",
            {"p256dh": _b64url(b"\x04" + bytes(64)), "auth": _b64url(os.urandom(16))},
        ),
        (
            "subscription.keys.p256dh",
            {"p256dh": _b64url(b"\x05" + os.urandom(64)), "auth": _b64url(os.urandom(16))},
        ),
        ("subscription.keys.auth", {"p256dh": "", "auth": _b64url(os.urandom(12))}),
    ],
)
async def test_a_subscription_whose_keys_can_never_be_used_is_refused_at_registration(
    site: Site, field: str, keys: dict[str, str]
) -> None:
    # Accepted with 201, then every push to it failed ("invalid subscription keys"): the browser
    # believed it was registered and its parent got nothing, without a word.
    if not keys["p256dh"]:
        keys = {**_keys(), "auth": keys["auth"]}
    endpoint = f"https://fcm.googleapis.com/fcm/send/c{uuid.uuid4().hex}"
    status, body = await _register(site, uuid.uuid4(), {"subscription": {"endpoint": endpoint, "keys": keys}})
    assert status == 422, body
    assert [problem["field"] for problem in body["error"]["details"]] == [field], body


async def test_an_invitation_handled_after_its_childs_erasure_is_not_mailed(
    notifier: RunningNotifier,
) -> None:
    # The notifier kept no record of erased children: an InvitationIssued handled after the child's
    # ChildErased (at the same time, retried after a failure) mailed the erased child's name.
    school_id, child_id = uuid.uuid4(), uuid.uuid4()
    address = an_address()
    await notifier.publish(ChildErased(child_id=child_id, school_id=school_id), school_id)
    await asyncio.sleep(0.5)  # handled first, as when the invitation's handling failed once and was retried
    invitation = an_invitation(address, a_code(), school_id=school_id, child_id=child_id, child_name="Noa")
    env = await notifier.publish(invitation, school_id)
    row = await notifier.mail_status(env.event_id, "failed")
    assert (row["secret"], row["context"]["child_name"]) == (None, "")
    assert notifier.mails_to(address) == []


async def test_a_booking_handled_after_its_childs_erasure_names_no_child(notifier: RunningNotifier) -> None:
    # A SlotBooked published by posts before it dropped the erased child's booking, handled after the
    # ChildErased, made a confirmation naming the child: now no notice is made at all.
    school_id, group_id, guardian, child_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    address = an_address()
    await notifier.publish(
        AccountChanged(person_id=guardian, email=address, display_name="Ouder", locale="nl", revision=1)
    )
    await notifier.publish(ChildErased(child_id=child_id, school_id=school_id), school_id)
    await asyncio.sleep(0.5)
    starts = datetime.now(UTC) + timedelta(days=5)
    await notifier.publish(
        SlotBooked(
            booking_id=uuid.uuid4(), schedule_id=uuid.uuid4(), school_id=school_id, group_id=group_id,
            child_id=child_id, child_name="Noa", title="10-minutengesprek", teacher_names=["Juf Anne"],
            location="Lokaal 3", guardian_ids=[guardian], starts_at=starts,
            ends_at=starts + timedelta(minutes=10), booked_by=guardian,
        ),
        school_id,
    )  # fmt: skip
    await asyncio.sleep(2)
    names = await notifier.pool.fetch(
        "SELECT context->>'child_name' AS name FROM notifications WHERE context->>'child_id' = $1",
        str(child_id),
    )
    assert [row["name"] for row in names if row["name"]] == []
    assert all("Noa" not in mail.text for mail in notifier.mails_to(address))


async def test_a_parked_invitation_keeps_no_access_code_in_the_broker(notifier: RunningNotifier) -> None:
    # shared/consumer.py parked a message's body as it came, so the code stayed readable in the
    # broker (management UI, any consumer of notifier.parked) for as long as it was parked.
    code = a_code()
    broken = envelope(an_invitation(an_address(), code), None, "test-parked-secret")
    del broken.payload["expires_at"]  # unreadable: parked at once
    await notifier.publish_envelope(broken)
    channel = await notifier.broker.channel()
    queue = await channel.declare_queue(QueueNames("notifier").parked, passive=True)
    bodies: list[bytes] = []

    async def parked() -> bool:
        message = await queue.get(no_ack=False, fail=False)
        if message is not None:
            bodies.append(message.body)
            await message.nack(requeue=True)
        return any(str(broken.event_id).encode() in body for body in bodies)

    try:
        await eventually(parked, what="the unreadable invitation parked")
    finally:
        await channel.close()
    assert not [body for body in bodies if code.encode() in body]


async def test_a_childs_erasure_reaches_the_digest_that_carries_a_notice_about_them(site: Site) -> None:
    # make_digests copies each notice's context (child_name too) into the digest's own context, and
    # the digest renders from that copy; forget_child blanked only the notices themselves, so the
    # digest kept the erased child's name (and sent it, were it not sent yet).
    now = datetime.now(UTC)
    digest_at = (now + timedelta(minutes=20)).astimezone(ZONE)
    klas = await a_class(site, 1, devices=False, digest_time=f"{digest_at:%H:%M}")
    [parent] = klas.parents
    await choose(site, parent, "email", "digest")
    child_id = uuid.uuid4()
    starts = now + timedelta(days=5)
    await site.publish(
        SlotBooked(
            booking_id=uuid.uuid4(), schedule_id=uuid.uuid4(), school_id=klas.school_id, group_id=klas.group_id,
            child_id=child_id, child_name="Noa-Vergeten", title="10-minutengesprek", teacher_names=["Juf Anne"],
            location="Lokaal 3", guardian_ids=[parent.person_id], starts_at=starts,
            ends_at=starts + timedelta(minutes=10), booked_by=parent.person_id,
        ),
        klas.school_id,
    )  # fmt: skip

    async def held() -> bool:
        return bool(
            await site.pool.fetchval(
                "SELECT count(*) FROM deliveries WHERE person_id = $1 AND hold_reason = 'digest'",
                parent.person_id,
            )
        )

    await eventually(held, what="the booking's confirmation held for the digest")
    assert (await site.schedule(now + timedelta(minutes=40)))[1] == 1
    await site.publish(ChildErased(child_id=child_id, school_id=klas.school_id), klas.school_id)

    async def forgotten() -> bool:
        return not await site.pool.fetchval(
            "SELECT count(*) FROM notifications WHERE school_id = $1 AND context::text LIKE '%Noa-Vergeten%'",
            klas.school_id,
        )

    await eventually(forgotten, within=5, what="the erased child's name gone from every stored notification")


async def test_a_deleted_post_leaves_the_digest_that_carries_it(site: Site) -> None:
    # store.cancel_post_deliveries forgot the excerpt in the post's notifications only; the digest made
    # before the deletion kept its own copy (items[].excerpt, title) and is written from it, so a
    # digest not sent yet (relay down) still carried the deleted post.
    now = datetime.now(UTC)
    digest_at = (now + timedelta(minutes=20)).astimezone(ZONE)
    klas = await a_class(site, 1, devices=False, digest_time=f"{digest_at:%H:%M}")
    [parent] = klas.parents
    await choose(site, parent, "email", "digest")
    post_id = await post(site, klas, "Geheim-uitje-naar-de-Efteling", title="Uitje")
    assert (await site.schedule(now + timedelta(minutes=40)))[1] == 1
    await site.publish(PostDeleted(post_id=post_id, group_id=klas.group_id), klas.school_id)

    async def forgotten() -> bool:
        return not await site.pool.fetchval(
            "SELECT count(*) FROM notifications WHERE school_id = $1 AND context::text LIKE '%Efteling%'",
            klas.school_id,
        )

    await eventually(forgotten, within=5, what="the deleted post's words gone from every stored notification")


async def test_a_parked_invitation_replayed_is_not_mailed_and_says_how_to_send_a_new_code(
    notifier: RunningNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    # Parked after its handler failed every time (a refusal in the table, as a full disk would be),
    # its copy in the broker has no code; replayed once the cause is gone, it comes without its code:
    # no mail without a code, and the operator is told which endpoint sends a new one.
    code, address = a_code(), an_address()
    constraint = f"refuse_{uuid.uuid4().hex[:8]}"
    await notifier.pool.execute(
        f"ALTER TABLE mails ADD CONSTRAINT {constraint} CHECK (to_email <> '{address}')"
    )
    try:
        env = await notifier.publish(an_invitation(address, code), None)
        channel = await notifier.broker.channel()
        queue = await channel.declare_queue(QueueNames("notifier").parked, passive=True)
        parked: list[tuple[bytes, dict[str, Any]]] = []

        async def arrived() -> bool:
            message = await queue.get(no_ack=False, fail=False)
            if message is not None:
                parked.append((message.body, dict(message.headers)))
                await message.nack(requeue=True)
            return any(str(env.event_id).encode() in body for body, _ in parked)

        try:
            await eventually(arrived, within=15, what="the invitation parked after its retries")
        finally:
            await channel.close()
    finally:
        await notifier.pool.execute(f"ALTER TABLE mails DROP CONSTRAINT {constraint}")
    [(body, headers)] = [(b, h) for b, h in parked if str(env.event_id).encode() in b]
    assert code.encode() not in body
    assert headers["x-klaspost-withheld"] == "payload.access_code"
    assert json.loads(body)["payload"]["email"] == address  # the rest is kept for the replay

    caplog.set_level(logging.WARNING, logger="notifier.events")
    assert await replay(notifier.settings.amqp_url, "notifier", {str(env.event_id)}) == 1
    row = await notifier.mail_status(env.event_id, "failed")
    assert (row["secret"], row["last_error"]) == (None, "the event carried no code or token")
    assert notifier.mails_to(address) == []
    assert any(
        "POST /guardianships/{guardianship_id}/invitation" in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


async def test_a_password_link_without_its_token_is_not_mailed_and_says_how_to_ask_again(
    notifier: RunningNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    address = an_address()
    caplog.set_level(logging.WARNING, logger="notifier.events")
    reset = PasswordResetRequested(
        request_id=uuid.uuid4(), person_id=uuid.uuid4(), email=address, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )  # fmt: skip
    env = envelope(reset, None, "test-replayed-reset")
    await notifier.handle_directly(env)  # as a replayed parked copy: reset_token blanked
    row = await notifier.mail_status(env.event_id, "failed")
    assert row["secret"] is None
    assert any("POST /auth/password-reset" in r.getMessage() for r in caplog.records)


async def test_an_invitation_and_its_childs_erasure_handled_at_once_never_leave_the_name(
    notifier: RunningNotifier,
) -> None:
    # Each in its own transaction, started together many times: whichever takes the child's lock
    # first, the row keeps neither name nor code: refused (the erasure came first), cancelled (it
    # came after) or sent in between (the sender took it before the erasure was handled).
    school_id = uuid.uuid4()
    for _ in range(20):
        child_id = uuid.uuid4()
        invitation = envelope(
            an_invitation(an_address(), a_code(), school_id=school_id, child_id=child_id, child_name="Noa"),
            school_id,
        )
        erased = envelope(ChildErased(child_id=child_id, school_id=school_id), school_id)
        await asyncio.gather(notifier.handle_directly(invitation), notifier.handle_directly(erased))
        row = await notifier.mail_row(invitation.event_id)
        assert (row["secret"], row["context"]["child_name"]) == (None, ""), dict(row)
        assert row["status"] in ("failed", "sent"), dict(row)


async def test_a_membership_granted_through_an_erased_child_does_not_keep_the_child(
    notifier: RunningNotifier,
) -> None:
    school_id, group_id, guardian, child_id, sibling = (uuid.uuid4() for _ in range(5))
    await notifier.handle_directly(envelope(ChildErased(child_id=child_id, school_id=school_id), school_id))
    granted = MembershipGranted(
        group_id=group_id, person_id=guardian, role="guardian", revision=1, children=[child_id, sibling]
    )
    await notifier.handle_directly(envelope(granted, school_id))
    children = await notifier.pool.fetchval(
        "SELECT children FROM memberships WHERE group_id = $1 AND person_id = $2", group_id, guardian
    )
    assert children == [sibling]


async def _in_one_transaction(site: Site, *steps: Any) -> None:
    """Make the digests due and handle events in one transaction: the sender cannot take the digest
    in between, so it is one not sent yet, as with the relay down."""
    async with site.pool.acquire() as conn, conn.transaction():
        await run_schedule(conn, datetime.now(UTC) + timedelta(minutes=40), "Europe/Amsterdam")
        for env in steps:
            handler = handlers.by_type[env.type]
            await handler.run(conn, env, handler.event.model_validate(env.payload))


async def test_a_digest_not_sent_yet_left_with_nothing_by_a_deletion_is_not_sent(site: Site) -> None:
    now = datetime.now(UTC)
    klas = await a_class(
        site, 1, devices=False, digest_time=f"{(now + timedelta(minutes=20)).astimezone(ZONE):%H:%M}"
    )
    [parent] = klas.parents
    await choose(site, parent, "email", "digest")
    post_id = await post(site, klas, "Morgen naar de Efteling", title="Uitje")
    await _in_one_transaction(
        site, envelope(PostDeleted(post_id=post_id, group_id=klas.group_id), klas.school_id)
    )
    [digest] = await site.pool.fetch(
        """SELECT d.status, d.last_error, n.context FROM deliveries d JOIN notifications n USING (notification_id)
           WHERE n.kind = 'digest' AND d.person_id = $1""",
        parent.person_id,
    )
    assert (digest["status"], digest["last_error"]) == ("failed", "cancelled: the post was deleted")
    assert digest["context"]["items"] == []
    await site.settle()
    assert site.mails_to(parent.email) == []


async def test_a_post_edited_after_the_digest_was_made_is_sent_as_it_reads_now(site: Site) -> None:
    now = datetime.now(UTC)
    klas = await a_class(
        site, 1, devices=False, digest_time=f"{(now + timedelta(minutes=20)).astimezone(ZONE):%H:%M}"
    )
    [parent] = klas.parents
    await choose(site, parent, "email", "digest")
    post_id = await post(site, klas, "Gymles op dinsdag", title="Gym")
    edit = PostUpdated(
        post_id=post_id, group_id=klas.group_id, author_id=uuid.uuid4(), editor_id=uuid.uuid4(),
        excerpt="Gymles op donderdag", title="Gym verzet", published=True,
    )  # fmt: skip
    await _in_one_transaction(site, envelope(edit, klas.school_id))
    mail = await _mail_to(site, parent.email)
    assert "Gymles op donderdag" in mail.text
    assert "Gym verzet" in mail.text
    assert "dinsdag" not in mail.text


async def _mail_to(site: Site, address: str) -> Any:
    async def arrived() -> bool:
        return bool(site.mails_to(address))

    await eventually(arrived, what=f"a mail to {address}")
    [mail] = site.mails_to(address)
    return mail


@pytest.mark.parametrize(
    ("smtp_host", "mail_from", "warned"),
    [
        ("smtp.sendgrid.net", None, True),  # the default, klaspost.local, through a real relay
        ("smtp.sendgrid.net", "Klaspost <noreply@localhost>", True),
        ("93.184.216.34", "Klaspost <noreply@school.test>", True),
        ("smtp.sendgrid.net", "Klaspost <noreply@deregenboog.nl>", False),
        ("127.0.0.1", None, False),  # the test sink: keeps every mail
        ("mailpit", None, False),  # compose's catcher
    ],
)
def test_a_sender_on_a_reserved_domain_is_named_at_start_up_when_mail_goes_to_a_real_relay(
    smtp_host: str, mail_from: str | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # PUBLIC_API_URL and PUBLIC_BASE_URL left local were named; MAIL_FROM left at its default
    # (klaspost.local, a domain relays and receiving servers refuse) was not, and no mail arrived.
    values = {
        "smtp_host": smtp_host,
        "public_api_url": "https://api.klaspost.nl",
        "public_base_url": "https://klaspost.nl",
    }
    settings = _settings(**values, **({"mail_from": mail_from} if mail_from else {}))
    with caplog.at_level(logging.WARNING, logger="notifier.resources"):
        problems = warn_about_local_urls(settings)
    assert [p.startswith("MAIL_FROM names a local or reserved domain") for p in problems] == (
        [True] if warned else []
    )
    assert any("MAIL_FROM" in r.getMessage() for r in caplog.records) == warned
