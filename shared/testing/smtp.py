"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, optionally with STARTTLS and AUTH.

    with SmtpSink(starttls=True, username="notifier", password="s3cret") as sink:
        ...send to sink.host:sink.port, trusting sink.client_tls_context()...
        [mail] = await sink.wait_for(1)

aiosmtpd serves from its own thread and event loop, so the sink works whichever loop the test uses.
"""

import asyncio
import datetime
import email
import email.policy
import errno
import ipaddress
import re
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import unquote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ReceivedMail", "SmtpSink", "link_secret"]


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    login: str | None  # the AUTH user name; None when the client did not authenticate
    tls: bool  # the message came over a STARTTLS-upgraded or implicit-TLS connection

    @property
    def text(self) -> str:
        """The plain-text part (the whole body of a single-part text message), with \\n line ends."""
        part = self.message.get_body(("plain",))
        if part is None:
            raise ValueError("the mail has no text/plain part")
        content: str = cast(EmailMessage, part).get_content()
        return content.replace("\r\n", "\n")


def link_secret(mail: ReceivedMail, name: str) -> str:
    """The secret a mail's link carries in its URL fragment: ``link_secret(mail, "code")`` reads the
    access code from ``.../invite#code=...``, ``link_secret(mail, "token")`` the token from
    ``.../reset-password#token=...``. Raises ValueError when the text part has no such link."""
    found = re.search(rf"#{re.escape(name)}=([^\s&#<>\"']+)", mail.text)
    if found is None:
        raise ValueError(f"no link with #{name}= in the mail")
    return unquote(found.group(1))


class SmtpSink:
    """Accepts and keeps every message; ``refuse_domain`` makes recipients at a domain fail."""

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        smtputf8: bool = False,
        implicit_tls: bool = False,
    ) -> None:
        """``smtputf8``: offer SMTPUTF8 (RFC 6531), so addresses with a UTF-8 local part are taken;
        off by default, like many relays."""
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.messages: list[ReceivedMail] = []
        self._credentials = (username.encode(), password.encode()) if username and password else None
        self._refused: dict[str, str] = {}
        self._lock = threading.Lock()
        self._cert_pem: bytes | None = None
        self._server_tls: ssl.SSLContext | None = None
        if starttls and implicit_tls:
            raise ValueError("STARTTLS or implicit TLS, not both")
        if starttls or implicit_tls:
            self._cert_pem, self._server_tls = _self_signed_tls()
        self._implicit_tls = implicit_tls
        self._smtputf8 = smtputf8
        # Client connections accepted since start (the controller's own readiness probe not counted),
        # how many are open now, and the most that were open at once.
        self.connections = 0
        self.open_connections = 0
        self.peak_connections = 0
        self._counting = False
        self._servers: set[_CountingSMTP] = set()
        self._controller: Controller | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("SmtpSink is not started")
        return self._port

    def client_tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this sink's self-signed certificate (for 127.0.0.1/localhost)."""
        if self._cert_pem is None:
            raise RuntimeError("SmtpSink was made without starttls or implicit_tls")
        return ssl.create_default_context(cadata=self._cert_pem.decode())

    def refuse_domain(self, domain: str, reply: str = "550 5.1.1 Mailbox unavailable") -> None:
        """Answer RCPT TO for any address at domain with reply (use a 4xx reply for a temporary refusal)."""
        with self._lock:
            self._refused[domain.lower()] = reply

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def start(self) -> None:
        # Controller(port=0) cannot work (its readiness check connects to port 0), so pick a free port;
        # another process may grab it in between, hence the retries.
        for attempt in range(5):
            port = _free_port(self.host)
            handler = _Handler(self)
            controller = _CountingController(
                self,
                handler,
                hostname=self.host,
                port=port,
                server_hostname="localhost",  # else aiosmtpd asks DNS for this machine's FQDN
                # Implicit TLS (port 465 style): the controller wraps every connection from the start.
                ssl_context=self._server_tls if self._implicit_tls else None,
                tls_context=None if self._implicit_tls else self._server_tls,
                require_starttls=self._server_tls is not None and not self._implicit_tls,
                authenticator=handler.authenticate if self._credentials else None,
                # Without TLS, AUTH is allowed in the clear: it is a test on the loopback interface.
                # aiosmtpd sees only STARTTLS as TLS; an implicit-TLS connection is encrypted throughout.
                auth_require_tls=self._server_tls is not None and not self._implicit_tls,
                enable_SMTPUTF8=self._smtputf8,
            )
            try:
                controller.start()
            except BaseException as exc:
                controller.stop(no_assert=True)
                if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE and attempt < 4:
                    continue  # the port was taken after all
                raise
            self._controller, self._port = controller, port
            with self._lock:
                self._counting = True
            return

    def drop_connections(self) -> None:
        """Close every open client connection from the server's side, as a relay does to idle ones."""
        if self._controller is None:
            return
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            if server.transport is not None:
                self._controller.loop.call_soon_threadsafe(server.transport.close)

    def _connected(self) -> bool:
        """Counts a connection the server accepted; True when it is a client's (not the probe's)."""
        with self._lock:
            if not self._counting:
                return False
            self.connections += 1
            self.open_connections += 1
            self.peak_connections = max(self.peak_connections, self.open_connections)
            return True

    def _disconnected(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
            self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # start() blocks until aiosmtpd answers; keep the test's loop free meanwhile.
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # A timeout parameter (ASYNC109) because every test wants the same short wait written once.
    async def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMail]:  # noqa: ASYNC109
        """The first ``count`` messages, once that many have arrived; TimeoutError otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.messages) < count:
            if loop.time() >= deadline:
                raise TimeoutError(f"expected {count} mail(s) within {timeout}s, got {len(self.messages)}")
            await asyncio.sleep(0.01)
        with self._lock:
            return self.messages[:count]


class _CountingController(Controller):
    def __init__(self, sink: SmtpSink, handler: Any, **kwargs: Any) -> None:
        self._sink = sink
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return _CountingSMTP(self._sink, self.handler, **self.SMTP_kwargs)


class _CountingSMTP(SMTP):
    """aiosmtpd's server, telling the sink when a client connects and leaves (once each, also
    across STARTTLS, which calls connection_made again)."""

    def __init__(self, sink: SmtpSink, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink
        self._counted = False
        self._seen = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._seen:
            self._seen = True
            self._counted = self._sink._connected()
            with self._sink._lock:
                self._sink._servers.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        with self._sink._lock:
            self._sink._servers.discard(self)
        if self._counted:
            self._counted = False
            self._sink._disconnected()


class _Handler:
    """aiosmtpd's hooks, called on the server's thread. Kept apart from SmtpSink because aiosmtpd
    inspects every attribute of its handler (and SmtpSink.port raises before start)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        given = (auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else None
        ok = given is not None and given == self._sink._credentials
        # handled=False lets aiosmtpd answer 235/535 itself; handled=True would leave the client waiting.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # aiosmtpd's own auth_required warns when TLS is not also required; enforce AUTH here instead.
        if self._sink._credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        with self._sink._lock:
            refusal = self._sink._refused.get(domain)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = cast(bytes, envelope.content)
        auth_data = session.auth_data if session.authenticated else None
        mail = ReceivedMail(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=email.message_from_bytes(raw, policy=email.policy.default),
            raw=raw,
            login=auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None,
            tls=session.ssl is not None or self._sink._implicit_tls,
        )
        with self._sink._lock:
            self._sink.messages.append(mail)
        return "250 2.0.0 Message accepted for delivery"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return cast(int, s.getsockname()[1])


def _self_signed_tls() -> tuple[bytes, ssl.SSLContext]:
    """A throwaway certificate for localhost and 127.0.0.1, and a server context that serves it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # load_cert_chain reads only files; they are gone once the context holds the key.
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        context.load_cert_chain(cert_file, key_file)
    return cert_pem, context
