"""Per-mail build cost of a post's fan-out: the email package (build_email, then flattened as the
mailer's aiosmtplib did) against compose.OutgoingMail (shared headers folded once per post and
language, the rest written directly). One post to N parents, each with their own name, address,
Message-ID and unsubscribe link; CPU time per mail, best of 5 rounds. Then the same as bytes for
names of 120 CJK characters and of emoji sequences (group names of 80).

    PYTHONPATH=.:services/notifier .venv/bin/python bench/mail_build.py [--parents 28]
"""

import argparse
import time
import uuid
from collections.abc import Callable

from aiosmtplib.email import flatten_message

from notifier.compose import MailParts, outgoing_email
from notifier.messages import new_post_parts
from notifier.unsubscribe import headers as unsubscribe_headers

MAIL_FROM = "Klaspost <noreply@klaspost.nl>"


#: Shapes of names: (a parent's name, the group's name), each at its allowed length where it matters
#: (120 and 80 characters): encoded-words and folding cost more for long non-ASCII names.
NAMES = {
    "Dutch": ("Ouder {i} van Bergen-Müller", "Groep 8 kamp Ameland: informatie over de coördinatie"),
    "CJK": ("{i}" + "山田花子" * 30, "漢字" * 40),
    "emoji": ("{i}" + "👨\u200d👩\u200d👧" * 23, "😀" * 80),
}


def fan_out(parents: int, shape: str = "Dutch") -> list[MailParts]:
    post_id = uuid.uuid4()
    parent, group = NAMES[shape]
    mails = []
    for i in range(parents):
        parts = new_post_parts(
            "nl" if i % 4 else "en",
            parent.format(i=i)[:120],
            f"ouder{i}@ouders.nl",
            group,
            "Morgen gaan we naar het bos. Neem laarzen mee!\nDe bus vertrekt om 8:30 bij school.",
            f"https://app.klaspost.nl/posts/{post_id}",
            uuid.uuid4(),
            MAIL_FROM,
        )
        extra = unsubscribe_headers("https://api.klaspost.nl", b"k" * 32, uuid.uuid4(), "posts")
        mails.append(MailParts(**{**parts.__dict__, "headers": {**parts.headers, **extra}}))
    return mails


def per_mail_ms(build: Callable[[MailParts], object], mails: list[MailParts]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for parts in mails:
            build(parts)
        best = min(best, time.process_time() - start)
    return 1000 * best / len(mails)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parents", type=int, default=28)
    args = parser.parse_args()
    mails = fan_out(args.parents)
    before = per_mail_ms(lambda parts: flatten_message(parts.message()), mails)
    after = per_mail_ms(outgoing_email, mails)
    pad = " " * len(str(args.parents))
    print(f"{args.parents} parents, one post: per mail {before:.3f} ms (email package, built and flattened)")
    print(f"{pad}              per mail {after:.3f} ms (OutgoingMail)  = {before / after:.1f}x less")
    for shape in [shape for shape in NAMES if shape != "Dutch"]:
        cost = per_mail_ms(outgoing_email, fan_out(args.parents, shape))
        print(
            f"{pad}              per mail {cost:.3f} ms (OutgoingMail, {shape} names at their length limit)"
        )


if __name__ == "__main__":
    main()
