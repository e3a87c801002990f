"""Hands mail to the SMTP relay over a few kept-open connections, and says whether a failure is
worth retrying."""

import asyncio
import re
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from types import TracebackType
from typing import Self

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender

from notifier.compose import OutgoingMail
from notifier.delivery_errors import DeliveryFailed
from notifier.settings import Settings

# A connection unused for this long is asked (NOOP) whether the relay still holds it before reuse.
_CHECK_AFTER_SECONDS = 2.0


class _Dropped(Exception):
    """A kept connection turned out closed by the relay before this message could go."""


class _Connection:
    """One open SMTP session and how much it has been used."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.sent = 0
        self.idle_since = 0.0
        self.expiry: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """Drop the connection at once (its state is unknown, or nobody waits for it)."""
        if self.expiry is not None:
            self.expiry.cancel()
        self.client.close()

    async def quit(self) -> None:
        """End the session with QUIT, so the relay has let go of it before a new one takes its place
        (relays limit connections per client)."""
        try:
            await self.client.quit()  # within the client's timeout (SMTP_TIMEOUT_SECONDS)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            self.close()


class Mailer:
    """A pool of connections to the one SMTP relay: each carries several messages (the relay
    resets the transaction after each; after a refusal aiosmtplib sends RSET), at most
    ``smtp_max_connections`` are open at once, and one is replaced after
    ``smtp_messages_per_connection`` messages, ``smtp_idle_seconds`` unused, or any failure that
    leaves its state unknown. A fresh connection per message cost a TCP (and TLS, AUTH) set-up each:
    83 mails/s for a 1,000-parent post.

    Use ``async with`` or call ``close()``: open connections belong to the running event loop.
    """

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        # tls_context is for a private CA (tests); otherwise the system's trust store verifies the server.
        self._settings = settings
        self._tls_context = tls_context
        self._slots = asyncio.Semaphore(settings.smtp_max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the idle connections (QUIT); one still sending is closed when its send ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(c.quit() for c in idle))

    async def send(self, msg: EmailMessage | OutgoingMail) -> None:
        """Hand msg to the relay. Raises DeliveryFailed, permanent when a retry cannot help: the relay
        refused with a 5xx, or an address needs SMTPUTF8 (RFC 6531) and the relay does not offer it."""
        async with self._slots:
            connection = await self._take()
            try:
                refused = await self._send_on(connection, msg)
            except _Dropped:
                # The relay closed a kept connection just as it was reused: try once on a fresh one.
                refused = await self._send_on(await self._connect(), msg)
        if refused:
            # Some recipients took it, so a retry would send them a duplicate.
            raise DeliveryFailed(True, f"recipients refused: {_describe(refused)}")

    async def _send_on(
        self, connection: _Connection, msg: EmailMessage | OutgoingMail
    ) -> dict[str, tuple[int, str]]:
        reused = connection.sent > 0
        keep = False
        try:
            if _needs_smtputf8(msg):
                await _require_smtputf8(connection.client)
            if isinstance(msg, OutgoingMail):
                # Built as bytes (compose.OutgoingMail): 7-bit, ASCII addresses, nothing to flatten.
                refused, _ = await connection.client.sendmail(msg.sender, list(msg.recipients), msg.data)
            else:
                refused, _ = await connection.client.send_message(msg)
            keep = True
            return {rcpt: (reply.code, reply.message) for rcpt, reply in refused.items()}
        except DeliveryFailed:
            keep = True
            raise
        except aiosmtplib.SMTPServerDisconnected as exc:
            if reused:
                raise _Dropped from exc
            raise _classify(exc) from exc
        except aiosmtplib.SMTPException as exc:
            # After a refusal aiosmtplib has sent RSET; anything else leaves the session unknown.
            keep = isinstance(exc, (aiosmtplib.SMTPRecipientsRefused, *_REFUSALS))
            raise _classify(exc) from exc
        except (OSError, TimeoutError) as exc:
            if reused and isinstance(exc, ConnectionError):
                raise _Dropped from exc
            raise DeliveryFailed(False, f"smtp connection failed: {exc!r}") from exc
        finally:
            connection.sent += 1
            await self._give_back(connection, keep)

    async def _take(self) -> _Connection:
        """An idle connection the relay still holds, else a new one. Raises DeliveryFailed
        (temporary) when no connection can be made."""
        loop = asyncio.get_running_loop()
        while self._idle:
            connection = self._idle.pop()
            if connection.expiry is not None:
                connection.expiry.cancel()
            if not connection.client.is_connected:
                connection.close()
                continue
            if loop.time() - connection.idle_since < _CHECK_AFTER_SECONDS:
                return connection
            try:
                await connection.client.noop()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                connection.close()
                continue
            return connection
        return await self._connect()

    async def _connect(self) -> _Connection:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_implicit_tls,
            # Explicit False: aiosmtplib's default upgrades opportunistically, which breaks on
            # servers with a certificate we cannot verify when TLS was not asked for.
            start_tls=s.smtp_starttls,
            tls_context=self._tls_context,
            timeout=s.smtp_timeout_seconds,
        )
        try:
            await client.connect()  # greeting, EHLO, STARTTLS and AUTH as configured
        except aiosmtplib.SMTPException as exc:
            client.close()
            raise _classify(exc) from exc
        except (OSError, TimeoutError) as exc:
            client.close()
            raise DeliveryFailed(False, f"smtp connection failed: {exc!r}") from exc
        return _Connection(client)

    async def _give_back(self, connection: _Connection, keep: bool) -> None:
        s = self._settings
        if not keep or not connection.client.is_connected:
            connection.close()
            return
        if self._closed or connection.sent >= s.smtp_messages_per_connection:
            # Still holding the send slot: the replacement opens only once this one is gone.
            await connection.quit()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        connection.expiry = loop.call_later(s.smtp_idle_seconds, self._expire, connection)
        self._idle.append(connection)

    def _expire(self, connection: _Connection) -> None:
        # Relays drop idle sessions (Postfix after 300 s, many sooner): close ours before they do.
        if connection in self._idle:
            self._idle.remove(connection)
            connection.expiry = None
            connection.close()


def _needs_smtputf8(msg: EmailMessage | OutgoingMail) -> bool:
    if isinstance(msg, OutgoingMail):
        return not all(address.isascii() for address in (msg.sender, *msg.recipients))
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
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        # Our own MAIL FROM refused (a relay that does not allow the sender): the set-up, the same for
        # every mail, not this message; deferred like an authentication failure, so fixing it
        # delivers the backlog instead of failing every mail for good.
        return DeliveryFailed(False, f"smtp refused the sender: {exc.code} {exc.message}")
    if isinstance(exc, _REFUSALS):
        return DeliveryFailed(_is_permanent(exc.code), f"smtp refused the message: {exc.code} {exc.message}")
    # Timeouts, disconnects, a failed TLS upgrade, an unhappy greeting: the server, not this message.
    return DeliveryFailed(False, f"smtp failed: {type(exc).__name__}: {exc}")


def _is_permanent(code: int) -> bool:
    return 500 <= code < 600


def _describe(refusals: Mapping[str, tuple[int, str]]) -> str:
    """The relay's answers without the addresses they were given for: a reason is stored and shown in
    the operator's report, where mails refused alike form one group (and an address is personal data).
    A relay that repeats the address in its text (Postfix: ``<a@b.nl>: Recipient address rejected``)
    has it replaced by ``<recipient>``."""
    answers: dict[str, None] = {}
    for rcpt, (code, message) in refusals.items():
        text = re.sub(re.escape(rcpt), "recipient", message, flags=re.IGNORECASE) if rcpt else message
        answers[f"{code} {text}"] = None
    return "; ".join(answers)
