"""One-off mails through a running notifier: identity's InvitationIssued and PasswordResetRequested
events, published on the broker, become exactly one mail each with the code or link, in the reader's
language; the code or token is gone from the database once the mail is sent or given up on, and
never appears in a log line."""

import asyncio
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.contracts import AccountChanged, InvitationIssued, PasswordResetRequested, SchoolChanged
from shared.logs import JsonFormatter
from shared.testing.smtp import link_secret

EXPIRES = datetime(2099, 12, 14, 16, 0, tzinfo=UTC)  # a Monday; 17:00 in Amsterdam, 12:00 on Bonaire


def an_address(domain: str = "ouders.test", local: str = "ouder") -> str:
    return f"{local}-{uuid.uuid4().hex[:8]}@{domain}"


def a_code() -> str:
    """Shaped like identity's access codes: KD7M-3QXZ-PA4R-9TNF."""
    raw = "".join(secrets.choice("ACDEFGHJKMNPQRTUVWXYZ234679") for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def an_invitation(email: str, code: str, **kw) -> InvitationIssued:
    fields = {
        "invitation_id": uuid.uuid4(),
        "school_id": uuid.uuid4(),
        "email": email,
        "locale": "nl",
        "school_name": "De Regenboog",
        "child_name": "Sam",
        "access_code": code,
        "expires_at": EXPIRES,
    } | kw
    return InvitationIssued(**fields)


def a_reset(email: str, token: str, **kw) -> PasswordResetRequested:
    fields = {
        "request_id": uuid.uuid4(),
        "person_id": uuid.uuid4(),
        "email": email,
        "locale": "nl",
        "reset_token": token,
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    } | kw
    return PasswordResetRequested(**fields)


def a_school(school_id: uuid.UUID, time_zone: str) -> SchoolChanged:
    return SchoolChanged(
        school_id=school_id,
        name="Kolegio Papa Cornes",
        time_zone=time_zone,
        locale="nl",
        max_posts_per_day=1,
        min_posts_per_week=1,
        digest_time="18:00",
        photo_retention_days=365,
        share_notice="",
        revision=1,
    )


async def test_an_invitation_handled_twice_is_mailed_once_with_its_code(notifier) -> None:
    address, code = an_address(), a_code()

    env = await notifier.publish(an_invitation(address, code))
    await notifier.publish_envelope(env)  # the broker redelivers
    await notifier.handle_directly(env)  # handled again after its inbox row was trimmed

    mail = await notifier.mail_to(address)
    await notifier.mail_status(env.event_id, "sent")
    await asyncio.sleep(1)  # room for a second mail to arrive
    assert len(notifier.mails_to(address)) == 1
    assert await notifier.pool.fetchval("SELECT count(*) FROM mails WHERE to_email = $1", address) == 1
    assert link_secret(mail, "code") == code
    assert f"https://klaspost.test/invite#code={code}" in mail.text
    assert f"    {code}\n" in mail.text
    html = mail.message.get_body(("html",)).get_content()
    assert f'href="https://klaspost.test/invite#code={code}"' in html
    assert all(f">{group}</span>" in html for group in code.split("-"))
    assert mail.message["Message-ID"].strip() == f"<invitation.{env.event_id}@klaspost.test>"
    assert mail.message["X-Klaspost-Mail-Id"] == str(env.event_id)
    assert mail.message["Auto-Submitted"] == "auto-generated"


async def test_a_sent_invitation_keeps_no_code_and_no_log_line_shows_it(
    notifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    address, code = an_address(), a_code()

    env = await notifier.publish(an_invitation(address, code))
    await notifier.mail_to(address)
    row = await notifier.mail_status(env.event_id, "sent")

    assert row["secret"] is None
    assert row["sent_at"] is not None
    assert row["kind"] == "invitation"
    assert (
        await notifier.pool.fetchval(
            "SELECT count(*) FROM mails m WHERE strpos(m::text, $1) > 0",
            code,
        )
        == 0
    )
    formatter = JsonFormatter("notifier")
    assert [r for r in caplog.records if getattr(r, "mail_id", None) == str(env.event_id)], "no log line"
    # Not ours: mail.log is aiosmtpd's, the receiving mail server in this process, which logs what it
    # is sent; the AMQP client libraries log frames at DEBUG (shared.logs keeps them at WARNING).
    ours = [r for r in caplog.records if r.name.split(".")[0] not in ("mail", "aiormq", "aio_pika")]
    for record in ours:
        assert code not in formatter.format(record), record.getMessage()


@pytest.mark.parametrize(
    ("locale", "subject", "wording"),
    [
        ("nl", "De Regenboog nodigt u uit voor Klaspost voor Sam", "U bent uitgenodigd om de klas van Sam"),
        ("en", "De Regenboog invites you to Klaspost for Sam", "You are\ninvited to follow the class of Sam"),
    ],
)
async def test_an_invitation_speaks_the_readers_language(notifier, locale, subject, wording) -> None:
    address, code = an_address(), a_code()

    await notifier.publish(an_invitation(address, code, locale=locale))

    mail = await notifier.mail_to(address)
    assert mail.message["Subject"] == subject
    assert mail.message["Content-Language"] == locale
    assert wording in mail.text
    assert "reminder" not in mail.text.lower()
    assert "herinnering" not in mail.text.lower()


@pytest.mark.parametrize(
    ("locale", "subject", "wording"),
    [
        (
            "nl",
            "Herinnering: De Regenboog nodigt u uit voor Klaspost voor Sam",
            "Een herinnering: u heeft uw uitnodiging voor Klaspost nog niet gebruikt.",
        ),
        (
            "en",
            "Reminder: De Regenboog invites you to Klaspost for Sam",
            "A reminder: you have not used your invitation to Klaspost yet.",
        ),
    ],
)
async def test_a_reminder_says_it_is_one(notifier, locale, subject, wording) -> None:
    address, code = an_address(), a_code()

    env = await notifier.publish(an_invitation(address, code, locale=locale, reminder=2))

    mail = await notifier.mail_to(address)
    assert mail.message["Subject"] == subject
    assert wording in mail.text
    assert link_secret(mail, "code") == code
    assert mail.message["Message-ID"].strip() == f"<invitation_reminder.{env.event_id}@klaspost.test>"
    assert (await notifier.mail_status(env.event_id, "sent"))["kind"] == "invitation_reminder"


@pytest.mark.parametrize(
    ("locale", "subject", "greeting", "ignore"),
    [
        (
            "nl",
            "Nieuw wachtwoord voor Klaspost",
            "Beste Ada de Vries,",
            "Heeft u dit niet gevraagd? Dan kunt u deze e-mail negeren",
        ),
        (
            "en",
            "Reset your Klaspost password",
            "Dear Ada de Vries,",
            "Did you not ask for this? Then ignore this email",
        ),
    ],
)
async def test_a_password_reset_mails_a_single_use_link(notifier, locale, subject, greeting, ignore) -> None:
    address, token = an_address(), secrets.token_urlsafe(32)
    person_id = uuid.uuid4()
    await notifier.publish(
        AccountChanged(
            person_id=person_id, email=address, display_name="Ada de Vries", locale=locale, revision=1
        )
    )

    async def known() -> bool:
        return bool(await notifier.pool.fetchval("SELECT 1 FROM people WHERE person_id = $1", person_id))

    await notifier.eventually(known)
    env = await notifier.publish(a_reset(address, token, person_id=person_id, locale=locale))

    mail = await notifier.mail_to(address)
    assert mail.message["Subject"] == subject
    assert mail.text.startswith(greeting)
    assert ignore in mail.text
    assert link_secret(mail, "token") == token
    assert f"https://klaspost.test/reset-password#token={token}" in mail.text
    assert mail.message["Message-ID"].strip() == f"<password_reset.{env.event_id}@klaspost.test>"
    row = await notifier.mail_status(env.event_id, "sent")
    assert row["secret"] is None


@pytest.mark.parametrize(
    ("locale", "school_name", "subject", "wording"),
    [
        (
            "nl",
            "De Regenboog",
            "De Regenboog heeft u toegevoegd aan Klaspost: stel uw wachtwoord in",
            "Stel via deze link uw wachtwoord in",
        ),
        (
            "en",
            "De Regenboog",
            "De Regenboog added you to Klaspost: set your password",
            "Set your password with this link",
        ),
        ("nl", None, "Welkom bij Klaspost: stel uw wachtwoord in", "U bent toegevoegd aan Klaspost."),
        ("en", None, "Welcome to Klaspost: set your password", "You have been added to Klaspost."),
    ],
)
async def test_new_staff_are_welcomed_with_a_link_to_set_their_password(
    notifier, locale, school_name, subject, wording
) -> None:
    address, token = an_address("school.test", "juf"), secrets.token_urlsafe(32)

    env = await notifier.publish(
        a_reset(address, token, purpose="welcome", school_name=school_name, locale=locale)
    )

    mail = await notifier.mail_to(address)
    assert mail.message["Subject"] == subject
    assert wording in mail.text
    assert link_secret(mail, "token") == token
    assert mail.message["Message-ID"].strip() == f"<welcome.{env.event_id}@klaspost.test>"
    assert (await notifier.mail_status(env.event_id, "sent"))["secret"] is None


async def test_the_expiry_is_shown_in_the_schools_time_zone(notifier) -> None:
    bonaire = uuid.uuid4()
    await notifier.publish(a_school(bonaire, "America/Kralendijk"))

    async def known() -> bool:
        return bool(await notifier.pool.fetchval("SELECT 1 FROM schools WHERE school_id = $1", bonaire))

    await notifier.eventually(known)
    there, unknown = an_address(), an_address()
    await notifier.publish(an_invitation(there, a_code(), school_id=bonaire, expires_at=EXPIRES))
    await notifier.publish(an_invitation(unknown, a_code(), expires_at=EXPIRES, locale="en"))

    assert "geldig tot maandag 14 december 2099 om 12:00." in (await notifier.mail_to(there)).text
    # A school the notifier has not heard of yet: the deployment's default zone (Amsterdam).
    assert "valid until Monday 14 December 2099 at 17:00." in (await notifier.mail_to(unknown)).text


async def test_an_international_domain_is_sent_in_its_ascii_form(notifier) -> None:
    local = f"ouder-{uuid.uuid4().hex[:8]}"
    code = a_code()

    env = await notifier.publish(an_invitation(f"{local}@Bücher.test", code))

    mail = await notifier.mail_to(f"{local}@xn--bcher-kva.test")
    assert mail.rcpt_tos == (f"{local}@xn--bcher-kva.test",)
    assert mail.message["To"].addresses[0].addr_spec == f"{local}@xn--bcher-kva.test"
    assert link_secret(mail, "code") == code
    await notifier.mail_status(env.event_id, "sent")


async def test_a_non_ascii_local_part_fails_for_good_when_the_relay_lacks_smtputf8(notifier) -> None:
    address, code = an_address(local="ünïcode"), a_code()

    env = await notifier.publish(an_invitation(address, code))

    row = await notifier.mail_status(env.event_id, "failed")
    assert "SMTPUTF8" in row["last_error"]
    assert row["attempts"] == 1
    assert row["secret"] is None
    assert notifier.mails_to(address) == []


async def test_a_refused_address_is_given_up_on_and_its_code_dropped(notifier) -> None:
    notifier.sink.refuse_domain("bounce.test")
    code = a_code()

    env = await notifier.publish(an_invitation(an_address("bounce.test"), code))

    row = await notifier.mail_status(env.event_id, "failed")
    assert "550" in row["last_error"]
    assert code not in row["last_error"]
    assert row["secret"] is None


async def test_a_temporary_refusal_keeps_the_code_for_the_next_try(notifier) -> None:
    notifier.sink.refuse_domain("busy.test", "450 4.2.1 Mailbox busy, try later")
    code = a_code()

    env = await notifier.publish(an_invitation(an_address("busy.test"), code))

    async def tried() -> bool:
        return bool(
            await notifier.pool.fetchval("SELECT last_error FROM mails WHERE mail_id = $1", env.event_id)
        )

    await notifier.eventually(tried)
    row = await notifier.mail_row(env.event_id)
    assert row["status"] == "pending"
    assert "450" in row["last_error"]
    assert row["secret"] == code
    assert row["next_attempt_at"] > datetime.now(UTC)


async def test_an_invitation_that_expired_before_it_could_be_sent_is_not_mailed(notifier) -> None:
    address = an_address()

    env = await notifier.publish(
        an_invitation(address, a_code(), expires_at=datetime.now(UTC) - timedelta(minutes=1))
    )

    row = await notifier.mail_status(env.event_id, "failed")
    assert "expired" in row["last_error"]
    assert row["secret"] is None
    assert notifier.mails_to(address) == []


async def test_an_invitation_without_a_code_is_recorded_as_failed_and_not_mailed(notifier) -> None:
    address = an_address()

    env = await notifier.publish(an_invitation(address, ""))

    row = await notifier.mail_status(env.event_id, "failed")
    assert row["last_error"] == "the event carried no code or token"
    assert row["attempts"] == 0
    assert notifier.mails_to(address) == []
