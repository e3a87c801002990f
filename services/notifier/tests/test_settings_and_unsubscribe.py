"""PUT /preferences and the one-click unsubscribe link (RFC 8058) through a running notifier, with
access tokens signed as identity signs them.

Found when tried: quiet hours 00:00-00:00 were stored as "no quiet hours" without a word; the page a
link opens said ``email_off: false`` to a parent who gets no email (channel ``auto`` with a device);
and a one-click unsubscribe read the preference and then wrote it, so a settings change that landed in
between was overwritten with a channel made from the old one.
"""

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest

from notifier import message_store, unsubscribe
from notifier.preferences import Choice, one_change_at_a_time
from notifier.unsubscribe import Target

from .conftest import eventually
from .test_preferences import Parent, Site, a_class, choose, site

__all__ = ["site"]  # the fixture, a notifier of this module's own

EVERY_DAY = {"channel": "both", "timing": "immediate"}


def settings(quiet: dict[str, str] | None) -> dict[str, Any]:
    return {"posts": EVERY_DAY, "signups": EVERY_DAY, "reminders": EVERY_DAY, "quiet_hours": quiet}


async def a_parent(site: Site, *, device: bool) -> Parent:
    klas = await a_class(site, 1, devices=device)
    return klas.parents[0]


async def link(site: Site, person_id: uuid.UUID, target: Target) -> str:
    async with site.pool.acquire() as conn:
        key = await message_store.unsubscribe_key(conn)
    return f"{site.base_url}/unsubscribe/{unsubscribe.make_token(key, person_id, target)}"


async def channels(site: Site, person_id: uuid.UUID) -> dict[str, str]:
    async with site.pool.acquire() as conn:
        return {c: choice.channel for c, choice in (await message_store.choices_of(conn, person_id)).items()}


@pytest.mark.parametrize("clock", ["00:00", "21:00"])
async def test_quiet_hours_that_end_when_they_start_are_refused_naming_the_field(
    site: Site, clock: str
) -> None:
    parent = await a_parent(site, device=True)
    async with aiohttp.ClientSession(site.base_url, headers=site.auth(parent.person_id)) as http:
        async with http.put("/preferences", json=settings({"starts": "21:00", "ends": "07:00"})) as answer:
            assert answer.status == 200, await answer.text()
        async with http.put("/preferences", json=settings({"starts": clock, "ends": clock})) as answer:
            assert answer.status == 422
            error = (await answer.json())["error"]
        assert error["code"] == "validation_failed"
        [detail] = error["details"]
        assert detail["field"] == "quiet_hours.ends"
        assert "the same as starts" in detail["problem"]
        async with http.get("/preferences") as answer:  # nothing changed
            assert (await answer.json())["quiet_hours"] == {"starts": "21:00", "ends": "07:00"}
        async with http.put("/preferences", json=settings(None)) as answer:  # none, said plainly
            assert (await answer.json())["quiet_hours"] is None


async def test_a_person_not_known_yet_reads_and_sets_their_preferences(site: Site) -> None:
    # The account copy arrives from identity after a parent may first open the settings.
    stranger = uuid.uuid4()
    async with aiohttp.ClientSession(site.base_url, headers=site.auth(stranger)) as http:
        async with http.get("/preferences") as answer:
            assert answer.status == 200
            assert (await answer.json())["posts"] == {"channel": "auto", "timing": "immediate"}
        wanted = settings({"starts": "22:00", "ends": "06:30"})
        async with http.put("/preferences", json=wanted) as answer:
            assert (answer.status, await answer.json()) == (200, wanted)


@pytest.mark.parametrize(
    ("device", "chosen", "target", "email_off"),
    [
        (True, None, "posts", True),  # the default, auto, with a device: pushes only
        (False, None, "posts", False),  # auto without a device: email
        (True, Choice("auto"), "posts", True),
        (True, Choice("both"), "posts", False),
        (True, Choice("email"), "posts", False),
        (False, Choice("push"), "posts", True),
        (True, Choice("auto", "digest"), "digest", True),
        (False, Choice("auto", "digest"), "digest", False),
        (True, Choice("both", "digest"), "digest", False),
    ],
)
async def test_the_unsubscribe_page_reports_whether_the_parent_gets_those_emails_now(
    site: Site, device: bool, chosen: Choice | None, target: Target, email_off: bool
) -> None:
    parent = await a_parent(site, device=device)
    if chosen is not None:
        await choose(site, parent, chosen.channel, chosen.timing)
    async with (
        aiohttp.ClientSession() as http,
        http.get(await link(site, parent.person_id, target)) as answer,
    ):
        assert answer.status == 200
        assert await answer.json() == {"category": target, "email_off": email_off, "done": False}


async def _waiting_for_a_lock(site: Site) -> bool:
    return bool(
        await site.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def test_one_click_does_not_overwrite_a_settings_change_made_meanwhile(site: Site) -> None:
    parent = await a_parent(site, device=True)
    await choose(site, parent, "both")
    url = await link(site, parent.person_id, "posts")
    async with site.pool.acquire() as conn, aiohttp.ClientSession() as http:
        # The parent's PUT /preferences (posts: email only) is under way when the click comes.
        change = conn.transaction()
        await change.start()
        await one_change_at_a_time(conn, parent.person_id)
        await message_store.save_preferences(
            conn, parent.person_id, {c: Choice("email") for c in ("posts", "signups", "reminders")}, None
        )

        async def one_click() -> int:
            async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as answer:
                return answer.status

        click = asyncio.create_task(one_click())
        await eventually(lambda: _waiting_for_a_lock(site), what="the click waiting for the change")
        await change.commit()
        assert await click == 200
    # Email turned off from what the parent had just chosen (email -> none), not from what was read
    # before (both -> push: pushes the parent had just turned off).
    assert (await channels(site, parent.person_id))["posts"] == "none"


async def test_clicks_and_settings_changes_at_once_all_succeed_and_end_without_email(site: Site) -> None:
    parent = await a_parent(site, device=True)
    await choose(site, parent, "email", "digest")
    links = [await link(site, parent.person_id, target) for target in ("posts", "digest", "signups")]
    body = {c: {"channel": "email", "timing": "digest"} for c in ("posts", "signups", "reminders")}
    async with aiohttp.ClientSession(site.base_url) as http:

        async def click(url: str) -> int:
            async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as answer:
                return answer.status

        async def change() -> int:
            async with http.put("/preferences", json=body, headers=site.auth(parent.person_id)) as answer:
                return answer.status

        statuses = await asyncio.gather(*[change() for _ in range(3)], *[click(u) for u in links * 4])
        assert set(statuses) == {200}, statuses  # no deadlock between the two (a 500)
        for url in links:  # the clicks again, after every change
            assert await click(url) == 200
    assert await channels(site, parent.person_id) == {"posts": "none", "signups": "none", "reminders": "none"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{", 400, None),
        (b"null", 422, "(body)"),
        (b"[]", 422, "(body)"),
        (settings({"starts": "21:00"}), 422, "quiet_hours.ends"),
        (settings({"starts": "24:00", "ends": "07:00"}), 422, "quiet_hours.starts"),
        (settings({"starts": "7:00", "ends": "21:00"}), 422, "quiet_hours.starts"),
        (settings({"starts": "21:00", "ends": "07:00:00"}), 422, "quiet_hours.ends"),
        (settings({"starts": "21:00", "ends": "07:00", "zone": "UTC"}), 422, "quiet_hours.zone"),
        ({**settings(None), "posts": {"channel": "fax"}}, 422, "posts.channel"),
        ({**settings(None), "posts": {"channel": "email", "timing": "weekly"}}, 422, "posts.timing"),
        ({k: v for k, v in settings(None).items() if k != "signups"}, 422, "signups"),
        ({**settings(None), "posts": None}, 422, "posts"),
        ({**settings(None), "posts": {"channel": "email\u0000"}}, 422, "posts.channel"),
    ],
)
async def test_a_wrong_settings_body_is_refused_naming_what_is_wrong(
    site: Site, body: bytes | dict[str, Any], status: int, field: str | None
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**site.auth(uuid.uuid4()), "Content-Type": "application/json"}
    async with aiohttp.ClientSession(site.base_url) as http:
        async with http.put("/preferences", data=data, headers=headers) as answer:
            assert answer.status == status, await answer.text()
            error = (await answer.json())["error"]
        if field is not None:
            assert field in [detail["field"] for detail in error["details"]], error
        async with http.put(
            "/preferences", data=b"{}", headers={**headers, "Content-Type": "text/plain"}
        ) as answer:
            assert answer.status == 415
