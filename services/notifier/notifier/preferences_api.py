"""Notifier's HTTP handlers for preferences and one-click unsubscribe.

``GET/PUT /preferences``: the caller's choices. ``GET/POST /unsubscribe/{token}`` (no login: the
signed token is the proof, see unsubscribe.py): GET only says what the link does; POST (RFC 8058 sends
``List-Unsubscribe=One-Click`` as a form) turns that kind of email off, and again and again to the
same effect. Both answer JSON, or a small HTML page in the person's language when the caller asks for
HTML and not JSON (a browser: a mail program without one-click support opens the link, and the page's
button POSTs).
"""

import uuid
from datetime import time

from aiohttp import web

from notifier import message_store, unsubscribe
from notifier.compose import resolve_locale, templates
from notifier.domain import CategoryChoice, Preferences, QuietHoursWindow, UnsubscribeView
from notifier.preferences import (
    CATEGORIES,
    DEFAULT_CHOICE,
    Category,
    Choice,
    QuietHours,
    one_change_at_a_time,
)
from shared.app import POOL
from shared.errors import NotFound, ValidationFailed
from shared.http import json_response, read_json
from shared.tokens import require_caller


async def get_preferences(request: web.Request) -> web.Response:
    """The caller's choices; the defaults for a person who never chose (or whom the notifier does not
    know yet: their account copy may arrive after their first visit)."""
    caller = require_caller(request)
    async with request.app[POOL].acquire() as conn:
        choices = await message_store.choices_of(conn, caller.person_id)
        quiet = await message_store.quiet_hours_of(conn, caller.person_id)
    return json_response(_view(choices, quiet))


async def put_preferences(request: web.Request) -> web.Response:
    """Replace the caller's choices and quiet hours (``quiet_hours`` null or left out: none). 422
    naming ``quiet_hours.ends`` for a window that ends when it starts (see QuietHours). Taking turns
    with a one-click unsubscribe of the same person (preferences.one_change_at_a_time)."""
    caller = require_caller(request)
    command = await read_json(request, Preferences)
    choices: dict[Category, Choice] = {
        category: Choice(getattr(command, category).channel, getattr(command, category).timing)
        for category in CATEGORIES
    }
    quiet = _quiet_hours(command.quiet_hours)
    async with request.app[POOL].acquire() as conn:
        async with conn.transaction():
            await one_change_at_a_time(conn, caller.person_id)
            await message_store.save_preferences(conn, caller.person_id, choices, quiet)
        saved = await message_store.choices_of(conn, caller.person_id)
        quiet = await message_store.quiet_hours_of(conn, caller.person_id)
    return json_response(_view(saved, quiet))


def _quiet_hours(window: QuietHoursWindow | None) -> QuietHours | None:
    if window is None:
        return None
    problem = window.problem()
    if problem is not None:
        raise ValidationFailed(
            "some fields are missing or invalid",
            [{"field": f"quiet_hours.{problem[0]}", "problem": problem[1]}],
        )
    return QuietHours(time.fromisoformat(window.starts), time.fromisoformat(window.ends))


def _view(choices: dict[str, Choice], quiet: QuietHours | None) -> Preferences:
    def one(category: Category) -> CategoryChoice:
        choice = choices.get(category, DEFAULT_CHOICE)
        return CategoryChoice(channel=choice.channel, timing=choice.timing)

    window = QuietHoursWindow(starts=f"{quiet.starts:%H:%M}", ends=f"{quiet.ends:%H:%M}") if quiet else None
    return Preferences(
        posts=one("posts"), signups=one("signups"), reminders=one("reminders"), quiet_hours=window
    )


async def _read(request: web.Request) -> tuple[uuid.UUID, unsubscribe.Target]:
    """The link's person and target; 404 for a link we did not make."""
    token = request.match_info["token"]
    async with request.app[POOL].acquire() as conn:
        key = await message_store.unsubscribe_key(conn)
    found = unsubscribe.read_token(key, token)
    if found is None:
        raise NotFound("no such unsubscribe link")
    return found


async def show_unsubscribe(request: web.Request) -> web.Response:
    """What the link would do, and whether those emails are off already as the person gets them
    (``auto`` with a device: off); changes nothing (mail scanners follow links)."""
    person_id, target = await _read(request)
    async with request.app[POOL].acquire() as conn:
        off = await unsubscribe.email_is_off(conn, person_id, target)
    return await _answer(request, person_id, UnsubscribeView(category=target, email_off=off, done=False))


async def unsubscribe_one_click(request: web.Request) -> web.Response:
    """Turn the emails of the link's category off (RFC 8058), atomically. Idempotent."""
    person_id, target = await _read(request)
    async with request.app[POOL].acquire() as conn:
        await unsubscribe.turn_email_off(conn, person_id, target)
    return await _answer(request, person_id, UnsubscribeView(category=target, email_off=True, done=True))


_WHAT = {
    "nl": {
        "posts": "nieuwe berichten",
        "signups": "inschrijvingen en gesprekken",
        "reminders": "herinneringen",
        "digest": "de dagelijkse samenvatting",
    },
    "en": {
        "posts": "new posts",
        "signups": "sign-ups and conferences",
        "reminders": "reminders",
        "digest": "the daily digest",
    },
}


async def _answer(request: web.Request, person_id: uuid.UUID, view: UnsubscribeView) -> web.Response:
    accept = request.headers.get("Accept", "")
    if "text/html" not in accept or "application/json" in accept:
        return json_response(view)
    async with request.app[POOL].acquire() as conn:
        locale = await conn.fetchval("SELECT locale FROM people WHERE person_id = $1", person_id)
    lang = resolve_locale(locale)
    subject = "Klaspost"
    page = templates.get_template(f"unsubscribe.{lang}.html").render(
        lang=lang, subject=subject, what=_WHAT[lang][view.category], done=view.done, email_off=view.email_off
    )
    return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})
