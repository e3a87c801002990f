"""No log line carries an access code or reset token (shared/logs.py), with everything at DEBUG,
the AMQP client libraries too (as if their WARNING floor were lifted): invitations and password
resets published, consumed and mailed, and an unreadable invitation parked with a pydantic error."""

import io
import logging
import secrets

import pytest

from shared.envelope import envelope
from shared.logs import WITHHELD, log_handler

from .conftest import RunningNotifier
from .test_mails import a_code, a_reset, an_address, an_invitation


async def test_no_log_line_carries_a_code_or_token_even_with_every_library_at_debug(
    notifier: RunningNotifier, caplog: pytest.LogCaptureFixture
) -> None:
    # aiosmtpd, the test's SMTP server in this process, logs what it receives: the relay's log, not ours.
    caplog.set_level(logging.WARNING, logger="mail")
    for library in ("aiormq", "aio_pika", "pamqp"):
        caplog.set_level(logging.DEBUG, logger=library)
    caplog.set_level(logging.DEBUG)  # last: it sets the capturing handler's level too
    out = io.StringIO()
    handler = log_handler("notifier", stream=out)  # the services' own handler, as setup_logging adds it
    logging.getLogger().addHandler(handler)
    code, token, unread = a_code(), secrets.token_urlsafe(32), a_code()
    try:
        invitation = await notifier.publish(an_invitation(an_address(), code))
        reset = await notifier.publish(a_reset(an_address(), token))
        # Unreadable (no expiry): parked, with pydantic's error, which prints what it was given.
        broken = envelope(an_invitation(an_address(), unread), None, "test-secrets")
        del broken.payload["expires_at"]
        await notifier.publish_envelope(broken)
        await notifier.mail_status(invitation.event_id, "sent")
        await notifier.mail_status(reset.event_id, "sent")

        async def parked() -> bool:
            return any(r.getMessage() == "event parked" for r in caplog.records)

        await notifier.eventually(parked, "the unreadable invitation parked")
    finally:
        logging.getLogger().removeHandler(handler)

    withheld = [code, code.replace("-", ""), token, unread, unread[-4:]]
    records = [(r.name, f"{r.getMessage()} {r.exc_text or ''} {r.__dict__}") for r in caplog.records]
    assert not [(name, text) for name, text in records if any(s in text for s in withheld)]
    assert not [line for line in out.getvalue().splitlines() if any(s in line for s in withheld)]
    # The worst case was met: the AMQP library printed message bodies, with the code withheld.
    assert [
        name for name, text in records if name.startswith("aiormq") and f'"access_code":"{WITHHELD}"' in text
    ]
