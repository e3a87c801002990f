"""The notifier's delivery path tried again as an operator would, after it was made faster (pushes
prepared while they wait for a slot, emails after the pushes claimed before them, sends that finish
together recorded in one commit): real ``python -m notifier`` processes (test_delivery_crash's
Site) mailing a real SMTP server and pushing to local Web Push, FCM and APNs services (issue 8)."""

import asyncio
import email
import json
import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from notifier import store
from shared.testing.infra import free_port
from shared.testing.pushservice import PushService
from tests.harness.fanout import post_to_parents
from tests.test_delivery_crash import IN_FLIGHT, LEASE, PUSHES_IN_FLIGHT, Site, site

__all__ = ["site"]  # the fixture, used by name


def received(site: Site) -> int:
    """Mails and pushes the test servers have taken so far."""
    return (
        len(site.sink.messages) + len(site.push.messages) + len(site.fcm.messages) + len(site.apns.messages)
    )


async def test_a_post_deleted_during_its_fan_out_sends_no_more_than_was_in_flight(site):
    """Issue 8, Fan-out: "A deleted post cancels what was not yet sent." Only a send already in flight
    at the deletion (the slots: 4 mails, 8 pushes over all push providers) may still arrive; and every row
    the report counts as sent was received, every row cancelled was not."""
    await site.start_notifier()
    addresses = await site.post_to_parents(300)
    post_id = await site.pool.fetchval("SELECT post_id FROM notifications")
    # Deleted while the pushes go out (they go first; the mails are all queued or waiting).
    deadline = asyncio.get_running_loop().time() + 20
    while received(site) < 30:
        assert asyncio.get_running_loop().time() < deadline, "no pushes"
        await asyncio.sleep(0.001)
    async with site.pool.acquire() as conn:
        # What the PostDeleted handler does (events.post_deleted).
        await store.cancel_post_deliveries(conn, post_id)
    at_deletion, mails_at_deletion = received(site), len(site.sink.messages)
    await asyncio.sleep(4)  # two heartbeats: every lease a sender held is renewed or dropped by now

    after = received(site) - at_deletion
    mails_after = len(site.sink.messages) - mails_at_deletion
    sent = await site.pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
    print(
        f"{after} sends after the deletion; {received(site)} received, {sent} recorded sent of {2 * len(addresses)}"
    )
    assert mails_after <= IN_FLIGHT, f"{mails_after} mails after the deletion"
    assert after - mails_after <= PUSHES_IN_FLIGHT, f"{after - mails_after} pushes after the deletion"
    assert sent == received(site)


async def test_a_hanging_web_push_service_holds_back_neither_mails_nor_other_push_services(site):
    """Issue 8: timeouts are temporary failures, retried; a push service that hangs (takes the
    request and never answers) must not hold emails back for long (delivery.py: emails wait for the
    pushes claimed before them only while those move). FCM and APNs have their own send slots."""

    answer = asyncio.Event()  # set at the end, so that the service can stop

    async def hang(subscription_id, request):  # the Web Push service takes the request, never answers
        await answer.wait()
        raise web.HTTPServiceUnavailable()

    site.push._accept = hang
    try:
        await hanging_push_service(site)
    finally:
        answer.set()


async def hanging_push_service(site: Site) -> None:
    await site.start_notifier()
    addresses = await site.post_to_parents(150)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await site.mails_at_least(len(addresses), within=10)
    mails_took = loop.time() - start
    apps = len(site.app_tokens["fcm"]) + len(site.app_tokens["apns"])
    while len(site.fcm.messages) + len(site.apns.messages) < apps:
        assert loop.time() - start < 10, "app pushes held back"
        await asyncio.sleep(0.01)
    print(f"150 mails in {mails_took:.2f} s with the Web Push service hanging")
    assert mails_took < 5, f"{mails_took:.1f} s"
    # The hanging sends time out (PUSH_TIMEOUT_SECONDS, 10 s) and are tried again later, with the reason.
    while not await site.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE provider = 'webpush' AND attempts >= 1 AND last_error IS NOT NULL"
    ):
        assert loop.time() - start < 25, "no Web Push attempt recorded as failed"
        await asyncio.sleep(0.2)
    row = await site.pool.fetchrow(
        "SELECT status, last_error FROM deliveries WHERE provider = 'webpush' AND last_error IS NOT NULL LIMIT 1"
    )
    assert row["status"] == "pending", row
    assert "timeout" in row["last_error"].lower() or "timed out" in row["last_error"].lower(), row


OPERATOR_KEY = "operator-key-for-the-delivery-report-0123456789"


def port_of(process: asyncio.subprocess.Process) -> int:
    """The HTTP port a notifier process was started with (its environment)."""
    environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
    return int(next(entry for entry in environ if entry.startswith(b"HTTP_PORT=")).split(b"=", 1)[1])


async def report(process: asyncio.subprocess.Process, post_id: object) -> dict[str, Any]:
    """GET /reports/posts/{post_id} from that notifier, with the operator key."""
    url = f"http://127.0.0.1:{port_of(process)}/reports/posts/{post_id}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"X-Operator-Key": OPERATOR_KEY}) as response,
    ):
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def test_two_replicas_one_stopped_mid_fan_out_its_rows_are_taken_over_and_the_report_matches(
    site, monkeypatch
):
    """Issue 8, case 2: two replicas share a 300-parent fan-out; one is stopped (SIGSTOP) while the
    mails go out. The other takes its rows over within a lease and a few seconds; once the stopped
    one runs again it sends nothing it no longer holds (only what was in flight may repeat, with the
    same Message-ID or Topic and tag). The operator's report then says what the servers received."""
    monkeypatch.setenv("OPERATOR_API_KEY", OPERATOR_KEY)
    stalled = await site.start_notifier()
    other = await site.start_notifier()
    addresses = await site.post_to_parents(300)
    post_id = await site.pool.fetchval("SELECT post_id FROM notifications")
    await site.mails_at_least(50)
    stalled.send_signal(signal.SIGSTOP)
    took = await site.all_sent(within=3 * LEASE)
    stalled.send_signal(signal.SIGCONT)
    await asyncio.sleep(LEASE / 2)

    email_repeats = sum(site.repeats(addresses).values())
    push_repeats = site.push_repeats()
    print(
        f"taken over: all sent {took:.2f} s after the stop; {email_repeats} mails, {push_repeats} pushes repeated"
    )
    assert took < LEASE + 5, f"{took:.1f} s"
    assert email_repeats <= IN_FLIGHT, f"{email_repeats} repeats"
    assert push_repeats <= PUSHES_IN_FLIGHT, f"{push_repeats} repeated pushes"

    body = await report(other, post_id)
    devices = len(site.push._subscriptions) + len(site.app_tokens["fcm"]) + len(site.app_tokens["apns"])
    assert body["targeted"] == len(addresses)
    assert body["delivered"] == {"email": len(addresses), "push": devices}
    assert body["delivered_by_provider"] == {
        "smtp": len({rcpt for mail in site.sink.messages for rcpt in mail.rcpt_tos}),
        "webpush": len({push.subscription_id for push in site.push.messages}),
        "fcm": len({message.token for message in site.fcm.messages}),
        "apns": len({message.token for message in site.apns.messages}),
    }
    assert (body["failed"], body["pending"]) == (0, 0)


async def metrics_of(process: asyncio.subprocess.Process) -> dict[str, float]:
    """That notifier's /metrics, by series name with its labels."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port_of(process)}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        name: float(value)
        for line in text.splitlines()
        if line and not line.startswith("#")
        for name, value in [line.rsplit(" ", 1)]
    }


@pytest.mark.timeout(150)
async def test_smtp_down_for_30_seconds_is_seen_by_the_operator_and_recovery_sends_each_mail_once(
    site, monkeypatch
):
    """Issue 8, case 3: the SMTP relay is down for 30 s under a 150-parent fan-out. The notifier's log
    names each failed attempt with its reason, /metrics shows the backlog by channel and state and the
    age of the oldest pending delivery; when the relay is back every mail goes out once (attempts are
    5, 10, 20 s apart: the 4th, 35 s after the first, finds it up) and the report says so."""
    monkeypatch.setenv("OPERATOR_API_KEY", OPERATOR_KEY)
    process = await site.start_notifier()
    port = site.sink.port
    site.sink.stop()
    loop = asyncio.get_running_loop()
    down_at = loop.time()
    addresses = await site.post_to_parents(150)
    post_id = await site.pool.fetchval("SELECT post_id FROM notifications")
    await asyncio.sleep(28)

    figures = await metrics_of(process)
    log = (site.logs / "notifier-0.log").read_text()
    failed = [line for line in log.splitlines() if "delivery attempt failed, retrying" in line]
    print(f"after 28 s down: {len(failed)} failed attempts logged; {failed[:1]}")
    assert len(failed) >= 3 * len(addresses), f"{len(failed)} failed attempts logged"
    assert all("connect" in line.lower() for line in failed), failed[:3]
    assert figures['klaspost_notifier_deliveries{channel="email",status="pending"}'] == len(addresses)
    assert figures['klaspost_notifier_deliveries{channel="push",status="sent"}'] == len(addresses)
    assert figures['klaspost_notifier_delivery_retries_total{channel="email"}'] >= 3 * len(addresses)
    assert figures['klaspost_notifier_oldest_pending_seconds{table="deliveries"}'] >= 25

    # The relay comes back on its own port (SmtpSink picks a free one: it is told which).
    monkeypatch.setattr("shared.testing.smtp._free_port", lambda host: port)
    await asyncio.sleep(max(0.0, 30 - (loop.time() - down_at)))
    site.sink.start()
    took = await site.all_sent(within=60)
    print(f"SMTP back after {loop.time() - down_at - took:.1f} s: all sent {took:.1f} s later")
    assert not site.repeats(addresses)
    assert site.push_repeats() == 0
    body = await report(process, post_id)
    assert body["delivered"] == {"email": len(addresses), "push": len(addresses)}
    assert (body["failed"], body["pending"]) == (0, 0)
    figures = await metrics_of(process)
    assert figures['klaspost_notifier_deliveries{channel="email",status="sent"}'] == len(addresses)
    assert figures['klaspost_notifier_oldest_pending_seconds{table="deliveries"}'] == 0


async def test_an_international_domain_a_refusing_one_and_a_busy_one_in_one_fan_out(site, monkeypatch):
    """Issue 8, case 7 and permanent/temporary SMTP answers, through a real notifier process and a relay
    without SMTPUTF8: parents at bäckerij-müller.nl get their mail at the domain's A-label; parents at
    a domain the relay refuses with 550 fail for good, with the relay's reason in the report; parents at
    a domain answered with 451 stay pending, retried (their pushes all go out)."""
    monkeypatch.setenv("OPERATOR_API_KEY", OPERATOR_KEY)
    process = await site.start_notifier()
    site.sink.refuse_domain("weg.test", "550 5.1.1 Mailbox unavailable")
    site.sink.refuse_domain("druk.test", "451 4.3.0 Try again later")
    posts = {}
    for domain in ("bäckerij-müller.nl", "weg.test", "druk.test"):
        # Each parent with a browser's push subscription too.
        posts[domain] = await post_to_parents(
            site.pool, 20, domain, subscribe=lambda: site.push.subscribe(site.vapid[1])
        )
    rows = await site.pool.fetch("SELECT post_id, group_id FROM notifications ORDER BY created_at")
    assert len(rows) == 3
    loop = asyncio.get_running_loop()
    start = loop.time()
    while await site.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE status = 'pending' AND last_error IS NULL"
    ):
        assert loop.time() - start < 20, "not everything tried"
        await asyncio.sleep(0.1)

    received = Counter(rcpt for mail in site.sink.messages for rcpt in mail.rcpt_tos)
    a_label = "bäckerij-müller.nl".encode("idna").decode()  # xn--bckerij-mller-bfb28a.nl
    expected = {a.replace("bäckerij-müller.nl", a_label) for a in posts["bäckerij-müller.nl"]}
    assert received == Counter(expected), received
    assert site.push_repeats() == 0
    reports = {}
    for row in rows:
        body = await report(process, row["post_id"])
        reports[body["delivered"]["email"], body["failed"], body["pending"]] = body
    assert set(reports) == {(20, 0, 0), (0, 20, 0), (0, 0, 20)}, set(reports)
    refused = reports[0, 20, 0]
    assert sum(f["count"] for f in refused["failures"]) == 20
    assert all(f["channel"] == "email" and "550" in f["reason"] for f in refused["failures"])
    assert reports[0, 0, 20]["retrying"] == 20
    assert all(body["delivered"]["push"] == 20 for body in reports.values())


async def test_mails_refused_alike_are_one_group_in_the_report(site, monkeypatch):
    """Issue 8, Delivery report: "failed with reason" per post, grouped (FailureGroup: channel,
    provider, reason, count), so that an operator sees why at a glance for a school of 1,000."""
    monkeypatch.setenv("OPERATOR_API_KEY", OPERATOR_KEY)
    process = await site.start_notifier()
    site.sink.refuse_domain("weg.test", "550 5.1.1 Mailbox unavailable")
    addresses = await post_to_parents(site.pool, 20, "weg.test")
    post_id = await site.pool.fetchval("SELECT post_id FROM notifications")
    loop = asyncio.get_running_loop()
    start = loop.time()
    while await site.pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'"):
        assert loop.time() - start < 20, "not everything tried"
        await asyncio.sleep(0.1)

    body = await report(process, post_id)
    assert body["failed"] == len(addresses)
    assert body["failures"] == [
        {
            "channel": "email",
            "provider": "smtp",
            "reason": "recipients refused: 550 5.1.1 Mailbox unavailable",
            "count": len(addresses),
        }
    ]
    for address in addresses:
        assert address not in json.dumps(body)


async def test_push_services_answering_429_503_and_410_in_one_fan_out(site, monkeypatch):
    """Issue 8, Fan-out: 429 with Retry-After and 5xx are retried (after Retry-After, or with
    back-off), each push arriving once with its Topic and tag; 410 (Web Push), FCM UNREGISTERED and
    APNs 410 Unregistered remove the device and fail the delivery for good. 60 parents with a browser,
    an Android or an iPhone app in turn, through a real notifier process; the report matches."""
    from shared.testing.pushservice import _Refused

    monkeypatch.setenv("OPERATOR_API_KEY", OPERATOR_KEY)
    process = await site.start_notifier()
    gone: list[str] = []
    busy: set[str] = set()  # Web Push subscriptions answered 503 once
    made = 0

    def device() -> dict[str, Any]:
        nonlocal made
        made += 1
        kind, fate = ("webpush", "fcm", "apns")[made % 3], made // 3 % 4  # 0, 1: fine; 2: 429; 3: gone or 503
        if kind == "webpush":
            subscription = site.push.subscribe(site.vapid[1])
            if fate == 2:
                site.push.throttle_once(subscription, retry_after=2)
            elif fate == 3 and made // 12 % 2:
                site.push.expire(subscription)
                gone.append(subscription["endpoint"])
            elif fate == 3:
                busy.add(site.push._id_of(subscription))
            return dict(subscription)
        service = site.fcm if kind == "fcm" else site.apns
        token = service.register()
        site.app_tokens[kind].append(token)
        if fate == 2:
            service.throttle_once(token)
        elif fate == 3:
            service.unregister(token)
            gone.append(token)
        return {"kind": kind, "token": token}

    accept = site.push._accept

    async def once_busy(subscription_id: str, request: Any) -> Any:
        if subscription_id in busy:
            busy.discard(subscription_id)
            raise _Refused(503, "Service Unavailable")
        return await accept(subscription_id, request)

    site.push._accept = once_busy
    addresses = await post_to_parents(site.pool, 60, subscribe=device)
    post_id = await site.pool.fetchval("SELECT post_id FROM notifications")
    loop = asyncio.get_running_loop()
    start = loop.time()
    while await site.pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'"):
        assert loop.time() - start < 30, await site.pool.fetch(
            "SELECT provider, attempts, last_error FROM deliveries WHERE status = 'pending'"
        )
        await asyncio.sleep(0.1)
    print(f"all 429, 503 and 410 settled in {loop.time() - start:.1f} s; {len(gone)} devices gone")

    # Every device still there got its push once, with one key; the gone ones got nothing.
    keys: dict[str, set[tuple[str | None, str]]] = {}
    counts: Counter[str] = Counter()
    for push in site.push.messages:
        keys.setdefault(push.subscription_id, set()).add((push.topic, json.loads(push.data)["tag"]))
        counts[push.subscription_id] += 1
    for fcm in site.fcm.messages:
        android = fcm.message["android"]
        keys.setdefault(fcm.token, set()).add((android["collapse_key"], android["notification"]["tag"]))
        counts[fcm.token] += 1
    for apns in site.apns.messages:
        keys.setdefault(apns.token, set()).add((apns.collapse_id, apns.payload["tag"]))
        counts[apns.token] += 1
    devices = len(site.push._subscriptions) + len(site.app_tokens["fcm"]) + len(site.app_tokens["apns"])
    assert len(counts) == devices - len(gone)
    assert set(counts.values()) == {1}, counts
    assert all(len(k) == 1 for k in keys.values())
    assert not site.repeats(addresses)
    assert {r.status for r in site.push.rejections} == {429, 503, 410}
    assert await site.pool.fetchval("SELECT count(*) FROM devices") == devices - len(gone)

    body = await report(process, post_id)
    assert body["delivered"] == {"email": 60, "push": devices - len(gone)}
    assert (body["failed"], body["pending"]) == (len(gone), 0)
    assert sum(f["count"] for f in body["failures"] if f["channel"] == "push") == len(gone)


async def test_a_relay_dropping_the_connection_mid_data_gets_each_mail_again_once(site, monkeypatch):
    """The relay takes the message's data and closes the connection before its answer (a relay
    restarting, a load balancer's idle cut) for the first 5 of 20 mails: aiosmtplib sees the server
    disconnect, a temporary failure; each is sent again on a new connection with the same Message-ID
    and arrives once (the relay kept none of the cut ones)."""
    from shared.testing import smtp

    dropped: list[str] = []
    handle_data = smtp._Handler.handle_DATA

    async def cut(self: Any, server: Any, session: Any, envelope: Any) -> str:
        if len(dropped) < 5:
            dropped.append(email.message_from_bytes(envelope.content)["Message-ID"])
            server.transport.close()
            return "250 OK"  # never reaches the client
        return await handle_data(self, server, session, envelope)

    monkeypatch.setattr(smtp._Handler, "handle_DATA", cut)
    await site.start_notifier()
    addresses = await post_to_parents(site.pool, 20, "ouders.test")
    took = await site.all_sent(within=30)
    print(f"5 mails cut mid-DATA: all sent {took:.1f} s after the post")
    assert len(dropped) == 5
    assert not site.repeats(addresses)
    assert {mail.message["Message-ID"] for mail in site.sink.messages} >= set(dropped)
    assert await site.pool.fetchval("SELECT count(*) FROM deliveries WHERE attempts = 2") == 5


@pytest.mark.timeout(150)
async def test_kills_while_the_pushes_go_out_repeat_only_what_was_in_flight(site):
    """Issue 8, case 1, with the kill -9 landing while the pushes go out (they start before the mails,
    and wait for their slots prepared: payload encrypted, VAPID signed), 5 times in a 500-parent
    fan-out: nobody gets nothing, each repeat has the same key, each kill repeats at most the sends in
    flight (8 pushes over Web Push, FCM and APNs: DELIVERY_PUSH_IN_FLIGHT; 4 mails) and well under 1 %
    of the 1,000 messages."""
    rng = random.Random(20261201)
    kills = 5
    process = await site.start_notifier()
    addresses = await site.post_to_parents(500)
    loop = asyncio.get_running_loop()
    for _ in range(kills):
        target = received(site) + rng.randint(10, 50)
        deadline = loop.time() + 20
        while received(site) < target:
            assert loop.time() < deadline, "nothing more arrives"
            await asyncio.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        process = await site.start_notifier()
    took = await site.all_sent(within=3 * LEASE + 30)

    email_repeats = sum(site.repeats(addresses).values())
    push_repeats = site.push_repeats()
    print(
        f"{kills} kills while pushing: {email_repeats} mails, {push_repeats} pushes repeated; rest in {took:.1f} s"
    )
    assert email_repeats + push_repeats <= kills * (IN_FLIGHT + PUSHES_IN_FLIGHT)  # what was in flight
    assert email_repeats + push_repeats < 0.01 * 2 * len(addresses) * kills  # case 1: under 1 % per kill


async def test_sigterm_to_one_of_two_replicas_hands_its_rows_to_the_other_at_once(site):
    """Issue 8, case 2: a replica stopped with SIGTERM (a rolling deploy) finishes what is in flight
    and hands back what it held; the other replica sends it without waiting out a lease, and nothing
    is sent twice."""
    leaving = await site.start_notifier()
    await site.start_notifier()
    addresses = await site.post_to_parents(400)
    await site.mails_at_least(60)
    leaving.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await leaving.wait() == 0
    left = await site.pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'pending'")
    took = await site.all_sent(within=3 * LEASE)
    print(
        f"SIGTERM: gone in {loop.time() - start - took:.2f} s, {left} pending then, all sent {took:.2f} s later"
    )
    assert took < LEASE / 2, f"{took:.1f} s: the handed-back rows waited for their lease"
    assert not site.repeats(addresses)
    assert site.push_repeats() == 0


async def test_a_push_endpoint_refusing_connections_is_retried_with_the_reason_and_holds_back_nothing(site):
    """A Web Push endpoint whose host refuses the connection (a push service down, a network fault):
    a temporary failure, retried later with the reason recorded; the other pushes and every mail go
    out at once."""
    broken: list[str] = []
    made = 0

    def device() -> dict[str, Any]:
        nonlocal made
        made += 1
        subscription = dict(site.push.subscribe(site.vapid[1]))
        if made % 5 == 0:  # nothing listens there
            subscription["endpoint"] = f"http://127.0.0.1:{free_port()}/push/{made}"
            broken.append(subscription["endpoint"])
        return subscription

    await site.start_notifier()
    addresses = await post_to_parents(site.pool, 50, subscribe=device)
    await site.mails_at_least(len(addresses), within=10)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while len(site.push.messages) < len(addresses) - len(broken):
        assert loop.time() - start < 10, f"{len(site.push.messages)} pushes"
        await asyncio.sleep(0.01)
    while await site.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE channel = 'push' AND status = 'pending' AND last_error IS NULL"
    ):
        assert loop.time() - start < 10, "the broken endpoints were not tried"
        await asyncio.sleep(0.05)
    rows = await site.pool.fetch(
        "SELECT status, last_error FROM deliveries WHERE channel = 'push' AND status <> 'sent'"
    )
    assert len(rows) == len(broken)
    for row in rows:
        assert row["status"] == "pending"
        assert "connect" in row["last_error"].lower(), row["last_error"]
    assert not site.repeats(addresses)


async def test_one_hanging_web_push_service_does_not_hold_back_browsers_of_another(site):
    """Web Push has one push service per browser maker (Google's for Chrome, Mozilla's, Apple's): when
    one hangs, the subscriptions at the others must still get their push at once (issue 8, case 4:
    "run providers concurrently with limits per provider"). 40 parents, every other one's browser at a
    push service that takes the request and never answers (the notifier's timeout is 10 s)."""
    answer = asyncio.Event()
    async with PushService() as hanging:

        async def hang(subscription_id: str, request: Any) -> Any:
            await answer.wait()
            raise web.HTTPServiceUnavailable()

        hanging._accept = hang  # type: ignore[method-assign]
        made = 0

        def device() -> dict[str, Any]:
            nonlocal made
            made += 1
            return dict((hanging if made % 2 else site.push).subscribe(site.vapid[1]))

        try:
            await site.start_notifier()
            await post_to_parents(site.pool, 40, subscribe=device)
            loop = asyncio.get_running_loop()
            start = loop.time()
            while len(site.push.messages) < 20:
                if loop.time() - start > 15:
                    break
                await asyncio.sleep(0.01)
            took = loop.time() - start
            print(f"{len(site.push.messages)} of 20 pushes at the healthy service after {took:.1f} s")
            assert len(site.push.messages) == 20
            assert took < 2, f"{took:.1f} s for the healthy push service's 20 pushes"
        finally:
            answer.set()


async def test_a_device_removed_while_its_push_is_queued_gets_nothing(site):
    """A device removed (DELETE /devices/{id}: store.delete_device) while its push waits in a
    notifier's queue, claimed: the push is not sent (the notifier hears of it by NOTIFY, no look-up
    per send) and the delivery fails saying so; every other device gets its push once."""
    started: set[str] = set()  # subscriptions whose push reached the service
    accept = site.push._accept

    async def slow(subscription_id: str, request: Any) -> Any:  # 0.2 s a push: a queue builds
        started.add(subscription_id)
        await asyncio.sleep(0.2)
        return await accept(subscription_id, request)

    site.push._accept = slow
    await site.start_notifier()
    addresses = await post_to_parents(site.pool, 60, subscribe=lambda: site.push.subscribe(site.vapid[1]))
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not site.push.messages:
        assert loop.time() - start < 10, "no pushes"
        await asyncio.sleep(0.01)
    # A device whose push the notifier holds (claimed: due only when the lease runs out), not started.
    rows = await site.pool.fetch(
        """SELECT v.device_id, v.endpoint FROM deliveries d JOIN devices v ON v.device_id = d.device_id
           WHERE d.channel = 'push' AND d.status = 'pending' AND d.next_attempt_at > now()"""
    )
    queued = [row for row in rows if site.push._id_of(row["endpoint"]) not in started]
    assert queued, "nothing queued"
    removed = queued[-1]
    async with site.pool.acquire() as conn:
        assert await store.delete_device(conn, removed["device_id"])
    while await site.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE channel = 'push' AND status = 'pending'"
    ):
        assert loop.time() - start < 20, "pushes still pending"
        await asyncio.sleep(0.05)

    pushed = Counter(push.subscription_id for push in site.push.messages)
    print(f"{len(queued)} pushes queued at the removal; {sum(pushed.values())} sent")
    assert site.push._id_of(removed["endpoint"]) not in pushed
    assert len(pushed) == len(addresses) - 1
    assert set(pushed.values()) == {1}
    row = await site.pool.fetchrow(
        "SELECT status, last_error FROM deliveries WHERE device_id = $1", removed["device_id"]
    )
    assert (row["status"], row["last_error"]) == ("failed", "the device was removed"), row
