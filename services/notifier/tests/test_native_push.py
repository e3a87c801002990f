"""Android (FCM HTTP v1) and iPhone (APNs over HTTP/2) push, against local stand-ins that check what
Google and Apple check: the senders alone (JWTs, payload shapes, token caching, answers), then
through the running system (devices registered by the app, a post reaching both, a dead token
removed, a throttled send retried after Retry-After)."""

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from notifier.apns import ApnsSender
from notifier.delivery_errors import DeliveryFailed
from notifier.fcm import SCOPE, FcmSender
from notifier.settings import Settings
from shared.app import POOL
from shared.testing.apns import ApnsService
from shared.testing.fcm import FcmService
from tests.harness.feed import allow_posts_per_day
from tests.harness.school import Person, add_group, add_person, make_class, make_school
from tests.harness.system import System, eventually

PAYLOAD = {
    "title": "Nieuw in Groep 3",
    "body": "Morgen gym!",
    "url": "https://klaspost.nl/posts/1",
    "tag": "post-1",
}


def sender_settings(fcm: FcmService | None = None, apns: ApnsService | None = None) -> Settings:
    values: dict[str, Any] = {"database_url": "postgresql://unused", "push_timeout_seconds": 5}
    if fcm is not None:
        values |= {"fcm_credentials": json.dumps(fcm.service_account()), "fcm_base_url": fcm.base_url}
    if apns is not None:
        values |= {
            "apns_key": apns.key_pem,
            "apns_key_id": apns.key_id,
            "apns_team_id": apns.team_id,
            "apns_topic": apns.topic,
            "apns_host": apns.host,
            "apns_port": apns.port,
            "apns_ca_file": apns.ca_file,
        }
    return Settings.model_validate(values)


@pytest.fixture
async def fcm() -> AsyncIterator[FcmService]:
    async with FcmService() as service:
        yield service


@pytest.fixture
async def apns() -> AsyncIterator[ApnsService]:
    async with ApnsService() as service:
        yield service


# -- the senders alone ------------------------------------------------------------------------------


async def test_fcm_sends_with_a_verified_service_account_token_fetched_once(fcm: FcmService) -> None:
    tokens = [fcm.register() for _ in range(5)]
    async with FcmSender(sender_settings(fcm=fcm)) as sender:
        names = await asyncio.gather(*(sender.send(t, PAYLOAD, "post-1") for t in tokens))
    assert all(name.startswith(f"projects/{fcm.project_id}/messages/") for name in names)
    # One RS256 assertion for all five sends: the access token is cached until shortly before expiry.
    assert fcm.tokens_issued == 1
    [claims] = fcm.assertions
    assert claims["iss"] == fcm.client_email
    assert claims["aud"] == fcm.token_uri
    assert claims["scope"] == SCOPE
    assert claims["exp"] - claims["iat"] <= 3600
    assert sorted(m.token for m in fcm.messages) == sorted(tokens)
    message = fcm.messages[0].message
    assert message["notification"] == {"title": PAYLOAD["title"], "body": PAYLOAD["body"]}
    # The idempotency key: a repeat replaces the shown notification instead of adding one.
    assert message["android"]["collapse_key"] == "post-1"
    assert message["android"]["notification"]["tag"] == "post-1"
    assert message["data"] == {"url": PAYLOAD["url"], "tag": "post-1"}


async def test_fcm_credentials_may_be_a_file(fcm: FcmService, tmp_path: Path) -> None:
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(fcm.service_account()))
    settings = sender_settings(fcm=fcm).model_copy(update={"fcm_credentials": SecretStr(str(key_file))})
    token = fcm.register()
    async with FcmSender(settings) as sender:
        await sender.send(token, PAYLOAD, "post-1")
    assert len(fcm.messages_for(token)) == 1


async def test_fcm_fetches_a_new_access_token_when_the_old_one_is_refused(fcm: FcmService) -> None:
    token = fcm.register()
    async with FcmSender(sender_settings(fcm=fcm)) as sender:
        await sender.send(token, PAYLOAD, "post-1")
        fcm.expire_access_tokens()
        with pytest.raises(DeliveryFailed) as refused:
            await sender.send(token, PAYLOAD, "post-2")
        assert not refused.value.permanent  # 401: retried
        await sender.send(token, PAYLOAD, "post-2")
    assert fcm.tokens_issued == 2
    assert len(fcm.messages_for(token)) == 2


async def test_fcm_renews_the_access_token_before_it_expires() -> None:
    async with FcmService(token_lifetime=2) as fcm:
        token = fcm.register()
        async with FcmSender(sender_settings(fcm=fcm)) as sender:
            await sender.send(token, PAYLOAD, "post-1")
            await sender.send(token, PAYLOAD, "post-2")
            assert fcm.tokens_issued == 1
            await asyncio.sleep(1.2)  # past half its lifetime: renewed before it runs out
            await sender.send(token, PAYLOAD, "post-3")
        assert fcm.tokens_issued == 2
        assert [m.access_token for m in fcm.messages][1] != fcm.messages[2].access_token


async def test_fcm_answers_are_classified(fcm: FcmService) -> None:
    gone, throttled = fcm.register(), fcm.register()
    fcm.unregister(gone)
    fcm.throttle_once(throttled, retry_after=7)
    async with FcmSender(sender_settings(fcm=fcm)) as sender:
        with pytest.raises(DeliveryFailed) as unregistered:
            await sender.send(gone, PAYLOAD, "post-1")
        with pytest.raises(DeliveryFailed) as invalid:
            await sender.send("never-registered-token-0123456789abcdef", PAYLOAD, "post-1")
        with pytest.raises(DeliveryFailed) as quota:
            await sender.send(throttled, PAYLOAD, "post-1")
    assert unregistered.value.gone
    assert unregistered.value.permanent
    assert "UNREGISTERED" in unregistered.value.reason
    assert invalid.value.gone
    assert invalid.value.permanent
    assert not quota.value.permanent
    assert quota.value.retry_after == 7.0
    assert [code for _, _, code in fcm.rejections] == ["UNREGISTERED", "INVALID_ARGUMENT", "QUOTA_EXCEEDED"]


async def test_apns_sends_over_http2_with_a_verified_provider_token(apns: ApnsService) -> None:
    tokens = [apns.register() for _ in range(5)]
    sender = ApnsSender(sender_settings(apns=apns))
    await sender.start()
    try:
        await asyncio.gather(*(sender.send(t, PAYLOAD, "post-1") for t in tokens))
        await sender.send(tokens[0], PAYLOAD, "post-2")
    finally:
        await sender.close()
    assert sorted(m.token for m in apns.messages[:5]) == sorted(tokens)
    received = apns.messages[0]
    assert received.claims["iss"] == apns.team_id
    assert received.headers["apns-topic"] == apns.topic
    assert received.headers["apns-push-type"] == "alert"
    assert received.headers["apns-priority"] == "10"
    assert received.collapse_id == "post-1"
    assert received.payload["aps"]["alert"] == {"title": PAYLOAD["title"], "body": PAYLOAD["body"]}
    assert received.payload["url"] == PAYLOAD["url"]
    # Kept-alive HTTP/2: six sends, at most the pool's connections.
    assert 1 <= apns.connections <= sender_settings(apns=apns).apns_connections


async def test_apns_collapse_id_longer_than_apple_takes_is_sent_as_a_stable_digest(apns: ApnsService) -> None:
    token = apns.register()
    key = "conference_reminder-" + "x" * 60
    sender = ApnsSender(sender_settings(apns=apns))
    await sender.start()
    try:
        await sender.send(token, PAYLOAD, key)
        await sender.send(token, PAYLOAD, key)
    finally:
        await sender.close()
    first, again = apns.messages_for(token)
    assert first.collapse_id == again.collapse_id == hashlib.sha256(key.encode()).hexdigest()


async def test_apns_answers_are_classified(apns: ApnsService) -> None:
    gone, throttled = apns.register(), apns.register()
    apns.unregister(gone)
    apns.throttle_once(throttled)
    sender = ApnsSender(sender_settings(apns=apns))
    await sender.start()
    try:
        with pytest.raises(DeliveryFailed) as unregistered:
            await sender.send(gone, PAYLOAD, "post-1")
        with pytest.raises(DeliveryFailed) as bad:
            await sender.send("ab" * 32, PAYLOAD, "post-1")
        with pytest.raises(DeliveryFailed) as many:
            await sender.send(throttled, PAYLOAD, "post-1")
        await sender.send(throttled, PAYLOAD, "post-1")
    finally:
        await sender.close()
    assert unregistered.value.gone
    assert "Unregistered" in unregistered.value.reason
    assert bad.value.gone
    assert "BadDeviceToken" in bad.value.reason
    assert not many.value.permanent
    assert not many.value.gone
    assert [(status, reason) for _, status, reason in apns.rejections] == [
        (410, "Unregistered"),
        (400, "BadDeviceToken"),
        (429, "TooManyRequests"),
    ]
    assert len(apns.messages_for(throttled)) == 1


async def test_apns_refuses_a_provider_token_signed_by_another_key(apns: ApnsService) -> None:
    other = ApnsService()
    settings = sender_settings(apns=apns).model_copy(update={"apns_key": other.key_pem})
    settings = Settings.model_validate({**settings.model_dump(), "apns_key": other.key_pem})
    sender = ApnsSender(settings)
    await sender.start()
    try:
        with pytest.raises(DeliveryFailed) as refused:
            await sender.send(apns.register(), PAYLOAD, "post-1")
    finally:
        await sender.close()
        await other.stop()
    assert "InvalidProviderToken" in refused.value.reason
    assert not refused.value.permanent
    assert apns.messages == []


def test_a_kind_without_settings_is_not_configured() -> None:
    bare = Settings(database_url="postgresql://unused")
    assert bare.unconfigured_push("fcm")
    assert bare.unconfigured_push("apns")
    with pytest.raises(ValueError, match="APNS_TEAM_ID"):
        Settings.model_validate({"database_url": "postgresql://unused", "apns_key": "x", "apns_key_id": "K"})


# -- through the running system -----------------------------------------------------------------------


def pool(system: System) -> asyncpg.Pool:
    return system.services["notifier"].app[POOL]


async def register(system: System, person: Person, kind: str, token: str) -> tuple[int, Any]:
    return await system.call(
        "POST", "notifier", "/devices", person.token, json={"kind": kind, "token": token}
    )


async def class_with_parent(system: System) -> tuple[uuid.UUID, Person, Person]:
    school, group, teacher, parent = await make_class(system, "Groep 3")
    await allow_posts_per_day(system, school)

    async def known() -> bool:
        return bool(
            await pool(system).fetchval("SELECT 1 FROM people WHERE person_id = $1", parent.person_id)
        )

    await eventually(known, what="the parent's contact copied to the notifier")
    return group, teacher, parent


async def publish(system: System, teacher: Person, group: uuid.UUID) -> uuid.UUID:
    status, created = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "Morgen gym!"},
    )
    assert status == 201, created
    return uuid.UUID(created["post_id"])


async def push_rows(system: System, post_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool(system).fetch(
        """SELECT d.status, d.attempts, d.device_id, d.last_error FROM deliveries d
           JOIN notifications n USING (notification_id) WHERE n.post_id = $1 AND d.channel = 'push'""",
        post_id,
    )
    return rows


async def settled(
    system: System, post_id: uuid.UUID, count: int, within: float = 10.0
) -> list[asyncpg.Record]:
    async def done() -> bool:
        rows = await push_rows(system, post_id)
        return len(rows) == count and all(r["status"] != "pending" for r in rows)

    await eventually(done, within=within, what=f"{count} push deliveries settled")
    return await push_rows(system, post_id)


async def test_a_parent_registers_lists_and_removes_app_devices(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    fcm_token, apns_token = system.fcm.register(), system.apns.register()
    status, android = await register(system, parent, "fcm", fcm_token)
    assert status == 201, android
    status, iphone = await register(system, parent, "apns", apns_token.upper())
    assert status == 201, iphone
    assert (android["kind"], android["endpoint_host"], android["moved_from_another_account"]) == (
        "fcm",
        None,
        False,
    )
    assert iphone["kind"] == "apns"
    status, again = await register(system, parent, "apns", apns_token)  # the same device, lower case
    assert status == 201
    assert again["device_id"] == iphone["device_id"]
    status, listed = await system.call("GET", "notifier", "/devices", parent.token)
    assert status == 200
    assert {d["device_id"] for d in listed["devices"]} == {android["device_id"], iphone["device_id"]}
    # The token lets anyone push to the device: never handed back.
    assert fcm_token not in json.dumps(listed)
    assert apns_token not in json.dumps(listed).lower()
    status, _ = await system.call("DELETE", "notifier", f"/devices/{android['device_id']}", parent.token)
    assert status == 204
    status, listed = await system.call("GET", "notifier", "/devices", parent.token)
    assert [d["device_id"] for d in listed["devices"]] == [iphone["device_id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "fcm"}, "token"),
        ({"kind": "apns", "token": "ab" * 10 + "zz" * 30}, "token"),
        ({"kind": "apns", "token": "abc" * 31}, "token"),  # an odd number of hex digits
        ({"kind": "fcm", "token": "kort"}, "token"),
        ({"kind": "fcm", "token": "a b" * 20}, "token"),
        ({"kind": "webpush", "token": "a" * 64}, "token"),
        ({"kind": "blackberry", "token": "a" * 64}, "kind"),
    ],
)
async def test_malformed_app_tokens_are_refused_with_422(
    system: System, body: dict[str, Any], field: str
) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    parent = await add_person(system, school, "ouder", "guardian", "Groep 1")
    status, answer = await system.call("POST", "notifier", "/devices", parent.token, json=body)
    assert status == 422, answer
    assert [d["field"] for d in answer["error"]["details"]] == [field], answer


async def test_an_app_token_moves_to_who_registers_it_and_says_so(system: System) -> None:
    group, teacher, parent = await class_with_parent(system)
    school = await make_school(system)
    await add_group(system, school, "Groep 5")
    stranger = await add_person(system, school, "ander", "guardian", "Groep 5")
    token = system.fcm.register()
    status, first = await register(system, parent, "fcm", token)
    assert status == 201
    assert first["moved_from_another_account"] is False
    # The same phone, the app now logged in as another person: only the app on it holds the token.
    status, moved = await register(system, stranger, "fcm", token)
    assert status == 201, moved
    assert moved["device_id"] == first["device_id"]
    assert moved["moved_from_another_account"] is True
    _, listed = await system.call("GET", "notifier", "/devices", parent.token)
    assert listed["devices"] == []
    # The parent's posts no longer reach that phone.
    post_id = await publish(system, teacher, group)
    await asyncio.sleep(1.0)
    assert await push_rows(system, post_id) == []
    assert system.fcm.messages_for(token) == []


async def test_a_post_reaches_a_parents_android_and_iphone_once_each(system: System) -> None:
    group, teacher, parent = await class_with_parent(system)
    fcm_token, apns_token = system.fcm.register(), system.apns.register()
    assert (await register(system, parent, "fcm", fcm_token))[0] == 201
    assert (await register(system, parent, "apns", apns_token))[0] == 201
    post_id = await publish(system, teacher, group)
    rows = await settled(system, post_id, 2)
    assert [r["status"] for r in rows] == ["sent", "sent"], rows
    [android] = system.fcm.messages_for(fcm_token)
    [iphone] = system.apns.messages_for(apns_token)
    tag = f"post-{post_id}"
    assert android.message["android"]["collapse_key"] == tag
    assert android.message["data"]["tag"] == tag
    assert android.message["data"]["url"].endswith(f"/posts/{post_id}")
    assert iphone.collapse_id == tag
    assert iphone.payload["tag"] == tag
    assert "Groep 3" in iphone.payload["aps"]["alert"]["title"]
    assert iphone.payload["aps"]["alert"]["body"] == "Morgen gym!"


async def test_a_dead_app_token_is_removed_and_its_delivery_failed(system: System) -> None:
    group, teacher, parent = await class_with_parent(system)
    fcm_token, apns_token = system.fcm.register(), system.apns.register()
    _, android = await register(system, parent, "fcm", fcm_token)
    _, iphone = await register(system, parent, "apns", apns_token)
    system.fcm.unregister(fcm_token)
    system.apns.unregister(apns_token)
    post_id = await publish(system, teacher, group)
    rows = await settled(system, post_id, 2)
    assert sorted((r["status"], r["attempts"]) for r in rows) == [("failed", 1), ("failed", 1)]
    errors = sorted(str(r["last_error"]) for r in rows)
    assert errors[0].startswith("APNs 410 Unregistered"), errors
    assert errors[1].startswith("FCM 404 UNREGISTERED"), errors
    ids = [uuid.UUID(android["device_id"]), uuid.UUID(iphone["device_id"])]
    assert await pool(system).fetchval("SELECT count(*) FROM devices WHERE device_id = ANY($1)", ids) == 0


async def test_a_throttled_app_push_is_retried_after_retry_after_and_arrives_once(system: System) -> None:
    group, teacher, parent = await class_with_parent(system)
    fcm_token, apns_token = system.fcm.register(), system.apns.register()
    await register(system, parent, "fcm", fcm_token)
    await register(system, parent, "apns", apns_token)
    system.fcm.throttle_once(fcm_token, retry_after=1)
    system.apns.throttle_once(apns_token)
    post_id = await publish(system, teacher, group)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def android_sent() -> bool:
        return bool(system.fcm.messages_for(fcm_token))

    await eventually(android_sent, within=10, what="the FCM push after its 429")
    # Retry-After: 1 was honoured: not sooner, and not the default back-off of 5 s.
    assert 1.0 <= loop.time() - started < 4.5
    # APNs gives no Retry-After: the back-off of the first retry (5 s).
    rows = await settled(system, post_id, 2, within=15)
    assert sorted((r["status"], r["attempts"]) for r in rows) == [("sent", 2), ("sent", 2)]
    assert len(system.fcm.messages_for(fcm_token)) == 1
    assert len(system.apns.messages_for(apns_token)) == 1
    assert [code for t, _, code in system.fcm.rejections if t == fcm_token] == ["QUOTA_EXCEEDED"]
