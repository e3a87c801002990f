"""Hands mail to the SMTP server and says whether a failure is worth retrying."""

import ssl
from collections.abc import Mapping
from email.message import EmailMessage

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender

from notifier.delivery_errors import DeliveryFailed
from notifier.settings import Settings


class Mailer:
    """One SMTP connection per message: notifications are few per minute and a fresh connection
    never trips over a server that dropped an idle one."""

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        # tls_context is for a private CA (tests); otherwise the system's trust store verifies the server.
        self._settings = settings
        self._tls_context = tls_context

    async def send(self, msg: EmailMessage) -> None:
        """Hand msg to the relay. Raises DeliveryFailed, permanent when a retry cannot help: the relay
        refused with a 5xx, or an address needs SMTPUTF8 (RFC 6531) and the relay does not offer it."""
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            # Explicit False: aiosmtplib's default upgrades opportunistically, which breaks on
            # servers with a certificate we cannot verify when TLS was not asked for.
            start_tls=s.smtp_starttls,
            tls_context=self._tls_context,
            timeout=s.smtp_timeout_seconds,
        )
        try:
            async with client:
                if _needs_smtputf8(msg):
                    await _require_smtputf8(client)
                refused, _ = await client.send_message(msg)
        except aiosmtplib.SMTPException as exc:
            raise _classify(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise DeliveryFailed(False, f"smtp connection failed: {exc!r}") from exc
        if refused:
            # Some recipients took it, so a retry would send them a duplicate.
            raise DeliveryFailed(True, f"recipients refused: {_describe(refused)}")


def _needs_smtputf8(msg: EmailMessage) -> bool:
    # International domains are sent as A-labels (see compose.recipient); a UTF-8 local part cannot be.
    addresses = [extract_sender(msg) or "", *extract_recipients(msg)]
    return not all(address.isascii() for address in addresses)


async def _require_smtputf8(client: aiosmtplib.SMTP) -> None:
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    if not client.supports_extension("smtputf8"):
        raise DeliveryFailed(
            True,
            "the address has non-ASCII characters before the @, and the mail server does not "
            "offer SMTPUTF8 to deliver it",
        )


_REFUSALS = (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError)


def _classify(exc: aiosmtplib.SMTPException) -> DeliveryFailed:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = {r.recipient: (r.code, r.message) for r in exc.recipients}
        permanent = all(_is_permanent(code) for code, _ in refusals.values())
        return DeliveryFailed(permanent, f"recipients refused: {_describe(refusals)}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Like Postfix, defer rather than bounce: fixing the credentials should deliver the backlog.
        return DeliveryFailed(False, f"smtp authentication failed: {exc.code} {exc.message}")
    if isinstance(exc, _REFUSALS):
        return DeliveryFailed(_is_permanent(exc.code), f"smtp refused the message: {exc.code} {exc.message}")
    # Timeouts, disconnects, a failed TLS upgrade, an unhappy greeting: the server, not this message.
    return DeliveryFailed(False, f"smtp failed: {type(exc).__name__}: {exc}")


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


def _describe(refusals: Mapping[str, tuple[int, str]]) -> str:
    return "; ".join(f"{rcpt}: {code} {message}" for rcpt, (code, message) in refusals.items())
