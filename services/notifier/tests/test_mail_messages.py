"""The one-off mails as composed: subjects per kind and language, the code in groups and in the link's
fragment, dates in the school's time zone, and names that cannot break the HTML or the headers."""

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from notifier.mails import (
    code_groups,
    format_moment,
    invitation_link,
    local_zone,
    one_off_email,
    password_link,
)

MAIL_FROM = "Klaspost <noreply@klaspost.test>"
MAIL_ID = uuid.UUID("2f1c7a52-3a0e-4a43-9b87-6e1f0d7c5b11")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


def a_mail(kind="invitation", locale="nl", code="K7QM3XPDWN9R", **context):
    values = {
        "school_name": "De Regenboog",
        "child_name": "Sam",
        "expires_at": "2099-12-14T16:00:00+00:00",
        "reminder": 0,
    } | context
    return one_off_email(
        kind,
        MAIL_ID,
        locale,
        "ouder@ouders.test",
        None,
        values,
        code,
        AMSTERDAM,
        "https://klaspost.test/",
        MAIL_FROM,
    )


@pytest.mark.parametrize(
    ("kind", "locale", "subject"),
    [
        ("invitation", "nl", "De Regenboog nodigt u uit voor Klaspost voor Sam"),
        ("invitation", "en", "De Regenboog invites you to Klaspost for Sam"),
        ("invitation_reminder", "nl", "Herinnering: De Regenboog nodigt u uit voor Klaspost voor Sam"),
        ("invitation_reminder", "en", "Reminder: De Regenboog invites you to Klaspost for Sam"),
        ("password_reset", "nl", "Nieuw wachtwoord voor Klaspost"),
        ("password_reset", "en", "Reset your Klaspost password"),
        ("welcome", "nl", "De Regenboog heeft u toegevoegd aan Klaspost: stel uw wachtwoord in"),
        ("welcome", "en", "De Regenboog added you to Klaspost: set your password"),
    ],
)
def test_each_kind_has_its_subject_in_the_readers_language(kind, locale, subject):
    msg = a_mail(kind, locale)

    assert msg["Subject"] == subject
    assert msg["Content-Language"] == locale
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert f'lang="{locale}"' in msg.get_body(("html",)).get_content()
    assert msg["Message-ID"] == f"<{kind}.{MAIL_ID}@klaspost.test>"
    assert msg["Auto-Submitted"] == "auto-generated"


def test_the_same_mail_keeps_its_message_id():
    assert a_mail()["Message-ID"] == a_mail()["Message-ID"]
    assert a_mail()["X-Klaspost-Mail-Id"] == str(MAIL_ID)


def test_an_unknown_language_gets_the_dutch_mail():
    assert a_mail(locale="fr")["Subject"] == "De Regenboog nodigt u uit voor Klaspost voor Sam"


def test_the_invitation_shows_the_code_in_groups_and_carries_it_in_the_links_fragment():
    msg = a_mail()

    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "    K7QM-3XPD-WN9R\n" in text
    assert "https://klaspost.test/invite#code=K7QM3XPDWN9R\n" in text
    assert "https://klaspost.test/invite en typ de code over" in text
    assert 'href="https://klaspost.test/invite#code=K7QM3XPDWN9R"' in html
    assert [f">{group}</span>" in html for group in ("K7QM", "3XPD", "WN9R")] == [True] * 3
    assert "K7QM3XPDWN9R</span>" not in html
    assert "geldig tot maandag 14 december 2099 om 17:00." in text


def test_an_identity_code_keeps_its_hyphens_in_the_link_and_its_groups_in_the_text():
    msg = a_mail(code="KD7M-3QXZ-PA4R-9TNF")

    text = msg.get_body(("plain",)).get_content()
    assert "    KD7M-3QXZ-PA4R-9TNF\n" in text
    assert "https://klaspost.test/invite#code=KD7M-3QXZ-PA4R-9TNF\n" in text


def test_the_reset_link_carries_the_token_in_its_fragment():
    msg = a_mail("password_reset", "en", code="t0k-en_x")

    text = msg.get_body(("plain",)).get_content()
    assert "https://klaspost.test/reset-password#token=t0k-en_x\n" in text
    assert "valid until Monday 14 December 2099 at 17:00." in text
    assert "Did you not ask for this? Then ignore this email: your password stays as it\nis." in text


@pytest.mark.parametrize(
    ("code", "groups"),
    [
        ("KD7M-3QXZ-PA4R-9TNF", ["KD7M", "3QXZ", "PA4R", "9TNF"]),  # as identity makes them
        ("K7QM3XPDWN9R", ["K7QM", "3XPD", "WN9R"]),
        ("k7qm-3xpd-wn9r", ["k7qm", "3xpd", "wn9r"]),
        ("K7QM 3XPD WN", ["K7QM", "3XPD", "WN"]),
        ("AB12", ["AB12"]),
        ("ab/cd+ef", ["ab/cd+ef"]),
    ],
)
def test_a_code_is_shown_in_groups_of_four(code, groups):
    assert code_groups(code) == groups


def test_a_secret_with_odd_characters_is_percent_encoded_in_the_link():
    assert (
        invitation_link("https://klaspost.test/", "a b/c#d")
        == "https://klaspost.test/invite#code=a%20b%2Fc%23d"
    )
    assert (
        password_link("https://klaspost.test", "x+y=")
        == "https://klaspost.test/reset-password#token=x%2By%3D"
    )


def test_a_school_name_and_a_child_name_cannot_inject_html_or_headers():
    msg = a_mail(school_name="<b>School</b>\r\nBcc: all@example.test", child_name='Sam & "Kim" <script>')

    assert msg["Bcc"] is None
    assert (
        msg["Subject"]
        == '<b>School</b> Bcc: all@example.test nodigt u uit voor Klaspost voor Sam & "Kim" <script>'
    )
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "<b>School</b>" not in html
    assert "Sam &amp; &#34;Kim&#34; &lt;script&gt;" in html


def test_a_non_web_base_url_is_refused():
    with pytest.raises(ValueError, match="http"):
        one_off_email(
            "invitation",
            MAIL_ID,
            "nl",
            "ouder@ouders.test",
            None,
            {"school_name": "S", "child_name": "C", "expires_at": "2099-12-14T16:00:00+00:00"},
            "CODE",
            AMSTERDAM,
            "javascript:alert(1)//",
            MAIL_FROM,
        )


@pytest.mark.parametrize(
    ("zone", "locale", "shown"),
    [
        ("Europe/Amsterdam", "nl", "maandag 14 december 2099 om 17:00"),
        ("Europe/Amsterdam", "en", "Monday 14 December 2099 at 17:00"),
        ("America/Kralendijk", "nl", "maandag 14 december 2099 om 12:00"),
        ("Asia/Tokyo", "en", "Tuesday 15 December 2099 at 01:00"),
    ],
)
def test_a_moment_is_shown_in_the_local_time_of_the_zone(zone, locale, shown):
    assert format_moment(datetime(2099, 12, 14, 16, 0, tzinfo=UTC), locale, ZoneInfo(zone)) == shown


@pytest.mark.parametrize("name", [None, "", "Mars/Olympus_Mons", "../../etc/passwd"])
def test_an_unknown_time_zone_falls_back_to_the_default(name):
    assert local_zone(name, "Europe/Amsterdam") == AMSTERDAM


def test_a_known_time_zone_is_used():
    assert local_zone("America/Kralendijk", "Europe/Amsterdam") == ZoneInfo("America/Kralendijk")
