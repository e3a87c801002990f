"""What every mail the notifier sends is made of: the reader's language, the recipient's address,
one-line headers, a stable Message-ID, and the text and HTML parts rendered from templates."""

import random
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import contentmanager, policy
from email.errors import HeaderParseError
from email.headerregistry import Address, AddressHeader, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import idna
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from notifier import headers
from shared.contracts import Locale

DEFAULT_LOCALE: Locale = "nl"
_LOCALES: tuple[Locale, ...] = ("nl", "en")

templates = Environment(
    loader=PackageLoader("notifier", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    keep_trailing_newline=True,
)


def resolve_locale(locale: str | None) -> Locale:
    """'en', 'en-GB', 'EN_us' mean English; anything else gets Dutch, the language of the schools."""
    language = (locale or "").replace("_", "-").split("-")[0].lower()
    for known in _LOCALES:
        if language == known:
            return known
    return DEFAULT_LOCALE


def clean(text: str) -> str:
    """Lone surrogates cannot be encoded as UTF-8 and would fail the send much later."""
    return text.encode("utf-8", "replace").decode("utf-8")


# A run of whitespace holding a line break, tab or other control: one space in a one-line text.
_BREAKS = re.compile(
    r" *[\t\n\x0b\x0c\r\x1c-\x1f\x85\u2028\u2029][\t\n\x0b\x0c\r\x1c-\x1f\x85\u2028\u2029 ]*"
)


def one_line(text: str) -> str:
    """text on one line, without whitespace at its ends: headers and notification titles must not
    contain line breaks (header injection, ugly titles). Spaces inside stay as they were typed (two
    spaces are two), as do no-break and other spaces that do not break a line."""
    return _BREAKS.sub(" ", clean(text)).strip()


def recipient(name: str, address: str) -> Address:
    """The To address, with an international domain in its IDNA A-label form (``bücher.de`` becomes
    ``xn--bcher-kva.de``, RFC 5890) so that relays without SMTPUTF8 take it. A non-ASCII local part
    cannot be converted; it is kept, and only a relay with SMTPUTF8 can take it (see the mailer).

    Raises ValueError when the address cannot be put in a mail at all.
    """
    local, at, domain = address.strip().rpartition("@")
    try:
        if not at or not local or not domain:
            raise ValueError("no local part and domain")
        if not domain.isascii():
            domain = idna.encode(domain, uts46=True).decode("ascii")
        if local.isascii():
            return Address(display_name=one_line(name), addr_spec=f"{local}@{domain}")
        # The email package refuses a UTF-8 local part in addr_spec; check the shape with a stand-in
        # for each such character, then give the parts as they are.
        Address(addr_spec="{}@{}".format(re.sub(r"[^\x00-\x7f]", "u", local), domain))
        return Address(display_name=one_line(name), username=local, domain=domain)
    except (ValueError, IndexError, HeaderParseError) as exc:  # the email package's and idna's complaints
        raise ValueError(f"not a usable mail address: {address!r}") from exc


def require_web_url(url: str) -> None:
    """Raises ValueError unless url is http(s): a link lands in an href and a notification click,
    never a javascript: or data: URL."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"link must be an http(s) URL: {url!r}")


def message_id(kind: str, key: uuid.UUID | str, mail_from: str) -> str:
    """``<kind.key@sender's domain>``: the same mail always gets the same Message-ID, so a re-send
    is recognised as one. Raises ValueError for a key that cannot go into a header."""
    token = str(key)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", token) or not re.fullmatch(r"[a-z_]{1,32}", kind):
        raise ValueError(f"cannot go into a Message-ID: {kind!r}, {token!r}")
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "klaspost.local"
    return f"<{kind}.{token}@{domain}>"


class _EncodedText(UnstructuredHeader, BaseHeader):
    """Free text (Subject, and any header without a structure of its own) written by
    notifier.headers: encoded-words that carry their own spaces, at most 75 characters each, so that
    it reads back exactly as it was set (the email package's folder glued words, issue 8 case 5)."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        super().parse(value, kwds)
        # The text as it was set: the default parser decodes what looks like an encoded-word in it,
        # so a name with "=?utf-8?q?...?=" in it went out as other words. (MAIL_POLICY builds mails;
        # it is not for reading them.)
        kwds["decoded"] = value

    def fold(self, *, policy: Policy) -> str:
        return headers.unstructured(
            self.name, str(self), policy.linesep, policy.max_line_length or headers.MAX_LINE
        )


class _EncodedAddresses(AddressHeader, BaseHeader):  # type: ignore[misc]  # stubs: init differs
    """Addresses (From, To) whose display names read back exactly (notifier.headers: atoms,
    quoted-strings and encoded-words of at most 75 characters). An address with a UTF-8 local part
    goes out as it is (RFC 6532, only over SMTPUTF8: the mailer checks); the email package's folder
    lost such a display name. Groups (never sent) are left to the email package."""

    def fold(self, *, policy: Policy) -> str:
        groups = self.groups
        mailboxes = [(a.display_name, a.addr_spec) for group in groups for a in group.addresses]
        if any(group.display_name is not None for group in groups):
            return super().fold(policy=policy)
        return headers.addresses(
            self.name, mailboxes, policy.linesep, policy.max_line_length or headers.MAX_LINE
        )


def _plain(text: str) -> bool:
    """Whether text may go into a header as it is: ASCII, and nothing a mail program would take for
    an encoded-word (``=?charset?q?...?=``, RFC 2047) and decode into other words than were meant."""
    return text.isascii() and "=?" not in text


class _UrlList(UnstructuredHeader, BaseHeader):
    """A header of ``<URL>`` entries (List-Unsubscribe, RFC 2369): never encoded, folded only after
    a comma (notifier.headers.url_list). The default folder would turn a URL longer than a line into
    encoded-words, which mail programs do not decode there, so the link would be lost."""

    def fold(self, *, policy: Policy) -> str:
        return headers.url_list(
            self.name, str(self), policy.linesep, policy.max_line_length or headers.MAX_LINE
        )


# Any header not named here (X-Klaspost-*, Auto-Submitted, ...) is free text written as _EncodedText.
_headers = HeaderRegistry(default_class=_EncodedText)
for _name in ("subject",):
    _headers.map_to_type(_name, _EncodedText)
for _name in ("list-unsubscribe",):
    _headers.map_to_type(_name, _UrlList)
for _name in ("from", "to", "cc", "reply-to"):
    _headers.map_to_type(_name, _EncodedAddresses)

#: The policy of every mail built here: the default one, with headers that decode to what was meant.
MAIL_POLICY = policy.default.clone(header_factory=_headers)


def build_email(
    template: str,
    lang: Locale,
    subject: str,
    to: Address,
    context: Mapping[str, Any],
    mail_from: str,
    headers: Mapping[str, str],
) -> EmailMessage:
    """A multipart/alternative mail (text, then HTML) from ``{template}.{lang}.txt`` and ``.html``.

    ``headers`` carries at least Message-ID; the templates get ``context`` plus ``lang`` and ``subject``.
    """
    values = {**context, "lang": lang, "subject": subject}
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["From"] = mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    for name, value in headers.items():
        msg[name] = value
    # RFC 3834: out-of-office robots must not answer a noreply sender.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(templates.get_template(f"{template}.{lang}.txt").render(values))
    msg.add_alternative(templates.get_template(f"{template}.{lang}.html").render(values), subtype="html")
    msg["Content-Language"] = lang  # after the parts: set_content() drops Content-* headers
    return msg


@dataclass(frozen=True)
class MailParts:
    """What one mail is made of, before it is built: ``message()`` gives it as an EmailMessage (the
    email package does every header and part), ``outgoing()`` the same mail as bytes for the relay,
    built cheaply (see OutgoingMail)."""

    template: str
    lang: Locale
    subject: str
    to: Address
    context: Mapping[str, Any]
    mail_from: str
    headers: Mapping[str, str]

    def message(self) -> EmailMessage:
        return build_email(
            self.template, self.lang, self.subject, self.to, self.context, self.mail_from, self.headers
        )

    def outgoing(self) -> "OutgoingMail | EmailMessage":
        """The mail as bytes, or as an EmailMessage when its address needs SMTPUTF8 (the mailer
        checks the relay for that)."""
        return outgoing_email(self)


@dataclass(frozen=True)
class OutgoingMail:
    """A mail ready for the relay: the envelope and the message's bytes (CRLF lines, 7-bit: every
    part quoted-printable or base64 where it is not ASCII), as the email package would write it.

    Building a mail with the email package costs ~2-5 ms of CPU (every header is parsed by its header
    registry, then folded again when written); a post to a class sends the same Subject, From and
    parts' shape to every parent. Here the headers shared by a post's mails in one language are
    folded once (lru_cache), the per-reader headers are written directly (To by notifier.headers;
    Date, Message-ID, List-Unsubscribe as they are where they are plain ASCII that fits a line, else
    folded as the email package would with MAIL_POLICY's header classes), and the parts are encoded
    by the email package's own text encoder. tests/test_mail_bytes.py checks that both ways give the
    same headers, folding and contents.
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes


_CRLF = "\r\n"
_SMTP = policy.SMTP.clone(header_factory=_headers)


@lru_cache(maxsize=256)
def _folded(name: str, value: str) -> str:
    """One header as the email package writes it for SMTP with MAIL_POLICY's header classes (CRLF;
    free text and addresses by notifier.headers). Cached: the headers a post's mails share (From,
    Subject) are folded once per post and language."""
    header = _SMTP.header_factory(name, value)
    return str(_SMTP.fold(name, header))


def _header(name: str, value: str) -> str:
    line = f"{name}: {value}"
    if (
        _plain(value)
        and len(line) <= headers.MAX_LINE
        and value.isprintable()
        and value == " ".join(value.split())
    ):
        return line + _CRLF
    if name.lower() == "list-unsubscribe" and _plain(value):
        return headers.url_list(name, value)
    return _folded(name, value)


def _to_header(to: Address) -> str:
    """To, as _EncodedAddresses folds it (an ASCII address; outgoing_email checks)."""
    return headers.addresses("To", [(to.display_name, to.addr_spec)])


def _part(text: str, subtype: str) -> tuple[str, str]:
    """(headers, body) of one text part, CRLF lines; 8-bit text goes quoted-printable so the mail
    is 7-bit for any relay (the email package would send 8bit where the relay has 8BITMIME)."""
    cte, body = contentmanager._encode_text(text, "utf-8", None, policy.default)  # type: ignore[attr-defined]
    if cte == "8bit":
        cte, body = contentmanager._encode_text(text, "utf-8", "quoted-printable", policy.default)  # type: ignore[attr-defined]
    head = f'Content-Type: text/{subtype}; charset="utf-8"{_CRLF}Content-Transfer-Encoding: {cte}{_CRLF}'
    if subtype == "html":
        head += "MIME-Version: 1.0" + _CRLF  # as add_alternative() writes it
    return head, body.replace("\r\n", "\n").replace("\n", _CRLF)


def _boundary(text: str) -> str:
    """A boundary of the email package's shape that does not occur in the parts."""
    while True:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
        if boundary not in text:
            return boundary


def outgoing_email(parts: MailParts) -> "OutgoingMail | EmailMessage":
    """The mail of ``parts`` as bytes (OutgoingMail), the same as ``parts.message()`` would send;
    an EmailMessage when an address is not ASCII (SMTPUTF8, rare: the email package does it)."""
    sender = parseaddr(parts.mail_from)[1]
    if not (sender.isascii() and parts.to.addr_spec.isascii()):
        return parts.message()
    values = {**parts.context, "lang": parts.lang, "subject": parts.subject}
    text = templates.get_template(f"{parts.template}.{parts.lang}.txt").render(values)
    html = templates.get_template(f"{parts.template}.{parts.lang}.html").render(values)
    text_head, text_body = _part(text, "plain")
    html_head, html_body = _part(html, "html")
    boundary = _boundary(text_body + html_body)
    head = [
        _folded("From", parts.mail_from),
        _to_header(parts.to),
        _folded("Subject", parts.subject),
        _header("Date", format_datetime(datetime.now(UTC))),
        *(_header(name, value) for name, value in parts.headers.items()),
        "Auto-Submitted: auto-generated" + _CRLF,
        "MIME-Version: 1.0" + _CRLF,
        f'Content-Type: multipart/alternative;{_CRLF} boundary="{boundary}"{_CRLF}',
        _folded("Content-Language", parts.lang),
    ]
    data = "".join(
        [
            *head,
            _CRLF,
            f"--{boundary}{_CRLF}{text_head}{_CRLF}{text_body}{_CRLF}",
            f"--{boundary}{_CRLF}{html_head}{_CRLF}{html_body}{_CRLF}",
            f"--{boundary}--{_CRLF}",
        ]
    )
    try:
        return OutgoingMail(sender, (parts.to.addr_spec,), data.encode("ascii"))
    except UnicodeEncodeError:  # a header the cheap path let through as it was: the email package
        return parts.message()
