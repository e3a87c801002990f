import json
import os
import unicodedata
import uuid

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifier.compose import resolve_locale
from notifier.messages import (
    MAX_PUSH_PAYLOAD_BYTES,
    encode_push_payload,
    new_post_email,
    new_post_push,
)

MAIL_FROM = "Klaspost <noreply@klaspost.test>"
POST_URL = "https://klaspost.test/posts/42?from=mail&x=1"


def an_email(locale="nl", group_name="Groep 3B", excerpt="Morgen gaan we naar de kinderboerderij!", **kw):
    args = {
        "locale": locale,
        "recipient_name": "Ada de Vries",
        "recipient_email": "ada@ouders.test",
        "group_name": group_name,
        "excerpt": excerpt,
        "post_url": POST_URL,
        "notification_id": uuid.UUID("7b0c6c1e-6a57-4a7e-9b7e-0f4bdfb4c1a2"),
        "mail_from": MAIL_FROM,
    } | kw
    return new_post_email(**args)


@pytest.mark.parametrize(
    ("locale", "subject", "policy"),
    [
        ("nl", "Nieuw bericht in Groep 3B", "niet delen met anderen"),
        ("en", "New post in Groep 3B", "may not share them with third parties"),
    ],
)
def test_mail_has_text_and_html_in_the_parents_language(locale, subject, policy):
    msg = an_email(locale)

    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Subject"] == subject
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Groep 3B" in part
        assert "Ada de Vries" in part
        assert "kinderboerderij" in part
        assert policy in part
    assert POST_URL in text
    assert 'href="https://klaspost.test/posts/42?from=mail&amp;x=1"' in html
    assert f'lang="{locale}"' in html
    assert msg["Content-Language"] == locale


def test_html_part_escapes_what_parents_and_teachers_typed():
    msg = an_email(group_name="Groep <script>alert(1)</script>", excerpt='Kijk & "lees" <b>dit</b>')

    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>dit</b>" not in html
    assert "Kijk &amp; &#34;lees&#34; &lt;b&gt;dit&lt;/b&gt;" in html
    # The text part is plain text: shown as typed, nothing to escape.
    assert "Groep <script>alert(1)</script>" in msg.get_body(("plain",)).get_content()


def test_headers_identify_the_notification_so_a_resend_is_recognisable():
    first, resend = an_email(), an_email()

    assert first["Message-ID"] == resend["Message-ID"]
    assert first["Message-ID"] == "<notification.7b0c6c1e-6a57-4a7e-9b7e-0f4bdfb4c1a2@klaspost.test>"
    assert first["X-Klaspost-Notification-Id"] == "7b0c6c1e-6a57-4a7e-9b7e-0f4bdfb4c1a2"
    assert first["Date"].datetime is not None
    assert first["From"].addresses[0].addr_spec == "noreply@klaspost.test"
    assert first["To"].addresses[0].display_name == "Ada de Vries"
    assert first["To"].addresses[0].addr_spec == "ada@ouders.test"
    assert first["Auto-Submitted"] == "auto-generated"


def test_a_group_name_with_a_line_break_cannot_inject_headers():
    msg = an_email(group_name="Groep 3B\r\nBcc: everyone@example.test")

    assert msg["Bcc"] is None
    assert msg["Subject"] == "Nieuw bericht in Groep 3B Bcc: everyone@example.test"


@pytest.mark.parametrize(
    "address", ["", "no domain", "a@b@c", "ada@☃.test", "ada@bü cher.test", "ada@" + "ü" * 70 + ".test"]
)
def test_an_unusable_address_is_a_value_error(address):
    with pytest.raises(ValueError, match="mail address"):
        an_email(recipient_email=address)


def test_an_international_domain_is_addressed_in_its_ascii_form():
    msg = an_email(recipient_email=" Ada@Bücher.Test ")

    assert msg["To"].addresses[0].addr_spec == "Ada@xn--bcher-kva.test"
    assert msg["To"].addresses[0].display_name == "Ada de Vries"


def test_a_non_ascii_local_part_is_kept_for_a_relay_that_takes_it():
    msg = an_email(recipient_email="ünï@bücher.test")

    assert msg["To"].addresses[0].username == "ünï"
    assert msg["To"].addresses[0].domain == "xn--bcher-kva.test"


def test_a_non_web_post_url_is_refused():
    with pytest.raises(ValueError, match="http"):
        an_email(post_url="javascript:alert(1)")


@pytest.mark.parametrize(
    ("given", "expected"),
    [("nl", "nl"), ("en", "en"), ("en-GB", "en"), ("EN_us", "en"), ("fr", "nl"), ("", "nl"), (None, "nl")],
)
def test_locale_falls_back_to_dutch(given, expected):
    assert resolve_locale(given) == expected


def test_unknown_locale_gets_the_dutch_mail():
    assert an_email("de")["Subject"] == "Nieuw bericht in Groep 3B"


def test_mail_without_a_name_greets_the_parent_generically():
    msg = an_email(recipient_name="")
    assert msg.get_body(("plain",)).get_content().startswith("Beste ouder/verzorger,\n\nEr is een nieuw")


@pytest.mark.parametrize(
    ("locale", "title"), [("nl", "Nieuw bericht in Groep 3B"), ("en", "New post in Groep 3B")]
)
def test_push_payload_names_the_group_and_links_the_post(locale, title):
    post_id = uuid.uuid4()
    payload = new_post_push(locale, "Groep 3B", "Morgen gym!", "https://klaspost.test/posts/1", post_id)

    assert payload == {
        "title": title,
        "body": "Morgen gym!",
        "url": "https://klaspost.test/posts/1",
        "tag": f"post-{post_id}",
    }


@pytest.mark.parametrize(
    "excerpt",
    [
        "Lorem ipsum dolor sit amet. " * 400,  # 11 kB of words
        "x" * 10_000,  # one long word
        "😀" * 3_000,  # four bytes each
        'e\u0301"\\\n\t\x01' * 2_000,  # accents, escapes and control characters
        "👨\u200d👩\u200d👧 " * 1_000,  # emoji sequences
    ],
)
def test_push_payload_with_a_10kb_excerpt_stays_small(excerpt):
    payload = new_post_push("nl", "Groep 3B", excerpt, "https://klaspost.test/posts/1", uuid.uuid4())

    size = len(encode_push_payload(payload))
    assert size <= MAX_PUSH_PAYLOAD_BYTES
    assert size > MAX_PUSH_PAYLOAD_BYTES - 100  # the room is used, not thrown away
    body = payload["body"]
    assert body.endswith("…")
    assert body[:5] == " ".join(excerpt.split())[:5]
    cut = body[:-1].rstrip()
    assert not unicodedata.combining(cut[-1])
    assert not cut.endswith("\u200d")
    assert json.loads(encode_push_payload(payload)) == payload
    assert len(_encrypt_for_a_browser(encode_push_payload(payload))) < 4096


def test_push_title_is_shortened_for_a_very_long_group_name():
    payload = new_post_push("en", "Groep " + "3B" * 500, "hi", "https://klaspost.test/p/1", "p1")
    assert len(payload["title"]) < 100
    assert payload["title"].endswith("…")


def _encrypt_for_a_browser(data: bytes) -> bytes:
    """Encrypt as pywebpush does (aes128gcm, one record), to measure what goes on the wire."""
    browser = ec.generate_private_key(ec.SECP256R1())
    dh = browser.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return bytes(
        http_ece.encrypt(
            data,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            dh=dh,
            auth_secret=os.urandom(16),
            version="aes128gcm",
        )
    )
