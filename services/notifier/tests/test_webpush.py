import asyncio
import base64
import json
import socket
import time
import uuid

import aiohttp
import aiohttp.web
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from notifier import vapid
from notifier.delivery_errors import DeliveryFailed
from notifier.messages import new_post_push
from notifier.settings import Settings
from notifier.webpush import MAX_PLAINTEXT_BYTES, WebPushSender, generate_vapid_keys, retry_after_seconds
from shared.testing.pushservice import PushService

VAPID_PRIVATE, VAPID_PUBLIC = generate_vapid_keys()


def settings_with(private=VAPID_PRIVATE, public=VAPID_PUBLIC, **kw):
    return Settings(
        database_url="postgresql://unused",
        vapid_private_key=private,
        vapid_public_key=public,
        vapid_subject="mailto:beheer@klaspost.nl",
        push_ttl_seconds=3600,
        push_timeout_seconds=5,
        **kw,
    )


@pytest.fixture
async def service():
    async with PushService() as s:
        yield s


@pytest.fixture
async def sender():
    async with WebPushSender(settings_with()) as s:
        yield s


async def test_push_arrives_decryptable_with_the_payload(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)
    payload = new_post_push("nl", "Groep 3B", "Morgen gym!", "https://klaspost.test/posts/1", "p1")

    await sender.send(subscription, payload, topic="post-p1")

    [push] = await service.wait_for(1)
    assert push.json() == payload
    assert push.ttl == 3600
    assert push.topic == "post-p1"
    assert push.claims["aud"] == service.base_url
    assert push.claims["sub"] == "mailto:beheer@klaspost.nl"


async def test_one_sender_serves_several_push_services(sender):
    # pywebpush writes aud into the claims dict: a reused dict would sign for the first service only.
    async with PushService() as first, PushService() as second:
        await sender.send(first.subscribe(VAPID_PUBLIC), {"n": 1})
        await sender.send(second.subscribe(VAPID_PUBLIC), {"n": 2})
        await sender.send(first.subscribe(VAPID_PUBLIC), {"n": 3})

        assert [p.json() for p in await first.wait_for(2)] == [{"n": 1}, {"n": 3}]
        assert [p.json() for p in await second.wait_for(1)] == [{"n": 2}]


async def test_expired_subscription_is_permanent_and_gone(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)
    service.expire(subscription)

    with pytest.raises(DeliveryFailed, match="410") as failure:
        await sender.send(subscription, {"n": 1})
    assert failure.value.permanent
    assert failure.value.gone


async def test_unknown_subscription_is_gone(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)
    subscription["endpoint"] = f"{service.base_url}/push/unknown"

    with pytest.raises(DeliveryFailed, match="404") as failure:
        await sender.send(subscription, {"n": 1})
    assert failure.value.gone


async def test_throttled_push_is_temporary_with_retry_after(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)
    service.throttle_once(subscription, retry_after=7)

    with pytest.raises(DeliveryFailed, match="429") as failure:
        await sender.send(subscription, {"n": 1})
    assert not failure.value.permanent
    assert not failure.value.gone
    assert failure.value.retry_after == 7

    await sender.send(subscription, {"n": 1})  # throttled once only
    assert len(await service.wait_for(1)) == 1


async def test_push_signed_with_another_vapid_key_is_refused(service):
    subscription = service.subscribe(VAPID_PUBLIC)
    other_private, other_public = generate_vapid_keys()

    async with WebPushSender(settings_with(other_private, other_public)) as other:
        with pytest.raises(DeliveryFailed, match="403") as failure:
            await other.send(subscription, {"n": 1})
    assert failure.value.permanent
    assert not failure.value.gone
    assert service.messages == []
    assert service.rejections[-1].status == 403


async def test_push_service_checks_the_signature_not_only_the_key(service):
    """A JWT signed by an attacker's key but claiming our public key must not pass."""
    subscription = service.subscribe(VAPID_PUBLIC)
    forged = jwt.encode(
        {"aud": service.base_url, "exp": int(time.time()) + 3600, "sub": "mailto:x@evil.test"},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            subscription["endpoint"],
            headers={"Authorization": f"vapid t={forged}, k={VAPID_PUBLIC}", "TTL": "60"},
        ) as response,
    ):
        assert response.status == 403
    assert service.messages == []


@pytest.mark.parametrize(
    ("aud", "expires_in", "reason"),
    [
        ("https://push.elsewhere.test", 3600, "Audience doesn't match"),
        (None, 3600, 'missing the "aud" claim'),
        ("own origin", 25 * 3600, "more than 24 hours"),
        ("own origin", -60, "expired"),
    ],
)
async def test_push_service_refuses_bad_vapid_claims(service, aud, expires_in, reason):
    subscription = service.subscribe(VAPID_PUBLIC)
    claims = {"exp": int(time.time()) + expires_in, "sub": "mailto:a@klaspost.test"}
    if aud is not None:
        claims["aud"] = service.base_url if aud == "own origin" else aud
    token = jwt.encode(claims, vapid.load_private_key(VAPID_PRIVATE), algorithm="ES256")

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            subscription["endpoint"],
            headers={"Authorization": f"vapid t={token}, k={VAPID_PUBLIC}", "TTL": "60"},
        ) as response,
    ):
        assert response.status == 403
        assert reason in await response.text()


async def test_push_service_requires_ttl(service):
    subscription = service.subscribe(VAPID_PUBLIC)
    token = jwt.encode(
        {"aud": service.base_url, "exp": int(time.time()) + 60, "sub": "mailto:a@klaspost.test"},
        vapid.load_private_key(VAPID_PRIVATE),
        algorithm="ES256",
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            subscription["endpoint"], headers={"Authorization": f"vapid t={token}, k={VAPID_PUBLIC}"}
        ) as response,
    ):
        assert response.status == 400
        assert "TTL" in await response.text()


async def test_new_post_push_with_a_10kb_excerpt_is_delivered(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)
    payload = new_post_push(
        "en", "Groep 3B", "Héél lang verhaal 😀 " * 500, "https://klaspost.test/p/1", uuid.uuid4()
    )

    await sender.send(subscription, payload)

    [push] = await service.wait_for(1)
    assert push.json() == payload
    assert push.body_size < 4096


async def test_payload_too_large_for_push_services_is_refused_before_sending(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)

    with pytest.raises(DeliveryFailed, match="exceeds") as failure:
        await sender.send(subscription, {"body": "x" * 4000})
    assert failure.value.permanent
    assert service.rejections == []  # never sent


async def test_largest_allowed_payload_fits_the_push_service(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)

    await sender.send(subscription, {"b": "x" * (MAX_PLAINTEXT_BYTES - len('{"b":""}'))})
    [push] = await service.wait_for(1)
    assert push.body_size == 4096


async def test_unreachable_push_service_is_temporary(sender):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subscription = {"endpoint": f"http://127.0.0.1:{port}/push/x", "keys": _browser_keys()}

    with pytest.raises(DeliveryFailed, match="unreachable") as failure:
        await sender.send(subscription, {"n": 1})
    assert not failure.value.permanent


async def test_subscription_with_broken_keys_is_permanent(service, sender):
    subscription = service.subscribe(VAPID_PUBLIC)
    subscription["keys"]["p256dh"] = base64.urlsafe_b64encode(b"\x04" + b"\x01" * 64).decode().rstrip("=")

    with pytest.raises(DeliveryFailed) as failure:
        await sender.send(subscription, {"n": 1})
    assert failure.value.permanent


async def test_invalid_topic_is_a_programming_error(service, sender):
    with pytest.raises(ValueError, match="topic"):
        await sender.send(service.subscribe(VAPID_PUBLIC), {"n": 1}, topic="post 1 with spaces")


async def test_sender_shares_a_session_the_caller_owns(service):
    async with aiohttp.ClientSession() as http:
        sender = WebPushSender(settings_with(), session=http)
        await sender.send(service.subscribe(VAPID_PUBLIC), {"n": 1})
        await sender.close()
        assert not http.closed


def test_sender_needs_vapid_keys():
    with pytest.raises(ValueError, match="VAPID_PRIVATE_KEY"):
        WebPushSender(Settings(database_url="postgresql://unused"))


def test_sender_refuses_a_public_key_that_does_not_belong_to_the_private_key():
    with pytest.raises(ValueError, match="does not belong"):
        WebPushSender(settings_with(public=generate_vapid_keys()[1]))


def test_generated_vapid_keys_have_the_settings_formats():
    private, public = generate_vapid_keys()

    assert len(_b64url_decode(private)) == 32
    raw_public = _b64url_decode(public)
    assert len(raw_public) == 65
    assert raw_public[0] == 4  # uncompressed point
    assert "=" not in private + public
    assert vapid.public_key_of(private) == public
    assert generate_vapid_keys() != (private, public)


def test_vapid_cli_prints_env_lines(capsys):
    vapid.main()

    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert set(lines) == {"VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY"}
    assert vapid.public_key_of(lines["VAPID_PRIVATE_KEY"]) == lines["VAPID_PUBLIC_KEY"]
    WebPushSender(settings_with(lines["VAPID_PRIVATE_KEY"], lines["VAPID_PUBLIC_KEY"]))


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_reads_seconds_and_dates(header, expected):
    assert retry_after_seconds(header) == expected


def _browser_keys():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_numbers()
    raw = b"\x04" + point.x.to_bytes(32, "big") + point.y.to_bytes(32, "big")
    return {"p256dh": base64.urlsafe_b64encode(raw).decode().rstrip("="), "auth": "AAAAAAAAAAAAAAAAAAAAAA"}


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_payload_json_is_what_the_service_worker_parses():
    payload = new_post_push("nl", "Groep 3B", 'Zeg "hallo"', "https://klaspost.test/p/1", "p1")
    assert json.loads(json.dumps(payload)) == payload


@pytest.mark.parametrize(
    "subject",
    [
        None,
        "mailto:beheer@klaspost.local",
        "mailto:root@localhost",
        "mailto:beheer@school.invalid",
        "mailto:beheer@klaspost.test",
        "mailto:beheer@school.example",
        "mailto:beheer@example.com",
        "https://localhost/contact",
        "https://klaspost.local",
        "mailto:beheer@127.0.0.1",
        "mailto:beheer@school",
        "beheer@klaspost.nl",
        "http://klaspost.nl/contact",
    ],
)
def test_web_push_with_a_subject_no_push_service_accepts_refuses_to_start(subject):
    with pytest.raises(ValidationError, match="VAPID_SUBJECT"):
        Settings.model_validate(
            {
                "database_url": "postgresql://unused",
                "vapid_private_key": VAPID_PRIVATE,
                "vapid_public_key": VAPID_PUBLIC,
                "vapid_subject": subject,
            }
        )


@pytest.mark.parametrize(
    "subject",
    ["mailto:beheer@klaspost.nl", "mailto:ict@Basisschool-De-Regenboog.NL", "https://klaspost.nl/contact"],
)
def test_web_push_with_a_real_contact_starts(subject):
    settings = Settings.model_validate(
        {
            "database_url": "postgresql://unused",
            "vapid_private_key": VAPID_PRIVATE,
            "vapid_public_key": VAPID_PUBLIC,
            "vapid_subject": subject,
        }
    )
    assert WebPushSender(settings)


def test_without_web_push_no_subject_is_needed():
    assert Settings(database_url="postgresql://unused").vapid_subject is None


async def test_a_fan_out_to_one_push_service_reuses_a_few_kept_alive_connections(service):
    # Issue 8, case 4: HTTP connections to a push service stay open, and at most
    # push_connections_per_host requests go to one service at once.
    in_flight, peak, peers = 0, 0, set()

    async def accept(request: aiohttp.web.Request) -> aiohttp.web.Response:
        nonlocal in_flight, peak
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return aiohttp.web.Response(status=201)

    app = aiohttp.web.Application()
    app.router.add_post("/push/{id}", accept)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    keys = service.subscribe(VAPID_PUBLIC)["keys"]
    try:
        async with aiohttp.ClientSession() as session:
            sender = WebPushSender(settings_with(push_connections_per_host=3), session=session)
            subscriptions = [
                {"endpoint": f"http://127.0.0.1:{port}/push/{i}", "keys": keys} for i in range(60)
            ]
            await asyncio.gather(*(sender.send(s, {"n": 1}) for s in subscriptions))
    finally:
        await runner.cleanup()
    assert peak <= 3
    assert len(peers) <= 3
