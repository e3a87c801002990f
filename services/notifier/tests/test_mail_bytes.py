"""compose.OutgoingMail: the mail built as bytes for the relay is the mail the email package builds.

The fan-out sends every parent's mail as bytes built cheaply (shared headers folded once, per-reader
headers written directly, parts by the email package's text encoder). Here both ways build the same
mails, for names and texts of every shape, and must give the same header lines (folding, RFC 2047,
IDNA) and the same contents, read back with the email package's default parser.
"""

import random
import re
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtplib.email import flatten_message

from notifier.compose import MailParts, OutgoingMail, outgoing_email
from notifier.messages import new_post_parts
from notifier.unsubscribe import headers as unsubscribe_headers

MAIL_FROM = "Klaspost <noreply@klaspost.nl>"
_WORDS = [  # a sentence reads better than a list; an empty word makes two spaces
    *(  # noqa: SIM905
        "Groep 8 kamp Ameland informatie over de coördinatie geïnteresseerde ouders ideeën café "
        "reünie financiële Curaçao België première skiën 's-Hertogenbosch co-ouder één vóór 😀 "
        'schoolreis: vrijwilligers (groep 7/8) — voor & na "de" musical, zwemles; =?utf-8?q?x?= Jan Bos '
        "漢字漢字漢字漢字漢字漢字漢字漢字 😀😀😀😀😀😀😀😀 👨\u200d👩\u200d👧 e\u0301e\u0301 שלום Zoë\u00a0Bös"
    ).split(" "),
    "a" * 90,
    "",
    "",
]


def _text(rng: random.Random, max_chars: int) -> str:
    target = rng.randint(1, max_chars)
    words: list[str] = []
    while len(" ".join(words)) < target:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:max_chars].strip() or "x"  # as our fields trim it


def _head(data: bytes) -> list[str]:
    """The header lines (each with its folds), Date left out and the boundary made constant."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    boundary = re.search(r'boundary="([^"]+)"', head)
    assert boundary
    fields = re.split(r"\r\n(?![ \t])", head.replace(boundary.group(1), "B"))
    return [f for f in fields if not f.startswith("Date:")]


def _parts(rng: random.Random, i: int) -> MailParts:
    domain = rng.choice(["ouders.nl", "bäckerij-müller.nl", "école.fr"])
    parts = new_post_parts(
        rng.choice(["nl", "en"]),
        _text(rng, 120) if i % 5 else "",
        f"ouder{i}@{domain}",
        _text(rng, 80),
        "\n".join(_text(rng, 300) for _ in range(rng.randint(1, 3))),
        f"https://app.klaspost.nl/posts/{uuid.uuid4()}",
        uuid.uuid4(),
        MAIL_FROM,
    )
    extra = unsubscribe_headers("https://api.klaspost.nl", b"k" * 32, uuid.uuid4(), "digest")
    return MailParts(**{**parts.__dict__, "headers": {**parts.headers, **extra}})


def test_bytes_are_the_mail_the_email_package_builds() -> None:
    rng = random.Random(8)
    for i in range(300):
        parts = _parts(rng, i)
        fast = outgoing_email(parts)
        assert isinstance(fast, OutgoingMail)
        slow = flatten_message(parts.message(), cte_type="7bit")
        assert _head(fast.data) == _head(slow), parts
        longest = max(78, *(len(line) for line in slow.split(b"\r\n")))  # a URL does not fold
        assert all(len(line) <= longest for line in fast.data.split(b"\r\n")), parts
        assert fast.recipients == (parts.to.addr_spec,)
        assert fast.sender == "noreply@klaspost.nl"
        ours = message_from_bytes(fast.data, policy=policy.default)
        theirs = message_from_bytes(slow, policy=policy.default)
        assert isinstance(ours, EmailMessage)
        assert isinstance(theirs, EmailMessage)
        for name in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe", "Content-Language"):
            assert str(ours[name]) == str(theirs[name])
        for kind in ("plain", "html"):
            mine, other = ours.get_body((kind,)), theirs.get_body((kind,))
            assert mine is not None
            assert other is not None
            assert mine.get_content() == other.get_content()
            assert mine["Content-Transfer-Encoding"] in ("7bit", "quoted-printable", "base64")


def test_an_address_that_needs_smtputf8_is_left_to_the_email_package() -> None:
    parts = new_post_parts(
        "nl", "Jan", "jän@ouders.nl", "Groep 5", "x", "https://app.klaspost.nl/p", uuid.uuid4(), MAIL_FROM
    )
    assert isinstance(outgoing_email(parts), EmailMessage)
