"""A parent's devices for Web Push through the running system: registered, listed and removed by
their owner only; pointed only at known push services; dropped when the push service says the
subscription is gone; and a throttled push is retried and arrives once."""

import asyncio
import uuid
from typing import Any

import asyncpg

from shared.app import POOL
from tests.harness.feed import allow_posts_per_day
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    make_class,
    make_school,
)
from tests.harness.system import System, eventually


async def subscribe(system: System) -> dict[str, Any]:
    status, body = await system.call("GET", "notifier", "/push/vapid-public-key")
    assert status == 200, body
    return system.push.subscribe(body["application_server_key"])


async def register(system: System, person: Person, subscription: dict[str, Any]) -> dict[str, Any]:
    status, body = await system.call(
        "POST", "notifier", "/devices", person.token, json={"subscription": subscription}
    )
    assert status == 201, body
    return dict(body)


async def devices(system: System, person: Person) -> list[dict[str, Any]]:
    status, body = await system.call("GET", "notifier", "/devices", person.token)
    assert status == 200, body
    assert list(body) == ["devices"], body
    return list(body["devices"])


def pool(system: System) -> asyncpg.Pool:
    return system.services["notifier"].app[POOL]


async def class_with_parent(system: System) -> tuple[School, uuid.UUID, Person, Person]:
    school, group, teacher, parent = await make_class(system, "Groep 2")
    await allow_posts_per_day(system, school)  # a test may post twice (seed rule 5: one a day by default)

    async def known() -> bool:
        return bool(
            await pool(system).fetchval("SELECT 1 FROM people WHERE person_id = $1", parent.person_id)
        )

    await eventually(known, what="the parent's contact copied to the notifier")
    return school, group, teacher, parent


async def publish(system: System, teacher: Person, group: uuid.UUID, body: str = "Morgen gym!") -> str:
    status, created = await system.call(
        "POST", "posts", f"/groups/{group}/posts", teacher.token, json={"title": "Nieuws", "body": body}
    )
    assert status == 201, created
    return str(created["post_id"])


async def push_deliveries(system: System, post_id: str, person: Person) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool(system).fetch(
        """SELECT d.status, d.attempts, d.device_id, d.last_error FROM deliveries d
           JOIN notifications n USING (notification_id)
           WHERE n.post_id = $1 AND d.person_id = $2 AND d.channel = 'push'""",
        uuid.UUID(post_id),
        person.person_id,
    )
    return rows


async def test_a_parent_registers_lists_and_deletes_a_device(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    other = await add_person(system, school, "ander", "guardian", "Groep 1")
    subscription = await subscribe(system)

    device = await register(system, parent, subscription)
    assert set(device) == {"device_id", "kind", "endpoint_host", "created_at", "moved_from_another_account"}
    assert device["endpoint_host"] == "127.0.0.1"
    assert device["kind"] == "webpush"
    assert device["moved_from_another_account"] is False
    listed = await devices(system, parent)
    assert listed == [device]
    # The endpoint is a capability (whoever has it can push): it is never handed back.
    status, raw = await system.call("GET", "notifier", "/devices", parent.token)
    assert system.push.browser(subscription).id not in str(raw)

    assert await devices(system, other) == []
    status, body = await system.call("DELETE", "notifier", f"/devices/{device['device_id']}", other.token)
    assert status == 404, body
    assert body["error"]["code"] == "not_found"
    assert await devices(system, parent) == [device]

    status, body = await system.call("DELETE", "notifier", f"/devices/{device['device_id']}", parent.token)
    assert status == 204, body
    assert await devices(system, parent) == []
    assert (
        await pool(system).fetchval("SELECT count(*) FROM devices WHERE person_id = $1", parent.person_id)
        == 0
    )
    status, body = await system.call("DELETE", "notifier", f"/devices/{device['device_id']}", parent.token)
    assert status == 404, body


async def test_registering_the_same_subscription_again_keeps_one_device(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    partner = await add_person(system, school, "partner", "guardian", "Groep 1")
    subscription = await subscribe(system)
    first = await register(system, parent, subscription)
    again = await register(system, parent, subscription)
    assert again["device_id"] == first["device_id"]
    assert await devices(system, parent) == [first]
    # The same browser (the same keys), now logged in as someone else: the device is theirs.
    moved = await register(system, partner, subscription)
    assert moved["device_id"] == first["device_id"]
    assert await devices(system, parent) == []
    assert [d["device_id"] for d in await devices(system, partner)] == [first["device_id"]]


async def test_a_push_endpoint_outside_the_allowed_push_services_is_refused_with_422(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    keys = (await subscribe(system))["keys"]
    count = "SELECT count(*) FROM devices WHERE person_id = $1"
    for endpoint in (
        "https://evil.example.com/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254/",
        "http://localhost:5432/",
        "http://10.0.0.7/push/x",
        "http://[::1]/push/x",
        "https://127.0.0.1.evil.example.com/push/x",
        "https://push:secret@127.0.0.1/push/x",
        "not a url at all",
        "",
    ):
        subscription = {"endpoint": endpoint, "expirationTime": None, "keys": keys}
        status, body = await system.call(
            "POST", "notifier", "/devices", parent.token, json={"subscription": subscription}
        )
        assert status == 422, (endpoint, status, body)
        assert body["error"]["code"] == "validation_failed"
        assert [d["field"] for d in body["error"]["details"]] == ["subscription.endpoint"], (endpoint, body)
    for bad_keys, field in (
        ({**keys, "p256dh": "kort"}, "subscription.keys.p256dh"),
        ({**keys, "auth": "!" * 22}, "subscription.keys.auth"),
        ({"p256dh": keys["p256dh"]}, "subscription.keys.auth"),
    ):
        subscription = {"endpoint": f"{system.push.base_url}/push/x", "keys": bad_keys}
        status, body = await system.call(
            "POST", "notifier", "/devices", parent.token, json={"subscription": subscription}
        )
        assert status == 422, (bad_keys, status, body)
        assert [d["field"] for d in body["error"]["details"]] == [field], body
    assert await pool(system).fetchval(count, parent.person_id) == 0


async def test_a_subscription_the_push_service_reports_gone_is_deleted_and_its_delivery_failed(
    system: System,
) -> None:
    _school, group, teacher, parent = await class_with_parent(system)
    subscription = await subscribe(system)
    device = await register(system, parent, subscription)
    system.push.expire(subscription)
    post_id = await publish(system, teacher, group)

    async def given_up() -> bool:
        rows = await push_deliveries(system, post_id, parent)
        return len(rows) == 1 and rows[0]["status"] == "failed"

    await eventually(given_up, what="the push delivery marked failed")
    [delivery] = await push_deliveries(system, post_id, parent)
    assert delivery["attempts"] == 1
    assert delivery["last_error"]
    gone = uuid.UUID(device["device_id"])
    assert await pool(system).fetchval("SELECT count(*) FROM devices WHERE device_id = $1", gone) == 0
    assert await devices(system, parent) == []
    assert [
        r.status for r in system.push.rejections if r.subscription_id == system.push.browser(subscription).id
    ] == [410]
    assert system.push.pushes_for(subscription) == []

    # The next post is not even tried on the dead subscription; the email still goes.
    next_post = await publish(system, teacher, group, "Vrijdag vrij")

    async def mailed() -> bool:
        status = await pool(system).fetchval(
            """SELECT d.status FROM deliveries d JOIN notifications n USING (notification_id)
               WHERE n.post_id = $1 AND d.person_id = $2 AND d.channel = 'email'""",
            uuid.UUID(next_post),
            parent.person_id,
        )
        return bool(status == "sent")

    await eventually(mailed, what="the next post mailed")
    assert await push_deliveries(system, next_post, parent) == []


async def test_a_throttled_push_is_retried_and_delivered_once(system: System) -> None:
    _school, group, teacher, parent = await class_with_parent(system)
    subscription = await subscribe(system)
    await register(system, parent, subscription)
    system.push.throttle_once(subscription, retry_after=1)
    post_id = await publish(system, teacher, group)

    async def delivered() -> bool:
        return len(system.push.pushes_for(subscription)) == 1

    await eventually(delivered, what="the push delivered after the 429")

    async def sent() -> bool:
        rows = await push_deliveries(system, post_id, parent)
        return [r["status"] for r in rows] == ["sent"]

    await eventually(sent, what="the delivery marked sent")
    [delivery] = await push_deliveries(system, post_id, parent)
    assert delivery["attempts"] == 2
    browser = system.push.browser(subscription)
    assert [r.status for r in system.push.rejections if r.subscription_id == browser.id] == [429]
    [push] = system.push.pushes_for(subscription)
    assert post_id in push.json()["url"]
    await asyncio.sleep(1.5)  # room for a duplicate to arrive
    assert len(system.push.pushes_for(subscription)) == 1


async def both_pushed(
    system: System, subscriptions: list[dict[str, Any]], post_id: str, parent: Person
) -> None:
    async def sent() -> bool:
        rows = await push_deliveries(system, post_id, parent)
        return len(rows) == 2 and all(r["status"] == "sent" for r in rows)

    await eventually(sent, what="both devices pushed")
    assert all(len(system.push.pushes_for(s)) == 1 for s in subscriptions)


async def test_a_parent_can_remove_both_devices_after_a_post_reached_them(system: System) -> None:
    _school, group, teacher, parent = await class_with_parent(system)
    subscriptions = [await subscribe(system), await subscribe(system)]
    registered = [await register(system, parent, s) for s in subscriptions]
    post_id = await publish(system, teacher, group)
    await both_pushed(system, subscriptions, post_id, parent)
    for device in registered:
        status, body = await system.call(
            "DELETE", "notifier", f"/devices/{device['device_id']}", parent.token
        )
        assert status == 204, body
    assert await devices(system, parent) == []


async def test_two_gone_subscriptions_of_one_parent_are_both_deleted(system: System) -> None:
    _school, group, teacher, parent = await class_with_parent(system)
    subscriptions = [await subscribe(system), await subscribe(system)]
    for subscription in subscriptions:
        await register(system, parent, subscription)
        system.push.expire(subscription)
    post_id = await publish(system, teacher, group)

    async def both_failed() -> bool:
        rows = await push_deliveries(system, post_id, parent)
        return len(rows) == 2 and all(r["status"] == "failed" for r in rows)

    await eventually(both_failed, within=8, what="both push deliveries failed")
    assert await devices(system, parent) == []


async def device_row(system: System, endpoint: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool(system).fetchrow(
        "SELECT device_id, person_id, p256dh, auth FROM devices WHERE endpoint = $1", endpoint
    )
    return row


async def test_a_stranger_with_a_parents_endpoint_cannot_take_over_the_device(system: System) -> None:
    _school, group, teacher, parent = await class_with_parent(system)
    stranger = await add_person(system, await make_school(system), "vreemde", "teacher")
    subscription = await subscribe(system)
    device = await register(system, parent, subscription)
    before = await device_row(system, subscription["endpoint"])
    # The endpoint URL leaked; the keys the stranger sends are their own browser's.
    forged = {**subscription, "keys": (await subscribe(system))["keys"]}

    status, body = await system.call(
        "POST", "notifier", "/devices", stranger.token, json={"subscription": forged}
    )

    assert status == 409, body
    assert body["error"]["code"] == "conflict"
    assert device["device_id"] not in str(body)
    assert await device_row(system, subscription["endpoint"]) == before
    assert await devices(system, stranger) == []
    assert await devices(system, parent) == [device]
    status, body = await system.call("DELETE", "notifier", f"/devices/{device['device_id']}", stranger.token)
    assert status == 404, body
    # The owner still gets the pushes.
    post_id = await publish(system, teacher, group)

    async def pushed() -> bool:
        return len(system.push.pushes_for(subscription)) == 1

    await eventually(pushed, what="the post pushed to the owner's device")
    assert post_id in system.push.pushes_for(subscription)[0].json()["url"]


async def test_a_stranger_in_the_same_school_cannot_take_over_the_device_either(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    other = await add_person(system, school, "ander", "guardian", "Groep 1")
    subscription = await subscribe(system)
    device = await register(system, parent, subscription)
    for keys in (
        (await subscribe(system))["keys"],
        {**subscription["keys"], "auth": (await subscribe(system))["keys"]["auth"]},
        {**subscription["keys"], "p256dh": (await subscribe(system))["keys"]["p256dh"]},
    ):
        forged = {**subscription, "keys": keys}
        status, body = await system.call(
            "POST", "notifier", "/devices", other.token, json={"subscription": forged}
        )
        assert status == 409, (keys, body)
    assert await devices(system, parent) == [device]
    assert await devices(system, other) == []


async def test_the_owner_re_subscribing_with_rotated_keys_keeps_the_device_with_the_new_keys(
    system: System,
) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    subscription = await subscribe(system)
    device = await register(system, parent, subscription)
    rotated = {**subscription, "keys": (await subscribe(system))["keys"]}

    again = await register(system, parent, rotated)

    assert again["device_id"] == device["device_id"]
    row = await device_row(system, subscription["endpoint"])
    assert row is not None
    assert (row["person_id"], row["p256dh"], row["auth"]) == (
        parent.person_id,
        rotated["keys"]["p256dh"],
        rotated["keys"]["auth"],
    )
    assert await devices(system, parent) == [device]
