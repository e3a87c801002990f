"""Case 5 of issue 8: every header decodes to exactly what was meant, whatever the (allowed) name.

Python's folder split non-ASCII text into encoded-words with the space between them outside, so
``coördinatie geïnteresseerde`` came out glued together; its legacy ``Header`` made encoded-words of
1,000+ characters from 120 CJK characters. Mails are read back two ways:

- with the email package's default parser (``policy.default``), the way Python reads mail;
- with ``decode_header``/``make_header`` (RFC 2047 as mail programs apply it), in an address header
  after the structure is parsed (``parseaddr``), since decoding first would turn an encoded ``,``
  or ``<`` into syntax (RFC 2047 5 (3), 6.2).

Python 3.11's parser reads a display name with a space between two adjacent encoded-words and
collapses a space and the whitespace after it inside one (CPython gh-128110, against RFC 2047 6.2). A display name is therefore
also read from that parser's own parse tree with RFC 2047 6.2 applied (``rfc2047_display_name``),
and compared with ``display_name`` itself wherever no such pair occurs.
"""

import base64
import random
import re
import uuid
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtplib.email import flatten_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifier import headers
from notifier.compose import MailParts, OutgoingMail, one_line, outgoing_email
from notifier.mailer import Mailer
from notifier.mails import MAIL_KINDS, MailKind, one_off_email
from notifier.messages import new_post_email, new_post_parts
from notifier.notices import NOTICE_KINDS, digest_parts, notice_parts
from notifier.settings import Settings
from shared.fields import trim
from shared.testing.smtp import SmtpSink

MAIL_FROM = "Klaspost <noreply@klaspost.nl>"
GROUP_NAME_MAX = 80  # identity's GroupName
PERSON_NAME_MAX = 120  # identity's DisplayName
SCHOOL_NAME_MAX = 200  # identity's SchoolName
CHILD_NAME_MAX = 100  # identity's families Name
TITLE_MAX = 120  # posts' titles (conferences, helper lists), shared.contracts
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
CASE_5 = "Groep 8 kamp Ameland: informatie over de coördinatie geïnteresseerde ouders"

_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([qQbB])\?([^?]*)\?=")

_WORDS = (  # noqa: SIM905  # a sentence reads better than a list of 50 words
    "Groep 8 kamp Ameland informatie over de coördinatie geïnteresseerde ouders ideeën café "
    "reünie financiële Curaçao België première skiën naïef überhaupt Anaïs Zoë Noël Chloë "
    "IJsselmeer 's-Hertogenbosch co-ouder één vóór hè crème brûlée Ångström Þór Łódź 😀 "
    'schoolreis: vrijwilligers (groep 7/8) — voor & na "de" musical, zwemles; oudergesprekken'
).split()

# Names of the kinds that broke before, and of every kind of character a name may hold.
NAMED_CASES = [
    CASE_5,
    "漢" * 120,  # CJK at the limit: encoded-words of 1,092 characters before
    "😀" * 120,  # 4-byte characters
    "👨\u200d👩\u200d👧" * 24,  # emoji ZWJ sequences (5 characters each)
    "👍🏽" * 60,  # skin tone modifiers
    "🇳🇱" * 60,  # flags (regional indicator pairs)
    "e\u0301" * 60,  # combining marks
    "שלום עולם, groep 8 — مرحبا بالعالم",  # right-to-left text beside ASCII
    "a" * 120,  # an ASCII word longer than a line
    "Groep  8   met  dubbele   spaties",  # several spaces inside
    'Jan "de" (Bos), \\ ; : < > @ . [x] =?utf-8?q?x?= ?= =?',  # specials and an encoded-word lookalike
    'Zoë "de" Bös, (groep 7/8): <ouders>',  # specials beside non-ASCII
    "Jan\u00a0de\u00a0Vries\u3000山田\u2009x",  # no-break, ideographic and thin spaces
    "x\u200by\u200dz\u00adw",  # invisible characters inside
    "\x01\x7f\x9f control",  # controls our fields let through
    "abc " * 30,  # many short words
    "é" * 119 + "x",  # the largest Q-encoded word
]


# -- reading back -------------------------------------------------------------------------------


def header_values(raw: bytes) -> dict[str, str]:
    """Each header of a mail, unfolded (CRLF removed, the space after it kept, RFC 5322 2.2.3),
    without the whitespace after the colon."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")  # UTF-8 only in an SMTPUTF8 address
    return {
        match.group(1): match.group(2).replace("\r\n", "").lstrip(" \t")
        for match in re.finditer(r"^([\w-]+):(.*?)\r\n(?![ \t])", head + "\r\n", re.M | re.S)
    }


def parse(raw: bytes) -> EmailMessage:
    """The mail as policy.default reads it; UTF-8 headers (SMTPUTF8, RFC 6532) decoded as such."""
    parsed = (
        message_from_bytes(raw, policy=policy.default)
        if raw.isascii()
        else message_from_string(raw.decode("utf-8"), policy=policy.default)
    )
    assert isinstance(parsed, EmailMessage)
    return parsed


def read_text(raw: bytes, name: str) -> tuple[str, str]:
    """(policy.default's value, decode_header/make_header's value) of a free-text header."""
    parsed = parse(raw)
    return str(parsed[name]), str(make_header(decode_header(header_values(raw)[name])))


def rfc2047_display_name(header: AddressHeader) -> str:
    """The first mailbox's display name from policy.default's parse tree, with the whitespace between
    two adjacent encoded-words dropped (RFC 2047 6.2) and an encoded-word's own spaces kept."""
    mailbox = header._parse_tree.all_mailboxes[0]  # type: ignore[attr-defined]
    name_addr = mailbox[0]
    if name_addr.token_type != "name-addr" or name_addr[0].token_type != "display-name":
        return ""
    pieces: list[tuple[str, str]] = []  # (kind, text): "ew", "word", "ws"

    def walk(token: Any) -> None:
        kind = getattr(token, "token_type", "")
        if kind == "encoded-word":
            pieces.append(("ew", str(token)))
        elif kind == "bare-quoted-string":  # its str() puts the quotes back
            pieces.append(("word", "".join(str(child) for child in token)))
        elif kind in ("cfws", "fws", "comment"):
            pieces.append(("ws", " "))
        elif isinstance(token, list):
            for child in token:
                walk(child)
        else:
            pieces.append(("word", str(token)))

    for token in name_addr[0]:
        walk(token)
    while pieces and pieces[0][0] == "ws":
        pieces.pop(0)
    while pieces and pieces[-1][0] == "ws":
        pieces.pop()
    text = []
    for index, (kind, piece) in enumerate(pieces):
        if kind == "ws":
            if pieces[index - 1][0] == "ws":
                continue
            following = next(k for k, _ in pieces[index + 1 :] if k != "ws")
            if pieces[index - 1][0] == "ew" and following == "ew":
                continue
        text.append(piece)
    return "".join(text)


def read_mailbox(raw: bytes, name: str) -> tuple[str, str, str, bool]:
    """(display name by policy.default + RFC 2047 6.2, by parseaddr + decode_header/make_header,
    the address, whether policy.default's own ``display_name`` is to be trusted: no two adjacent
    encoded-words, no space followed by other whitespace inside one)."""
    header = parse(raw)[name]
    [address] = header.addresses
    phrase, addr_spec = parseaddr(header_values(raw)[name])
    assert addr_spec == address.addr_spec
    by_rfc = rfc2047_display_name(header)
    legacy = str(make_header(decode_header(phrase))) if phrase else ""
    value = header_values(raw)[name]
    adjacent = re.search(r"\?=\s+=\?", value) is not None
    spaces_inside = any(
        re.search(r"[ \t]\s", _payload(enc, text).decode()) for _, enc, text in _ENCODED_WORD.findall(value)
    )
    trusted = not adjacent and not spaces_inside
    if trusted:
        assert address.display_name == by_rfc
    return by_rfc, legacy, address.addr_spec, trusted


def assert_well_formed(raw: bytes) -> None:
    """7-bit header lines of at most 78 characters unless one word without a space is longer (then at
    most 998), at most 76 where they hold an encoded-word; each encoded-word at most 75 characters,
    of whole UTF-8 characters (RFC 5322 2.1.1, RFC 2047 2, 5)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    for line in head.decode("ascii").split("\r\n"):
        words = _ENCODED_WORD.findall(line)
        if len(line) > 78 and not words:  # a word with no space to fold at: a URL, an ASCII name
            assert len(line) <= 998, line
            assert len(line.split()) == (1 if line[0] in " \t" else 2), line
            continue
        assert len(line) <= (76 if words else 78), line
        assert line.strip(), "a folded line made of whitespace only"
        for charset, encoding, text in words:
            assert len(f"=?{charset}?{encoding}?{text}?=") <= 75, line
            _payload(encoding, text).decode("utf-8")  # strict: no character split across two words


def _payload(encoding: str, text: str) -> bytes:
    if encoding in "bB":
        return base64.b64decode(text)
    return re.sub(rb"=([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.replace("_", " ").encode())


def assert_reads_back(raw: bytes, subject: str, to_name: str, to_address: str) -> None:
    assert_well_formed(raw)
    assert read_text(raw, "Subject") == (subject, subject)
    by_rfc, legacy, address, _ = read_mailbox(raw, "To")
    assert (by_rfc, legacy, address) == (to_name, to_name, to_address)
    by_rfc, legacy, address, trusted = read_mailbox(raw, "From")
    assert (by_rfc, legacy, address, trusted) == ("Klaspost", "Klaspost", "noreply@klaspost.nl", True)


def both_ways(msg: EmailMessage | MailParts) -> list[bytes]:
    """The mail as the mailer sends it: as bytes (OutgoingMail) and flattened by aiosmtplib (with
    and without SMTPUTF8)."""
    if isinstance(msg, MailParts):
        fast = outgoing_email(msg)
        assert isinstance(fast, OutgoingMail)
        return [fast.data, *both_ways(msg.message())]
    return [flatten_message(msg, utf8=utf8) for utf8 in (False, True)]


# -- names ----------------------------------------------------------------------------------------


def dutch_name(rng: random.Random, max_chars: int) -> str:
    """A name of realistic words, often ending right at the limit (where the folds land)."""
    target = rng.randint(max_chars // 3, max_chars) if rng.random() < 0.6 else max_chars
    words: list[str] = []
    while len(" ".join(words)) < target:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:target].strip()


def names(count: int, max_chars: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [dutch_name(rng, max_chars) for _ in range(count)]


_ANY_CHARACTER = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
_PIECES = st.sampled_from(
    [*_WORDS, *NAMED_CASES[1:], " ", "  ", "\t", "\n", "\r\n", "\u2028", '"', "\\", "(", ")", ",", ":", ";", "<",
     ">", "@", ".", "=?", "?=", "=?utf-8?q?x?=", "_", "=", "?", "\u00a0", "\u200b", "\u202e", "\ufeff"]
)  # fmt: skip


def field_text(max_length: int) -> st.SearchStrategy[str]:
    """What a field of ``Trimmed(max_length)`` lets through (shared.fields): any characters but NUL
    and lone surrogates, trimmed, 1 to max_length of them; often at or near the limit."""
    mixed = st.lists(st.one_of(_PIECES, st.text(_ANY_CHARACTER, min_size=1, max_size=6)), max_size=80).map(
        "".join
    )
    sized = st.integers(1, max_length).flatmap(lambda n: st.text(_ANY_CHARACTER, min_size=n, max_size=n))
    return st.one_of(mixed, sized).map(lambda text: trim(trim(text)[:max_length])).filter(bool)


HYPOTHESIS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAILS = settings(HYPOTHESIS, max_examples=80)  # each example builds and reads back three mails


# -- the encoder ------------------------------------------------------------------------------------


def _raw(*fields: str) -> bytes:
    return ("".join(fields) + "\r\nx\r\n").encode("ascii")


@HYPOTHESIS
@given(st.text(_ANY_CHARACTER.filter(lambda c: c not in "\r\n"), max_size=400))
def test_any_free_text_reads_back_exactly(text: str) -> None:
    raw = _raw(headers.unstructured("Subject", text))
    assert_well_formed(raw)
    assert read_text(raw, "Subject") == (text, text)


@HYPOTHESIS
@given(st.text(_ANY_CHARACTER.filter(lambda c: c not in "\r\n\t"), max_size=250))
def test_any_display_name_reads_back_exactly(name: str) -> None:
    raw = _raw(headers.addresses("To", [(name, "ouder@ouders.nl")]))
    assert_well_formed(raw)
    by_rfc, legacy, address, _ = read_mailbox(raw, "To")
    assert (by_rfc, legacy, address) == (name, name, "ouder@ouders.nl")


@pytest.mark.parametrize("name", NAMED_CASES)
def test_each_named_case_reads_back_exactly_as_subject_and_display_name(name: str) -> None:
    raw = _raw(
        headers.unstructured("Subject", f"Nieuw bericht in {name}"),
        headers.addresses("To", [(name, "o@x.nl")]),
    )
    assert_well_formed(raw)
    assert read_text(raw, "Subject") == (f"Nieuw bericht in {name}",) * 2
    assert read_mailbox(raw, "To")[:3] == (name, name, "o@x.nl")


def test_the_case_5_name_is_folded_at_spaces_and_read_back_by_python_too() -> None:
    raw = _raw(
        headers.unstructured("Subject", f"Nieuw bericht in {CASE_5}"),
        headers.addresses("To", [(CASE_5, "o@x.nl")]),
    )
    assert read_mailbox(raw, "To") == (CASE_5, CASE_5, "o@x.nl", True)
    assert b"Subject: Nieuw bericht in Groep 8 kamp Ameland: informatie over de\r\n " in raw


def test_several_addresses_are_separated_by_commas() -> None:
    raw = _raw(headers.addresses("To", [("Bös, Jan", "a@x.nl"), ("", "b@x.nl"), ("Ann (mam)", "c@x.nl")]))
    parsed = parse(raw)["To"]
    assert [(a.display_name, a.addr_spec) for a in parsed.addresses] == [
        ("Bös, Jan", "a@x.nl"), ("", "b@x.nl"), ("Ann (mam)", "c@x.nl"),
    ]  # fmt: skip


# -- every kind of mail --------------------------------------------------------------------------


@MAILS
@given(
    group=field_text(GROUP_NAME_MAX), parent=field_text(PERSON_NAME_MAX), locale=st.sampled_from(["nl", "en"])
)
def test_a_new_post_mail_reads_back_for_any_allowed_group_and_parent_name(
    group: str, parent: str, locale: str
) -> None:
    parts = new_post_parts(
        locale, parent, "ouder@ouders.nl", group, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM
    )
    prefix = "Nieuw bericht in " if locale == "nl" else "New post in "
    for raw in both_ways(parts):
        assert_reads_back(raw, prefix + one_line(group), one_line(parent), "ouder@ouders.nl")


@HYPOTHESIS
@given(field_text(PERSON_NAME_MAX))
def test_a_name_on_one_line_keeps_every_space_and_character(name: str) -> None:
    if not re.search(r"[\t\n\x0b\x0c\r\x1c-\x1f\x85\u2028\u2029]", name):
        assert one_line(name) == name
    assert not re.search(r"[\r\n]", one_line(name))


def test_the_group_name_that_glued_two_words_decodes_as_written() -> None:
    msg = new_post_email("nl", "Jan", "jan@ouders.nl", CASE_5, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM)
    for raw in both_ways(msg):
        assert_reads_back(raw, f"Nieuw bericht in {CASE_5}", "Jan", "jan@ouders.nl")


@pytest.mark.parametrize("locale", ["nl", "en"])
def test_a_new_post_mail_decodes_to_the_group_and_parent_name_for_many_dutch_names(locale: str) -> None:
    prefix = "Nieuw bericht in " if locale == "nl" else "New post in "
    for group, parent in zip(
        names(60, GROUP_NAME_MAX, seed=8), names(60, PERSON_NAME_MAX, seed=80), strict=True
    ):
        parts = new_post_parts(
            locale, parent, "ouder@ouders.nl", group, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM
        )
        for raw in both_ways(parts):
            assert_reads_back(raw, prefix + group, parent, "ouder@ouders.nl")


@pytest.mark.parametrize("kind", MAIL_KINDS)
def test_every_one_off_mail_decodes_to_the_school_child_and_recipient_names(kind: MailKind) -> None:
    schools = names(30, SCHOOL_NAME_MAX, seed=5) + [n[:SCHOOL_NAME_MAX] for n in NAMED_CASES]
    children = names(30, CHILD_NAME_MAX, seed=6) + [trim(n[:CHILD_NAME_MAX]) for n in reversed(NAMED_CASES)]
    parents = names(30, PERSON_NAME_MAX, seed=7) + NAMED_CASES
    for school, child, parent in zip(schools, children, parents, strict=True):
        context = {"school_name": school, "child_name": child, "expires_at": "2099-12-14T16:00:00+00:00"}
        msg = one_off_email(
            kind, uuid.uuid4(), "nl", "ouder@ouders.nl", parent, context, "K7QM3XPDWN9R",
            AMSTERDAM, "https://k.nl/", MAIL_FROM,
        )  # fmt: skip
        subject = str(msg["Subject"])
        if kind != "password_reset":
            assert one_line(school) in subject
        if kind.startswith("invitation"):
            assert one_line(child) in subject
        for raw in both_ways(msg):
            assert_reads_back(raw, subject, one_line(parent), "ouder@ouders.nl")


_NOTICE_CONTEXT: dict[str, Any] = {
    "group_id": str(uuid.uuid4()),
    "week": "2026-W50",
    "schedule_id": str(uuid.uuid4()),
    "list_id": str(uuid.uuid4()),
    "teacher_names": ["Juf Anne"],
    "starts_at": "2026-12-14T14:30:00+00:00",
    "closes_at": "2026-12-14T14:30:00+00:00",
    "previous_starts_at": "2026-12-13T14:30:00+00:00",
}


_SUBJECT_NAMES = {
    "group_quiet": ["group_name"],
    "signup_promoted": ["item_title", "list_title"],
    **{kind: ["title"] for kind in ("conference_opened", "booking_reminder")},
    **{
        kind: ["title", "child_name"]
        for kind in ("slot_booked", "slot_moved", "slot_cancelled", "day_before")
    },
}


@pytest.mark.parametrize("kind", NOTICE_KINDS)
def test_every_notice_and_conference_mail_reads_back_with_long_names(kind: str) -> None:
    for name in NAMED_CASES:
        context = {
            **_NOTICE_CONTEXT,
            "group_name": trim(name[:GROUP_NAME_MAX]),
            "title": name[:TITLE_MAX],
            "child_name": trim(name[:CHILD_NAME_MAX]),
            "item_title": trim(name[:TITLE_MAX]),
            "list_title": trim(name[-TITLE_MAX:]),
        }
        parts = notice_parts(
            kind, uuid.uuid4(), uuid.uuid4(), "nl", name, "ouder@ouders.nl", context, AMSTERDAM,
            "https://k.nl", MAIL_FROM, {"List-Unsubscribe": "<https://api.k.nl/unsubscribe/abc>"},
        )  # fmt: skip
        for needle in _SUBJECT_NAMES[kind]:
            assert one_line(context[needle]) in parts.subject
        for raw in both_ways(parts):
            assert_reads_back(raw, parts.subject, one_line(name), "ouder@ouders.nl")


def test_a_digest_reads_back_for_any_reader_name() -> None:
    for name in NAMED_CASES:
        item = {
            "kind": "new_post",
            "group_name": name[:80],
            "title": name,
            "excerpt": "x",
            "post_id": uuid.uuid4(),
        }
        parts = digest_parts(
            uuid.uuid4(), "en", name, "ouder@ouders.nl", {"day": "2026-12-01", "items": [item, item]}, AMSTERDAM,
            "https://k.nl", MAIL_FROM, {"List-Unsubscribe": "<https://api.k.nl/unsubscribe/abc>"},
        )  # fmt: skip
        for raw in both_ways(parts):
            assert_reads_back(raw, "Klaspost: 2 new posts", one_line(name), "ouder@ouders.nl")


@pytest.mark.parametrize("name", NAMED_CASES)
def test_a_mail_to_an_address_that_needs_smtputf8_reads_back_exactly(name: str) -> None:
    parts = new_post_parts(
        "nl", name, "jän@ouders.nl", name[:80], "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM
    )
    raw = flatten_message(parts.message(), utf8=True)  # as aiosmtplib sends it, over SMTPUTF8
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert_well_formed(raw.replace("jän".encode(), b"jan"))  # the address is the only UTF-8
    assert read_text(raw, "Subject") == (f"Nieuw bericht in {one_line(name[:80])}",) * 2
    assert read_mailbox(raw, "To")[:3] == (one_line(name), one_line(name), "jän@ouders.nl")


def test_a_sender_name_with_accents_and_specials_reads_back_exactly() -> None:
    school = "Basisschool 't Zonnetje \u2013 Zoë (Ameland), groep 1/2"
    mail_from = f'"{school}" <noreply@klaspost.nl>'  # as an operator writes it in MAIL_FROM
    parts = new_post_parts(
        "nl", "Jan", "jan@ouders.nl", "Groep 3", "x", "https://k.nl/p", uuid.uuid4(), mail_from
    )
    for raw in both_ways(parts):
        assert_well_formed(raw)
        assert read_mailbox(raw, "From")[:3] == (school, school, "noreply@klaspost.nl")


def test_a_plain_ascii_subject_stays_readable_text() -> None:
    msg = new_post_email(
        "nl", "Jan", "jan@ouders.nl", "Groep 3B", "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM
    )
    assert b"Subject: Nieuw bericht in Groep 3B\r\n" in flatten_message(msg)
    assert b"To: Jan <jan@ouders.nl>\r\n" in flatten_message(msg)


# -- end to end ------------------------------------------------------------------------------------


async def test_mails_with_the_longest_names_arrive_at_an_smtp_server_and_read_back_exactly() -> None:
    group, parent, school = "漢字😀 " * 16, '👨\u200d👩\u200d👧 Zoë "de" Bös, (groep 7/8)' * 3, "é" * 200
    group, parent = trim(group)[:GROUP_NAME_MAX], trim(parent)[:PERSON_NAME_MAX]
    post = new_post_parts(
        "nl", parent, "ouder@ouders.nl", group, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM
    )
    context = {"school_name": school, "child_name": CASE_5, "expires_at": "2099-12-14T16:00:00+00:00"}
    invitation = one_off_email(
        "invitation", uuid.uuid4(), "nl", "ouder@ouders.nl", "山" * 120, context, "K7QM3XPDWN9R", AMSTERDAM,
        "https://k.nl/", MAIL_FROM,
    )  # fmt: skip
    expected: list[tuple[str, str]] = [
        (f"Nieuw bericht in {group}", parent),
        (f"{school} nodigt u uit voor Klaspost voor {CASE_5}", "山" * 120),
    ]
    async with SmtpSink() as sink:
        settings = Settings(
            database_url="postgresql://unused", smtp_host=sink.host, smtp_port=sink.port, smtp_timeout_seconds=5,
            mail_from=MAIL_FROM,
        )  # fmt: skip
        mailer = Mailer(settings)
        try:
            fast = outgoing_email(post)
            assert isinstance(fast, OutgoingMail)
            await mailer.send(fast)
            await mailer.send(invitation)
            received = await sink.wait_for(2, timeout=10)
        finally:
            await mailer.close()
    for mail, (subject, to_name) in zip(received, expected, strict=True):
        assert_reads_back(mail.raw, subject, to_name, "ouder@ouders.nl")
        assert str(mail.message["Subject"]) == subject
