"""Fan-out to a class (issue 8, case 9): a teacher posts to a group of 28 parents, each with one
Web Push device and an email address; how long from the post's 201 at posts until the last push and
the last email arrived. Beside it, in the same run, the building blocks alone: the same pushes sent
straight to the same push service (WebPushSender: encryption, VAPID and aiohttp POSTs over one
session, all at once; and plain aiohttp POSTs of pushes encrypted beforehand), and the same mails
over one reused aiosmtplib connection to the same relay.

The system runs as deployed (bench/deployment.py): identity, posts, media and the notifier each in a
process of its own (``--notifiers N``: N notifier replicas on the same database, as an operator may
run them), on real PostgreSQL and RabbitMQ. The push service and the SMTP relay each run in a process
of their own too (bench/endpoints.py: the push service checks every push as a real one does but does
not decrypt it, ``--decrypt`` makes it; the relay stand-in takes mails as a relay does, without
parsing MIME); the bench reads their arrival counts and times from shared memory. The class is made
through the APIs (school, year, group, teacher with the password from the welcome mail, parents
redeeming the access code from their invitation mail, devices and preferences); posts are one a day
per group (seed rule 5): the bench frees the day in posts' table between posts, as
tests/test_openapi.py does.

    cd /work/main && PYTHONPATH=.:services/identity:services/posts:services/media:services/notifier \\
        .venv/bin/python bench/fanout.py [--parents 28] [--posts 100] [--gap 1.0]

With ``--parents 100`` or more it measures throughput instead (issue 8: a school-wide post to 1,000
parents): one post, deliveries per second from its 201 until every push and mail arrived, beside
the raw rates, and their ratio. The first parent comes through the APIs, the others are written
straight into the notifier's tables (see ``school_wide``).
"""

import argparse
import asyncio
import email
import email.policy
import logging
import os
import re
import secrets
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import aiohttp
import aiosmtplib
from py_vapid import Vapid
from pywebpush import WebPusher

from bench.deployment import OPERATOR_KEY, Deployment, deployed
from bench.endpoints import Arrivals, PushProcess, RelayProcess
from notifier import store
from notifier.compose import OutgoingMail
from notifier.messages import encode_push_payload, new_post_parts, new_post_push
from notifier.settings import Settings as NotifierSettings
from notifier.vapid import load_private_key
from notifier.webpush import WebPushSender
from shared.service import event_loop_factory

PASSWORD = "correct horse battery staple"
ACCESS_CODE = re.compile(r"\b([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})\b")
RESET_TOKEN = re.compile(r"#token=([A-Za-z0-9_-]{20,})")
PUSH_PAYLOAD = new_post_push("nl", "Groep 7", "Bericht", "http://klaspost.test/posts/1", uuid.uuid4())


@dataclass
class Class:
    school_id: uuid.UUID
    group_id: uuid.UUID
    teacher: str  # the teacher's access token
    parents: list[uuid.UUID]
    subscriptions: list[dict[str, Any]]


class Mailbox:
    """The set-up mails the relay kept, read by address."""

    def __init__(self, relay: RelayProcess) -> None:
        self._relay = relay
        self._mails: list[tuple[list[str], EmailMessage]] = []

    async def secret(self, address: str, pattern: re.Pattern[str], timeout: float = 15.0) -> str:  # noqa: ASYNC109
        """The secret (access code, reset token) in the newest mail to ``address`` that has one."""
        deadline = time.monotonic() + timeout
        while True:
            while not self._relay.kept.empty():
                recipients, raw = self._relay.kept.get_nowait()
                message = email.message_from_bytes(raw, policy=email.policy.default)
                self._mails.append((recipients, message))
            for recipients, message in reversed(self._mails):
                body = message.get_body(("plain",))
                found = pattern.search(str(cast(EmailMessage, body).get_content())) if body else None
                if address in recipients and found:
                    return found.group(1)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no mail to {address} within {timeout} s")
            await asyncio.sleep(0.05)


async def ok(system: Deployment, expected: int, method: str, service: str, path: str, token: str | None = None, **kwargs: Any) -> Any:  # fmt: skip
    status, body = await system.call(method, service, path, token, **kwargs)
    assert status == expected, (method, path, status, body)
    return body


async def make_class(system: Deployment, relay: RelayProcess, push: PushProcess, parents: int) -> Class:
    """A school, year, group and teacher, and ``parents`` parents each with one child in the group,
    through identity's API as a school makes them; each parent with a Web Push device and "both"
    (push and email) for posts, through the notifier's API. Waits until posts and the notifier
    hold every membership."""
    relay.keep()
    mailbox = Mailbox(relay)
    admin = f"directie.{secrets.token_hex(4)}@bench.klaspost.nl"
    school = await ok(system, 201, "POST", "identity", "/schools", headers={"X-Operator-Key": OPERATOR_KEY}, json={
        "name": "OBS De Fanout", "admin": {"email": admin, "display_name": "Directie", "password": PASSWORD}})  # fmt: skip
    school_id = school["school_id"]
    login = await ok(
        system, 200, "POST", "identity", "/auth/login", json={"email": admin, "password": PASSWORD}
    )
    token = login["access_token"]
    await ok(
        system,
        201,
        "POST",
        "identity",
        f"/schools/{school_id}/school-years",
        token,
        json={"name": "2026-2027"},
    )
    await ok(system, 202, "POST", "identity", f"/schools/{school_id}/invitations", token)
    group = await ok(system, 201, "POST", "identity", f"/schools/{school_id}/groups", token, json={
        "name": "Groep 7", "school_year": "2026-2027"})  # fmt: skip
    group_id = group["group_id"]
    juf = f"juf.{secrets.token_hex(4)}@bench.klaspost.nl"
    staff = await ok(system, 201, "POST", "identity", f"/schools/{school_id}/staff", token, json={
        "email": juf, "display_name": "Juf", "role": "teacher"})  # fmt: skip
    reset = await mailbox.secret(juf, RESET_TOKEN)
    teacher = await ok(
        system, 200, "POST", "identity", "/auth/password", json={"token": reset, "password": PASSWORD}
    )
    await ok(system, 200, "PUT", "identity", f"/groups/{group_id}/teachers/{staff['person_id']}", token)

    async def parent(i: int) -> tuple[uuid.UUID, str]:
        address = f"ouder{i}.{secrets.token_hex(4)}@bench.klaspost.nl"
        await ok(system, 201, "POST", "identity", f"/schools/{school_id}/children", token, json={
            "given_name": f"Kind {i}", "family_name": "de Vries", "group_id": group_id,
            "guardians": [{"email": address}]})  # fmt: skip
        code = await mailbox.secret(address, ACCESS_CODE)
        person = await ok(system, 201, "POST", "identity", "/access-codes/redeem", json={
            "code": code, "display_name": f"Ouder {i}", "password": PASSWORD})  # fmt: skip
        return uuid.UUID(person["person_id"]), person["access_token"]

    people = [await parent(i) for i in range(parents)]
    relay.keep(False)
    members = parents + 1
    for service in ("posts", "notifier"):
        for _ in range(300):
            count = await system.pools[service].fetchval(
                "SELECT count(*) FROM memberships WHERE group_id = $1 AND active", uuid.UUID(group_id)
            )
            if count == members:
                break
            await asyncio.sleep(0.1)
        else:
            raise TimeoutError(f"{service} holds {count} of {members} memberships")
    key = (await ok(system, 200, "GET", "notifier", "/push/vapid-public-key"))["application_server_key"]
    subscriptions = push.subscribe(key, parents)
    choice = {"channel": "both", "timing": "immediate"}  # email and push: with a device the default is push
    for (_, parent_token), subscription in zip(people, subscriptions, strict=True):
        await ok(
            system, 201, "POST", "notifier", "/devices", parent_token, json={"subscription": subscription}
        )
        await ok(system, 200, "PUT", "notifier", "/preferences", parent_token, json={
            "posts": choice, "signups": choice, "reminders": choice})  # fmt: skip
    return Class(
        uuid.UUID(school_id),
        uuid.UUID(group_id),
        teacher["access_token"],
        [p for p, _ in people],
        subscriptions,
    )


async def post(system: Deployment, group: Class, title: str, body: str) -> tuple[float, float, uuid.UUID]:
    """A post to the group (its day freed first); (perf_counter, wall clock) of its 201, its id."""
    await system.pools["posts"].execute("DELETE FROM post_days WHERE group_id = $1", group.group_id)
    status, answer = await system.call(
        "POST", "posts", f"/groups/{group.group_id}/posts", group.teacher, json={"title": title, "body": body}
    )
    accepted, wall = time.perf_counter(), time.time()
    assert status == 201, answer
    return accepted, wall, uuid.UUID(answer["post_id"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


STAGES = ("notification stored", "first push claimed", "first push marked sent", "last push marked sent")


async def fan_out(
    system: Deployment, group: Class, relay: RelayProcess, push: PushProcess, posts: int, gap: float
) -> dict[str, list[float]]:
    parents = len(group.parents)
    lease = NotifierSettings.model_validate(system.settings["notifier"]).delivery_lease_seconds
    figures: dict[str, list[float]] = {"push": [], "email": [], **{stage: [] for stage in STAGES}}
    for n in range(1, posts + 1):
        pushes, mails = push.arrivals.count + parents, relay.arrivals.count + parents
        accepted, wall, post_id = await post(system, group, "Nieuws", f"Bericht {n}")
        pushed, mailed = await asyncio.gather(push.arrivals.until(pushes), relay.arrivals.until(mails))
        figures["push"].append((pushed - accepted) * 1000)
        figures["email"].append((mailed - accepted) * 1000)
        # Where the time went, by the notifier's own clock (the database's, same machine).
        row = await system.pools["notifier"].fetchrow(
            """SELECT extract(epoch FROM n.created_at) AS created,
                      extract(epoch FROM min(d.next_attempt_at) FILTER (WHERE d.channel = 'push')) - $2 AS claimed,
                      extract(epoch FROM min(d.sent_at) FILTER (WHERE d.channel = 'push')) AS first_push,
                      extract(epoch FROM max(d.sent_at) FILTER (WHERE d.channel = 'push')) AS last_push
               FROM notifications n JOIN deliveries d USING (notification_id)
               WHERE n.post_id = $1 GROUP BY n.created_at""",
            post_id,
            lease,  # a claim sets next_attempt_at to its transaction's start plus the lease
        )
        for stage, column in zip(STAGES, ("created", "claimed", "first_push", "last_push"), strict=True):
            figures[stage].append((float(row[column]) - wall) * 1000)
        await asyncio.sleep(gap)
    return figures


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuUse:
    """CPU seconds each process (by name) used between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self._pids = pids
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self._pids.items()}

    def start(self) -> None:
        self._before = self._now()

    def stop(self) -> None:
        self.used = {name: used - self._before[name] for name, used in self._now().items()}

    def report(self, deliveries: int) -> str:
        return ", ".join(f"{name} {used * 1000 / deliveries:.2f}" for name, used in self.used.items())


class Profiler:
    """py-spy recording the notifier process(es) while running, with --profile DIR (raw stacks, for
    flame graphs). py-spy is not in requirements.lock (the images install the lock's runtime part):
    ``.venv/bin/pip install py-spy`` first."""

    def __init__(self, directory: str | None, pids: list[int]) -> None:
        self._directory = directory
        self._pids = pids
        self._processes: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        if not self._directory:
            return
        os.makedirs(self._directory, exist_ok=True)
        spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        for pid in self._pids:
            out = os.path.join(self._directory, f"notifier-{pid}.txt")
            self._processes.append(await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", out,
                "--nonblocking", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))  # fmt: skip
        await asyncio.sleep(1)  # py-spy attaches

    async def stop(self) -> None:
        for process in self._processes:
            process.send_signal(signal.SIGINT)
            await process.wait()


async def school_wide(
    system: Deployment, relay: RelayProcess, push: PushProcess, parents: int, cpu: CpuUse, profiler: Profiler
) -> dict[str, Any]:
    """One post to a group of ``parents`` parents with a Web Push device and email each: seconds
    from the post's 201 until every push and every mail arrived. The first parent comes through the
    APIs; the others are written straight into the notifier's copies (people, memberships, devices,
    preferences) as its handlers of identity's events write them, which saves a thousand invitation
    round trips: the post itself goes through posts, the broker and the notifier's fan-out."""
    group = await make_class(system, relay, push, 1)
    key = (await ok(system, 200, "GET", "notifier", "/push/vapid-public-key"))["application_server_key"]
    subscriptions = push.subscribe(key, parents - 1)
    async with system.pools["notifier"].acquire() as conn, conn.transaction():
        for i, subscription in enumerate(subscriptions, 1):
            person_id = uuid.uuid4()
            await store.upsert_person(
                conn, person_id, f"ouder{i}-{person_id.hex[:6]}@ouders.test", f"Ouder {i}", "nl", 1
            )
            await conn.execute(
                "INSERT INTO memberships (group_id, person_id, role, active, revision) VALUES ($1, $2, 'guardian', true, 1)",
                group.group_id,
                person_id,
            )
            await conn.execute(
                "INSERT INTO preferences (person_id, category, channel, timing) VALUES ($1, 'posts', 'both', 'immediate')",
                person_id,
            )
            keys = subscription["keys"]
            await store.register_device(
                conn, uuid.uuid4(), person_id, subscription["endpoint"], keys["p256dh"], keys["auth"]
            )
    group.subscriptions += subscriptions
    pushes, mails = push.arrivals.count + parents, relay.arrivals.count + parents
    cpu.start()
    await profiler.start()
    accepted, _, _ = await post(system, group, "Schoolreis", "Morgen!")
    pushed, mailed = await asyncio.gather(push.arrivals.until(pushes, 300), relay.arrivals.until(mails, 300))
    cpu.stop()
    await profiler.stop()
    return {
        "push_s": pushed - accepted,
        "mail_s": mailed - accepted,
        "all_s": max(pushed, mailed) - accepted,
        "subscriptions": group.subscriptions,
    }


async def raw_webpush(settings: NotifierSettings, arrivals: Arrivals, subscriptions: list[dict[str, Any]], rounds: int) -> list[float]:  # fmt: skip
    """ms until every push of a round arrived, all sent at once by WebPushSender (encryption, VAPID
    and POSTs over its one session: the notifier's sender alone)."""
    times = []
    async with WebPushSender(settings) as sender:
        for _ in range(rounds):
            start, target = time.perf_counter(), arrivals.count + len(subscriptions)
            await asyncio.gather(*(sender.send(s, PUSH_PAYLOAD, topic="bench") for s in subscriptions))
            times.append((await arrivals.until(target) - start) * 1000)
    return times


async def raw_posts(settings: NotifierSettings, arrivals: Arrivals, subscriptions: list[dict[str, Any]], rounds: int) -> list[float]:  # fmt: skip
    """ms until every push of a round arrived, POSTed at once by plain aiohttp (one session, as
    many connections as the notifier's sender uses), encrypted and signed beforehand: the HTTP alone."""
    data = encode_push_payload(PUSH_PAYLOAD)
    assert settings.vapid_private_key is not None
    vapid = Vapid(private_key=load_private_key(settings.vapid_private_key.get_secret_value()))
    audience = subscriptions[0]["endpoint"].rsplit("/push/", 1)[0]
    authorization = vapid.sign(
        {"sub": settings.vapid_subject, "aud": audience, "exp": int(time.time()) + 12 * 3600}
    )
    requests = []
    for subscription in subscriptions:
        encoded = WebPusher(subscription).encode(data, "aes128gcm")
        headers = {**authorization, "TTL": "86400", "Topic": "bench", "Content-Encoding": "aes128gcm"}
        requests.append((subscription["endpoint"], encoded["body"], headers))
    connector = aiohttp.TCPConnector(limit_per_host=settings.push_connections_per_host)
    times = []
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(endpoint: str, body: bytes, headers: dict[str, str]) -> None:
            async with session.post(endpoint, data=body, headers=headers) as response:
                assert response.status == 201, await response.text()

        for _ in range(rounds):
            start, target = time.perf_counter(), arrivals.count + len(requests)
            await asyncio.gather(*(one(*request) for request in requests))
            times.append((await arrivals.until(target) - start) * 1000)
    return times


async def raw_smtp(relay: RelayProcess, count: int, rounds: int, connections: int = 1) -> list[float]:
    """ms until ``count`` mails arrived, over ``connections`` reused aiosmtplib connections (one by
    default) to the same relay: the notifier's own mails (bytes, built beforehand)."""
    messages = [
        new_post_parts(
            "nl", f"Ouder {i}", f"raw{i}@ouders.test", "Groep 7", "Bericht", "http://klaspost.test/posts/1",
            uuid.uuid4(), "Klaspost <noreply@klaspost.nl>",
        ).outgoing()
        for i in range(count)
    ]  # fmt: skip
    clients = [
        aiosmtplib.SMTP(hostname=relay.host, port=relay.port, start_tls=False) for _ in range(connections)
    ]
    for client in clients:
        await client.connect()

    async def send(client: aiosmtplib.SMTP, share: list[OutgoingMail | EmailMessage]) -> None:
        for msg in share:
            assert isinstance(msg, OutgoingMail)  # as the notifier sends them: bytes
            await client.sendmail(msg.sender, list(msg.recipients), msg.data)

    times = []
    try:
        for _ in range(rounds):
            start, target = time.perf_counter(), relay.arrivals.count + count
            await asyncio.gather(*(send(c, messages[i::connections]) for i, c in enumerate(clients)))
            times.append((await relay.arrivals.until(target) - start) * 1000)
    finally:
        for client in clients:
            await client.quit()
    return times


def rate_line(name: str, count: int, seconds: float) -> str:
    return f"{name:<62} {count / seconds:8.0f} /s   ({count} in {seconds * 1000:.0f} ms)"


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:<62} p50 {statistics.median(values):6.1f}  p90 {pct(values, 90):6.1f}  "
        f"p99 {pct(values, 99):6.1f}  max {max(values):6.1f} ms  (n={len(values)})"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


async def throughput(
    system: Deployment, relay: RelayProcess, push: PushProcess, args: argparse.Namespace
) -> None:
    """--parents 1000: deliveries per second end to end, beside the raw building blocks."""
    settings = NotifierSettings.model_validate(system.settings["notifier"])
    cpu = CpuUse({**system.pids, "push service": [push.pid], "relay": [relay.pid], "bench": [os.getpid()]})
    profiler = Profiler(args.profile, system.pids["notifier"])
    result = await school_wide(system, relay, push, args.parents, cpu, profiler)
    print(f"(end to end measured at {load()})")
    subscriptions = result["subscriptions"]
    [webpush_ms] = await raw_webpush(settings, push.arrivals, subscriptions, 1)
    [posts_ms] = await raw_posts(settings, push.arrivals, subscriptions, 1)
    [smtp_ms] = await raw_smtp(relay, args.parents, 1)
    [smtp_pool_ms] = await raw_smtp(relay, args.parents, 1, settings.smtp_max_connections)
    parents, deliveries = args.parents, 2 * args.parents
    end_to_end = deliveries / result["all_s"]
    # The raw blocks one after the other: what the same messages cost with no database, broker or
    # bookkeeping (end to end sends both channels at once on the same two cores).
    raw_s = (webpush_ms + smtp_ms) / 1000
    print(
        f"school-wide post to {parents} parents (push + email each: {deliveries} deliveries), {args.notifiers} notifier process(es)"
    )
    print(rate_line("post 201 -> every push and mail received", deliveries, result["all_s"]))
    print(rate_line("  of which pushes (post 201 -> last push)", parents, result["push_s"]))
    print(rate_line("  of which emails (post 201 -> last email)", parents, result["mail_s"]))
    print(rate_line("raw: pushes at once (WebPushSender, one session)", parents, webpush_ms / 1000))
    print(rate_line("raw: pushes at once (aiohttp POSTs, encrypted beforehand)", parents, posts_ms / 1000))
    print(rate_line("raw: emails over one aiosmtplib connection", parents, smtp_ms / 1000))
    print(
        rate_line(
            f"raw: emails over {settings.smtp_max_connections} aiosmtplib connections",
            parents,
            smtp_pool_ms / 1000,
        )
    )
    print(rate_line("raw: WebPushSender + one SMTP connection, one after the other", deliveries, raw_s))
    print(f"ratio end to end / raw (one after the other): {end_to_end * raw_s / deliveries:.2f}")
    print(f"CPU ms per delivery end to end, by process: {cpu.report(deliveries)}")
    print(f"({load()})")


async def class_fan_out(
    system: Deployment, relay: RelayProcess, push: PushProcess, args: argparse.Namespace
) -> None:
    settings = NotifierSettings.model_validate(system.settings["notifier"])
    group = await make_class(system, relay, push, args.parents)
    profiler = Profiler(args.profile, system.pids["notifier"])
    await profiler.start()
    result = await fan_out(system, group, relay, push, args.posts, args.gap)
    await profiler.stop()
    print(f"(end to end measured until {load()})")
    webpush = await raw_webpush(settings, push.arrivals, group.subscriptions, 20)
    posts = await raw_posts(settings, push.arrivals, group.subscriptions, 20)
    smtp = await raw_smtp(relay, args.parents, 20)
    print(
        f"fan-out to {args.parents} parents (push + email each), {args.posts} posts, {args.gap} s apart, "
        f"{args.notifiers} notifier process(es)"
    )
    print(line("post 201 -> last push received", result["push"]))
    print(line("post 201 -> last email received", result["email"]))
    for stage in STAGES:
        print(line(f"  of which: post 201 -> {stage}", result[stage]))
    print(line(f"raw: {args.parents} pushes at once (WebPushSender, one session)", webpush))
    print(line(f"raw: {args.parents} pushes at once (aiohttp POSTs, encrypted before)", posts))
    print(line(f"raw: {args.parents} emails over one aiosmtplib connection", smtp))
    push_ratio = statistics.median(result["push"]) / statistics.median(webpush)
    mail_ratio = statistics.median(result["email"]) / statistics.median(smtp)
    print(
        f"ratio at p50, end to end / raw: last push {push_ratio:.1f}x (WebPushSender), last email {mail_ratio:.1f}x"
    )
    print(f"({load()})")


async def main(args: argparse.Namespace) -> None:
    relay, push = RelayProcess(), PushProcess(decrypt=args.decrypt)
    relay.start()
    push.start()
    notifier: dict[str, Any] = {
        "smtp_port": relay.port,
        "push_allowed_hosts": ["127.0.0.1"],
        "log_level": args.log_level,
    }
    for option, setting in (("email_slots", "delivery_email_concurrency"), ("push_slots", "delivery_push_concurrency"),
                            ("smtp_connections", "smtp_max_connections"), ("push_in_flight", "delivery_push_in_flight"),
                            ("push_service_slots", "delivery_push_service_concurrency")):  # fmt: skip
        if getattr(args, option) is not None:
            notifier[setting] = getattr(args, option)
    try:
        async with deployed(
            settings={"notifier": notifier},
            replicas={"notifier": args.notifiers},
            smtp=(relay.host, relay.port),
            logs=Path(args.logs) if args.logs else None,
        ) as system:
            measure: Callable[..., Any] = throughput if args.parents >= 100 else class_fan_out
            await measure(system, relay, push, args)
    finally:
        push.stop()
        relay.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parents", type=int, default=28)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--notifiers", type=int, default=1, help="notifier processes (replicas)")
    parser.add_argument("--email-slots", type=int, help="DELIVERY_EMAIL_CONCURRENCY (default: the setting's)")
    parser.add_argument("--push-slots", type=int, help="DELIVERY_PUSH_CONCURRENCY (default: the setting's)")
    parser.add_argument("--smtp-connections", type=int, help="SMTP_MAX_CONNECTIONS (default: the setting's)")
    parser.add_argument("--push-in-flight", type=int, help="DELIVERY_PUSH_IN_FLIGHT (default: the setting's)")
    parser.add_argument(
        "--push-service-slots", type=int, help="DELIVERY_PUSH_SERVICE_CONCURRENCY (default: the setting's)"
    )
    parser.add_argument(
        "--logs", metavar="DIR", help="each service process's log lines there (default: /dev/null)"
    )
    parser.add_argument("--log-level", default="INFO", help="the services' LOG_LEVEL")
    parser.add_argument("--decrypt", action="store_true", help="the push service decrypts every push")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the notifier while it fans out (raw files)")
    logging.disable(logging.WARNING)
    # The bench's own loop (the raw blocks run on it) is the one the services run on.
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main(parser.parse_args()))
