"""Hands mail to the SMTP relay over a few kept-open connections, and says whether a failure is
worth retrying."""

import asyncio
import contextlib
import re
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from types import TracebackType
from typing import Self

import aiosmtplib
from aiosmtplib.email import extract_recipients, extract_sender, flatten_message, parse_address
from aiosmtplib.protocol import normalize_message_line_endings

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
    resets the transaction after each; after a refusal we send RSET), at most
    ``smtp_max_connections`` are open at once, and one is replaced after
    ``smtp_messages_per_connection`` messages, ``smtp_idle_seconds`` unused, or any failure that
    leaves its state unknown. A fresh connection per message cost a TCP (and TLS, AUTH) set-up each:
    83 mails/s for a 1,000-parent post.

    A mail goes in two phases: ``open()`` takes a connection and sends the envelope (MAIL FROM and
    RCPT TO), then ``Envelope.deliver()`` sends DATA, the message and its final dot. Only the relay's
    250 to that final dot makes it take the mail (RFC 5321 §3.3, §4.1.1.4: until then the
    transaction is dropped by RSET or by a closed connection, and nothing is delivered). So a caller
    that bounds what a crash can repeat (the Deliverer's send slots) needs to hold its bound only
    around ``deliver()``, and can open envelopes while it waits for one: their round trips overlap
    the DATA of the mails in flight. ``send()`` does both phases at once.

    Use ``async with`` or call ``close()``: open connections belong to the running event loop.
    """

    def __init__(self, settings: Settings, *, tls_context: ssl.SSLContext | None = None) -> None:
        # tls_context is for a private CA (tests); otherwise the system's trust store verifies the server.
        self._settings = settings
        self._tls_context = tls_context
        # One per open connection: taken by open(), given back when its envelope is delivered or
        # abandoned, or when open() fails.
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
        """Hand msg to the relay (``open()``, then ``Envelope.deliver()``). Raises DeliveryFailed,
        permanent when a retry cannot help: the relay refused with a 5xx, or an address needs
        SMTPUTF8 (RFC 6531) and the relay does not offer it; ValueError for an address that cannot go
        on an SMTP command line (nothing sent)."""
        envelope = await self.open(msg)
        await envelope.deliver()

    async def open(self, msg: EmailMessage | OutgoingMail) -> "Envelope":
        """Take a connection (waiting while ``smtp_max_connections`` are taken) and send msg's envelope:
        MAIL FROM (with SMTPUTF8 when an address needs it, SIZE and BODY=8BITMIME as the relay offers
        them, as aiosmtplib's send_message sets them) and RCPT TO for each recipient. Nothing is
        delivered until ``Envelope.deliver()``; the caller must deliver or abandon it, which gives
        the connection back. Raises what ``send()`` raises (a refused sender: temporary; every
        recipient refused: permanent when all with a 5xx), and gives the connection back then, and
        when cancelled."""
        await self._slots.acquire()
        try:
            connection = await self._take()
            try:
                return await self._open_on(connection, msg)
            except _Dropped:
                # The relay closed a kept connection just as it was reused: try once on a fresh one.
                return await self._open_on(await self._connect(), msg)
        except BaseException:
            self._slots.release()
            raise

    async def _open_on(self, connection: _Connection, msg: EmailMessage | OutgoingMail) -> "Envelope":
        reused = connection.sent > 0
        client = connection.client
        keep = opened = False
        try:
            sender, recipients, data, options = await _envelope_of(client, msg)
            encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
            refused: dict[str, tuple[int, str]] = {}
            try:
                await client.mail(sender, options=options, encoding=encoding)
                refusals: list[aiosmtplib.SMTPRecipientRefused] = []
                for rcpt in recipients:
                    try:
                        await client.rcpt(rcpt, encoding=encoding)
                    except aiosmtplib.SMTPRecipientRefused as exc:
                        refusals.append(exc)
                        refused[rcpt] = (exc.code, exc.message)
                if len(refusals) == len(recipients):
                    raise aiosmtplib.SMTPRecipientsRefused(refusals)
            except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
                await _reset(client)  # as aiosmtplib's sendmail does: the session stays usable
                raise
            opened = True
            return Envelope(self, connection, data, refused)
        except (DeliveryFailed, ValueError):
            keep = True  # found before anything was sent
            raise
        except aiosmtplib.SMTPServerDisconnected as exc:
            if reused:
                raise _Dropped from exc
            raise _classify(exc) from exc
        except aiosmtplib.SMTPException as exc:
            # After a refusal we have sent RSET; anything else leaves the session unknown.
            keep = isinstance(exc, (aiosmtplib.SMTPRecipientsRefused, *_REFUSALS))
            raise _classify(exc) from exc
        except (OSError, TimeoutError) as exc:
            if reused and isinstance(exc, ConnectionError):
                raise _Dropped from exc
            raise DeliveryFailed(False, f"smtp connection failed: {exc!r}") from exc
        finally:
            if not opened:
                # Failed or cancelled: the connection back (kept only when its session is known clean).
                connection.sent += 1
                await self._give_back(connection, keep)

    async def _finish(self, connection: _Connection, keep: bool) -> None:
        """An envelope's connection back to the pool (or closed), and its slot free."""
        try:
            connection.sent += 1
            await self._give_back(connection, keep)
        finally:
            self._slots.release()

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


class Envelope:
    """A mail whose envelope (MAIL FROM, RCPT TO) the relay has taken on one of the Mailer's
    connections, held until ``deliver()`` or ``abandon()``. Until the relay answers the final dot of
    DATA it has taken responsibility for nothing (RFC 5321 §3.3: the transaction can still be reset;
    §4.1.1.4: the 250 after the end of mail data is what commits it), so an envelope may wait, be
    abandoned, or be lost with the process without the mail ever being sent."""

    def __init__(
        self, mailer: Mailer, connection: _Connection, data: bytes, refused: dict[str, tuple[int, str]]
    ) -> None:
        self._mailer = mailer
        self._connection = connection
        self._data = data
        # Recipients the relay refused at RCPT TO while others took it: reported after delivery.
        self._refused = refused
        self._done = False

    async def deliver(self) -> None:
        """Send DATA, the message and its end; the connection goes back to the pool. Raises
        DeliveryFailed as ``Mailer.send()`` does: permanent for a 5xx, or when some recipients were
        refused at RCPT TO (the others took it, so a retry would send them a duplicate)."""
        if self._done:
            raise RuntimeError("this envelope was already delivered or abandoned")
        self._done = True
        client = self._connection.client
        keep = False
        try:
            try:
                await client.data(self._data)
            except aiosmtplib.SMTPResponseException:
                await _reset(client)
                raise
            keep = True
        except aiosmtplib.SMTPException as exc:
            # After a refusal we have sent RSET; a disconnect or timeout leaves the session unknown.
            keep = isinstance(exc, _REFUSALS)
            raise _classify(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise DeliveryFailed(False, f"smtp connection failed: {exc!r}") from exc
        finally:
            await self._mailer._finish(self._connection, keep)
        if self._refused:
            raise DeliveryFailed(True, f"recipients refused: {_describe(self._refused)}")

    async def abandon(self) -> None:
        """Drop the envelope without sending the mail: RSET, and the connection back to the pool
        (closed instead if RSET fails or is cancelled). Does nothing once delivered or abandoned."""
        if self._done:
            return
        self._done = True
        keep = False
        try:
            await self._connection.client.rset()
            keep = True
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            await self._mailer._finish(self._connection, keep)


async def _envelope_of(
    client: aiosmtplib.SMTP, msg: EmailMessage | OutgoingMail
) -> tuple[str, list[str], bytes, list[str]]:
    """msg's sender, recipients, bytes for DATA and MAIL FROM options, as aiosmtplib's sendmail and
    send_message would send them on this connection. Raises DeliveryFailed (permanent) for an address
    that needs SMTPUTF8 at a relay without it, ValueError for an address that cannot be sent; both
    before anything is sent."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()  # the relay's extensions
    utf8 = _needs_smtputf8(msg)
    if utf8:
        _require_smtputf8(client)
    options = ["SMTPUTF8"] if utf8 else []
    if isinstance(msg, OutgoingMail):
        # Built as bytes (compose.OutgoingMail): 7-bit, ASCII addresses, nothing to flatten.
        sender, recipients, data = msg.sender, list(msg.recipients), msg.data
    else:
        # International domains are already A-labels (compose.recipient).
        found = extract_sender(msg)
        if found is None:
            raise ValueError("No From header provided in message")
        sender, recipients = found, extract_recipients(msg)
        if not recipients:
            raise ValueError("No recipient headers provided in message")
        cte_type = "7bit"
        if client.supports_extension("8BITMIME"):
            options.append("BODY=8BITMIME")
            cte_type = "8bit"
        data = flatten_message(msg, utf8=utf8, cte_type=cte_type)
    # As sendmail: every address checked before MAIL FROM, so a bad one leaves no half envelope.
    for address in (sender, *recipients):
        parse_address(address)
    if client.supports_extension("size"):
        # RFC 1870: octets as sent in DATA, CRLF pairs included.
        options.insert(0, f"size={len(normalize_message_line_endings(data))}")
    return sender, recipients, data, options


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, so the next mail on the connection starts a clean transaction."""
    # As sendmail: the refusal is what is reported; a broken session is closed when given back.
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        await client.rset()


def _needs_smtputf8(msg: EmailMessage | OutgoingMail) -> bool:
    if isinstance(msg, OutgoingMail):
        return not all(address.isascii() for address in (msg.sender, *msg.recipients))
    # International domains are sent as A-labels (see compose.recipient); a UTF-8 local part cannot be.
    addresses = [extract_sender(msg) or "", *extract_recipients(msg)]
    return not all(address.isascii() for address in addresses)


def _require_smtputf8(client: aiosmtplib.SMTP) -> None:
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
