"""What every mail the notifier sends is made of: the reader's language, the recipient's address,
one-line headers, a stable Message-ID, and the text and HTML parts rendered from templates."""

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import urlsplit

import idna
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

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


def one_line(text: str) -> str:
    """Headers and notification titles must not contain line breaks (header injection, ugly titles)."""
    return " ".join(clean(text).split())


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
    msg = EmailMessage()
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
