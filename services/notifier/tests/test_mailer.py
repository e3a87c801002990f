import asyncio
import socket
import uuid
from email.message import EmailMessage

import pytest
from pydantic import ValidationError

from notifier.delivery_errors import DeliveryFailed
from notifier.mailer import Mailer
from notifier.messages import new_post_email
from notifier.settings import Settings
from shared.testing.smtp import SmtpSink

MAIL_FROM = "Klaspost <noreply@klaspost.test>"


def settings_for(port, **kw):
    return Settings(
        database_url="postgresql://unused",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout_seconds=5,
        mail_from=MAIL_FROM,
        **kw,
    )


def new_post(locale="nl", to="ada@ouders.test", group_name="Groep 3B"):
    return new_post_email(
        locale,
        "Ada de Vries",
        to,
        group_name,
        "Morgen gym, neem je schoenen mee.",
        "https://klaspost.test/posts/1",
        uuid.uuid4(),
        MAIL_FROM,
    )


@pytest.fixture
async def mailers():
    """Makes Mailers (pools of open connections) and closes them after the test."""
    made = []

    def make(settings, **kw):
        made.append(Mailer(settings, **kw))
        return made[-1]

    yield make
    for mailer in made:
        await mailer.close()


@pytest.fixture
async def sink():
    async with SmtpSink() as s:
        yield s


@pytest.fixture
async def secure_sink():
    async with SmtpSink(starttls=True, username="notifier", password="s3cret") as s:
        yield s


@pytest.mark.parametrize(
    ("locale", "subject"), [("nl", "Nieuw bericht in Groep 3B"), ("en", "New post in Groep 3B")]
)
async def test_new_post_mail_arrives_with_text_and_html(sink, locale, subject, mailers):
    await mailers(settings_for(sink.port)).send(new_post(locale, group_name="Groep 3B"))

    [mail] = await sink.wait_for(1)
    assert mail.mail_from == "noreply@klaspost.test"
    assert mail.rcpt_tos == ("ada@ouders.test",)
    msg = mail.message
    assert msg["Subject"] == subject
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "Groep 3B" in msg.get_body(("plain",)).get_content()
    assert "<strong>Groep 3B</strong>" in msg.get_body(("html",)).get_content()


async def test_group_name_with_a_script_tag_arrives_escaped(sink, mailers):
    await mailers(settings_for(sink.port)).send(new_post(group_name="<script>alert('x')</script>"))

    [mail] = await sink.wait_for(1)
    html = mail.message.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


async def test_a_resent_notification_keeps_its_message_id(sink, mailers):
    msg = new_post()
    mailer = mailers(settings_for(sink.port))
    await mailer.send(msg)
    await mailer.send(msg)

    first, second = await sink.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"] == msg["Message-ID"]
    assert second.message["X-Klaspost-Notification-Id"] == msg["X-Klaspost-Notification-Id"]


async def test_starttls_and_auth_deliver(secure_sink, mailers):
    settings = settings_for(
        secure_sink.port, smtp_starttls=True, smtp_username="notifier", smtp_password="s3cret"
    )
    await mailers(settings, tls_context=secure_sink.client_tls_context()).send(new_post())

    [mail] = await secure_sink.wait_for(1)
    assert mail.tls
    assert mail.login == "notifier"


async def test_wrong_password_is_a_temporary_delivery_failure(secure_sink, mailers):
    settings = settings_for(
        secure_sink.port, smtp_starttls=True, smtp_username="notifier", smtp_password="wrong"
    )
    mailer = mailers(settings, tls_context=secure_sink.client_tls_context())

    with pytest.raises(DeliveryFailed, match="authentication failed") as failure:
        await mailer.send(new_post())
    # Fixing the credentials should deliver the backlog, so this must not be given up on.
    assert not failure.value.permanent
    assert secure_sink.messages == []


async def test_a_server_that_requires_auth_refuses_mail_without_it(secure_sink, mailers):
    settings = settings_for(secure_sink.port, smtp_starttls=True)
    mailer = mailers(settings, tls_context=secure_sink.client_tls_context())

    with pytest.raises(DeliveryFailed):
        await mailer.send(new_post())
    assert secure_sink.messages == []


async def test_an_untrusted_certificate_is_a_temporary_failure(secure_sink, mailers):
    settings = settings_for(
        secure_sink.port, smtp_starttls=True, smtp_username="notifier", smtp_password="s3cret"
    )

    with pytest.raises(DeliveryFailed) as failure:
        await mailers(settings).send(new_post())  # the system trust store does not know the sink
    assert not failure.value.permanent


async def test_refused_recipient_is_a_permanent_failure(sink, mailers):
    sink.refuse_domain("bounce.test")

    with pytest.raises(DeliveryFailed, match="550") as failure:
        await mailers(settings_for(sink.port)).send(new_post(to="nobody@bounce.test"))
    assert failure.value.permanent
    assert not failure.value.gone


async def test_recipient_refused_with_4xx_is_temporary(sink, mailers):
    sink.refuse_domain("busy.test", "450 4.2.1 Mailbox busy, try later")

    with pytest.raises(DeliveryFailed, match="450") as failure:
        await mailers(settings_for(sink.port)).send(new_post(to="ada@busy.test"))
    assert not failure.value.permanent


async def test_partly_refused_recipients_are_not_retried(sink, mailers):
    sink.refuse_domain("bounce.test")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = MAIL_FROM, "a@ouders.test, b@bounce.test", "test"
    msg.set_content("hallo")

    with pytest.raises(DeliveryFailed, match=r"^recipients refused: 550 ") as failure:
        await mailers(settings_for(sink.port)).send(msg)
    assert failure.value.permanent  # a retry would mail a@ouders.test twice
    # The reason is stored and grouped in the operator's report: the relay's answer, not the address.
    assert "bounce.test" not in failure.value.reason
    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("a@ouders.test",)


async def test_no_server_listening_is_a_temporary_failure(mailers):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed

    with pytest.raises(DeliveryFailed) as failure:
        await mailers(settings_for(port)).send(new_post())
    assert not failure.value.permanent


async def test_a_server_that_never_answers_is_a_temporary_failure_within_the_timeout(mailers):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept the connection, never greet
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = settings_for(port).model_copy(update={"smtp_timeout_seconds": 0.3})
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeliveryFailed) as failure:
            await mailers(settings).send(new_post())
        assert not failure.value.permanent
        assert loop.time() - started < 3
    finally:
        server.close()
        await server.wait_closed()


async def test_an_international_domain_travels_as_its_ascii_form(sink, mailers):
    await mailers(settings_for(sink.port)).send(new_post(to="ada@bücher.test"))

    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("ada@xn--bcher-kva.test",)
    assert mail.message["To"].addresses[0].addr_spec == "ada@xn--bcher-kva.test"
    assert b"xn--bcher-kva.test" in mail.raw


async def test_a_non_ascii_local_part_fails_for_good_at_a_relay_without_smtputf8(sink, mailers):
    with pytest.raises(DeliveryFailed, match="SMTPUTF8") as failure:
        await mailers(settings_for(sink.port)).send(new_post(to="ünï@ouders.test"))

    assert failure.value.permanent
    assert sink.messages == []


async def test_a_non_ascii_local_part_is_delivered_by_a_relay_with_smtputf8(mailers):
    async with SmtpSink(smtputf8=True) as sink:
        await mailers(settings_for(sink.port)).send(new_post(to="ünï@bücher.test"))

        [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("ünï@xn--bcher-kva.test",)
    # In UTF-8 in the header itself (RFC 6532), which the email package's byte parser cannot read back.
    assert "<ünï@xn--bcher-kva.test>".encode() in mail.raw


# Issue 8, case 4: one new connection per message made a 1,000-parent post take 12 s.


async def until(condition, what):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_messages_one_after_another_share_one_connection(sink, mailers):
    mailer = mailers(settings_for(sink.port))
    for _ in range(50):
        await mailer.send(new_post())

    assert len(await sink.wait_for(50)) == 50
    assert sink.connections == 1


async def test_a_thousand_mails_at_once_go_over_a_bounded_number_of_reused_connections(sink, mailers):
    settings = settings_for(sink.port, smtp_max_connections=4, smtp_messages_per_connection=100)
    mailer = mailers(settings)
    messages = [new_post(to=f"ouder{i}@ouders.test") for i in range(1000)]

    await asyncio.gather(*(mailer.send(msg) for msg in messages))

    received = await sink.wait_for(1000)
    assert sorted(m.message["Message-ID"] for m in received) == sorted(m["Message-ID"] for m in messages)
    assert sink.peak_connections <= 4
    assert 10 <= sink.connections <= 1000 // 100 + 4


async def test_a_connection_is_replaced_after_its_message_limit(sink, mailers):
    mailer = mailers(settings_for(sink.port, smtp_messages_per_connection=3))
    for _ in range(7):
        await mailer.send(new_post())

    await sink.wait_for(7)
    assert sink.connections == 3
    await until(lambda: sink.open_connections == 1, "the used-up connections closed")


async def test_starttls_and_auth_happen_once_per_connection_not_per_message(secure_sink, mailers):
    settings = settings_for(
        secure_sink.port, smtp_starttls=True, smtp_username="notifier", smtp_password="s3cret"
    )
    mailer = mailers(settings, tls_context=secure_sink.client_tls_context())
    for _ in range(3):
        await mailer.send(new_post())

    mails = await secure_sink.wait_for(3)
    assert all(m.tls and m.login == "notifier" for m in mails)
    assert secure_sink.connections == 1


async def test_a_refused_recipient_leaves_the_connection_usable_for_the_next_message(sink, mailers):
    sink.refuse_domain("bounce.test")
    mailer = mailers(settings_for(sink.port))

    with pytest.raises(DeliveryFailed, match="550") as failure:
        await mailer.send(new_post(to="nobody@bounce.test"))
    assert failure.value.permanent
    await mailer.send(new_post(to="ada@ouders.test"))

    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("ada@ouders.test",)
    assert sink.connections == 1


async def test_a_connection_the_relay_dropped_is_replaced_and_the_mail_goes(sink, mailers):
    mailer = mailers(settings_for(sink.port))
    await mailer.send(new_post())
    sink.drop_connections()
    await until(lambda: sink.open_connections == 0, "the relay dropping the connection")

    await mailer.send(new_post())

    assert len(await sink.wait_for(2)) == 2
    assert sink.connections == 2


async def test_a_kept_connection_the_relay_closed_unseen_is_replaced_and_the_mail_goes(
    sink, mailers, monkeypatch
):
    # Whether the pool finds it out first (closed transport, failed NOOP) or only when MAIL FROM
    # meets the closed socket, the mail goes once, over a new connection.
    monkeypatch.setattr("notifier.mailer._CHECK_AFTER_SECONDS", 3600.0)  # no NOOP: reuse at once
    mailer = mailers(settings_for(sink.port))
    await mailer.send(new_post())
    sink.drop_connections()

    await mailer.send(new_post())

    assert len(await sink.wait_for(2)) == 2
    assert sink.connections == 2


async def test_after_a_pause_a_closed_connection_is_found_out_by_noop(sink, mailers, monkeypatch):
    monkeypatch.setattr("notifier.mailer._CHECK_AFTER_SECONDS", 0.0)
    mailer = mailers(settings_for(sink.port))
    await mailer.send(new_post())
    sink.drop_connections()
    await until(lambda: sink.open_connections == 0, "the relay dropping the connection")

    await mailer.send(new_post())

    assert len(await sink.wait_for(2)) == 2
    assert sink.connections == 2


async def test_an_idle_connection_is_closed_after_the_idle_time(sink, mailers):
    mailer = mailers(settings_for(sink.port, smtp_idle_seconds=0.2))
    await mailer.send(new_post())
    assert sink.open_connections == 1

    await until(lambda: sink.open_connections == 0, "the idle connection closed")
    await mailer.send(new_post())
    assert sink.connections == 2


async def test_closing_the_mailer_closes_its_connections(sink):
    mailer = Mailer(settings_for(sink.port, smtp_max_connections=3))
    await asyncio.gather(*(mailer.send(new_post()) for _ in range(9)))
    assert sink.open_connections >= 1

    await mailer.close()

    await until(lambda: sink.open_connections == 0, "the connections closed")


async def test_implicit_tls_and_auth_deliver_over_one_kept_connection(mailers):
    async with SmtpSink(implicit_tls=True, username="notifier", password="s3cret") as sink:
        settings = settings_for(
            sink.port, smtp_implicit_tls=True, smtp_username="notifier", smtp_password="s3cret"
        )
        mailer = mailers(settings, tls_context=sink.client_tls_context())
        for _ in range(2):
            await mailer.send(new_post())

        mails = await sink.wait_for(2)
        assert all(m.tls and m.login == "notifier" for m in mails)
        assert sink.connections == 1
        await mailer.close()


def test_starttls_and_implicit_tls_together_are_refused_at_start():
    with pytest.raises(ValidationError, match="not both"):
        settings_for(465, smtp_starttls=True, smtp_implicit_tls=True)


async def test_an_abandoned_envelope_delivers_nothing_and_its_connection_carries_the_next_mail(sink, mailers):
    """Only the end of DATA makes a relay take a mail (RFC 5321 §4.1.1.4): an envelope opened (MAIL
    FROM, RCPT TO) and abandoned is reset, and the same connection then delivers the next mail once."""
    mailer = mailers(settings_for(sink.port, smtp_max_connections=1))
    kept = new_post(to="ada@ouders.test")
    dropped = await mailer.open(new_post(to="bob@ouders.test"))
    waiting = asyncio.create_task(mailer.open(kept))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "one connection: the second envelope waits for the first to end"

    await dropped.abandon()
    await (await waiting).deliver()

    [mail] = await sink.wait_for(1)
    assert mail.rcpt_tos == ("ada@ouders.test",)
    assert mail.message["Message-ID"] == kept["Message-ID"]
    await asyncio.sleep(0.05)
    assert len(sink.messages) == 1
    assert sink.connections == 1
