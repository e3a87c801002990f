"""Case 5 of issue 8: every header decodes to exactly what was meant, whatever the (allowed) name.

Python's folder split non-ASCII text into encoded-words with the space between them outside, so
``coördinatie geïnteresseerde`` came out glued together. Each mail is flattened the way the mailer
sends it (aiosmtplib, policy SMTP, with and without SMTPUTF8) and read back both with the email
package's default parser and with ``decode_header``/``make_header``.
"""

import random
import re
import uuid
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest
from aiosmtplib.email import flatten_message

from notifier.mails import MAIL_KINDS, MailKind, one_off_email
from notifier.messages import new_post_email

MAIL_FROM = "Klaspost <noreply@klaspost.nl>"
GROUP_NAME_MAX = 80  # identity's GroupName
PERSON_NAME_MAX = 120  # identity's DisplayName
AMSTERDAM = ZoneInfo("Europe/Amsterdam")

_WORDS = (  # noqa: SIM905  # a sentence reads better than a list of 50 words
    "Groep 8 kamp Ameland informatie over de coördinatie geïnteresseerde ouders ideeën café "
    "reünie financiële Curaçao België première skiën naïef überhaupt Anaïs Zoë Noël Chloë "
    "IJsselmeer 's-Hertogenbosch co-ouder één vóór hè crème brûlée Ångström Þór Łódź 😀 "
    'schoolreis: vrijwilligers (groep 7/8) — voor & na "de" musical, zwemles; oudergesprekken'
).split()


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


def read_back(msg: EmailMessage, utf8: bool) -> dict[str, tuple[str, str]]:
    """Header -> (as the default parser reads it, as decode_header/make_header read it)."""
    raw = flatten_message(msg, utf8=utf8)
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    assert all(len(line.encode()) <= 998 for line in head.split("\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    fields = {}
    for match in re.finditer(r"^([\w-]+): (.*?)\r\n(?! )", head + "\r\n", re.M | re.S):
        name, value = match.groups()
        unfolded = value.replace("\r\n", "")
        fields[name] = (str(parsed[name]), str(make_header(decode_header(unfolded))))
    return fields


def assert_round_trip(msg: EmailMessage, subject: str, to_name: str, to_address: str) -> None:
    for utf8 in (False, True):
        fields = read_back(msg, utf8)
        assert fields["Subject"] == (subject, subject)
        parsed_to = message_from_bytes(flatten_message(msg, utf8=utf8), policy=policy.default)["To"]
        assert parsed_to.addresses[0].display_name == to_name
        assert parsed_to.addresses[0].addr_spec == to_address
        assert fields["To"][1] == (f"{to_name} <{to_address}>" if to_name else to_address)


def test_the_group_name_that_glued_two_words_decodes_as_written() -> None:
    group = "Groep 8 kamp Ameland: informatie over de coördinatie geïnteresseerde ouders"
    msg = new_post_email("nl", "Jan", "jan@ouders.nl", group, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM)
    assert_round_trip(msg, f"Nieuw bericht in {group}", "Jan", "jan@ouders.nl")


@pytest.mark.parametrize("locale", ["nl", "en"])
def test_a_new_post_mail_decodes_to_the_group_and_parent_name_for_many_dutch_names(locale: str) -> None:
    prefix = "Nieuw bericht in " if locale == "nl" else "New post in "
    groups = names(150, GROUP_NAME_MAX, seed=8)
    parents = names(150, PERSON_NAME_MAX, seed=80)
    for group, parent in zip(groups, parents, strict=True):
        msg = new_post_email(
            locale, parent, "ouder@ouders.nl", group, "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM
        )
        assert_round_trip(msg, prefix + group, parent, "ouder@ouders.nl")


@pytest.mark.parametrize("kind", MAIL_KINDS)
def test_every_one_off_mail_decodes_to_the_school_child_and_recipient_names(kind: MailKind) -> None:
    schools = names(40, 200, seed=5)
    children = names(40, 100, seed=6)
    parents = names(40, PERSON_NAME_MAX, seed=7)
    for school, child, parent in zip(schools, children, parents, strict=True):
        context = {"school_name": school, "child_name": child, "expires_at": "2099-12-14T16:00:00+00:00"}
        msg = one_off_email(
            kind, uuid.uuid4(), "nl", "ouder@ouders.nl", parent, context, "K7QM3XPDWN9R",
            AMSTERDAM, "https://k.nl/", MAIL_FROM,
        )  # fmt: skip
        assert_round_trip(msg, str(msg["Subject"]), parent, "ouder@ouders.nl")
        if kind != "password_reset":
            assert school in str(msg["Subject"])


def test_a_plain_ascii_subject_stays_readable_text() -> None:
    msg = new_post_email(
        "nl", "Jan", "jan@ouders.nl", "Groep 3B", "x", "https://k.nl/p", uuid.uuid4(), MAIL_FROM
    )
    assert b"Subject: Nieuw bericht in Groep 3B\r\n" in flatten_message(msg)
