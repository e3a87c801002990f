"""Fan-out to a class (issue 8, case 9): a teacher posts to a group of 28 parents, each with one
Web Push device and an email address; how long from the post's 201 at posts until the last push and
the last email arrived. Beside it, in the same run, the building blocks alone: the same 28 pushes
sent straight to the same push endpoint (WebPushSender: encryption, VAPID and aiohttp POSTs over one
session, all at once), and 28 emails over one reused aiosmtplib connection to the same SMTP sink.

The whole system runs in this process (tests/harness/system.py: identity, posts, media and the
notifier on real PostgreSQL and RabbitMQ, a local push service), set up through the APIs as the
tests do (tests/harness/school.py). The SMTP sink the posts' mails go to (and the raw mails) runs in
a process of its own, as a relay would: on a thread of this process its parsing of every mail took
turns with the notifier on one GIL (``--sink thread`` measures it that way). Posts are one a day per group (seed rule 5): the
bench frees the day in posts' table between posts, as tests/test_openapi.py does.

    cd /work/main && PYTHONPATH=.:services/identity:services/posts:services/media:services/notifier \\
        .venv/bin/python bench/fanout.py [--parents 28] [--posts 50] [--gap 0.5]

With ``--parents 100`` or more it measures throughput instead (issue 8: a school-wide post to 1,000
parents): one post, deliveries per second from its 201 until every push and mail arrived, beside
the raw rates of WebPushSender and of aiosmtplib over one reused connection, and their ratio.
"""

import argparse
import asyncio
import logging
import multiprocessing
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any

import aiosmtplib

from notifier import store
from notifier.compose import OutgoingMail
from notifier.messages import new_post_parts, new_post_push
from notifier.resources import DELIVERER
from notifier.settings import Settings as NotifierSettings
from notifier.webpush import WebPushSender
from shared.app import POOL, SETTINGS
from shared.testing.smtp import ReceivedMail, SmtpSink
from tests.harness.school import add_person, make_class, wait_until_linked
from tests.harness.system import System, start_system, stop_system


class _Counted(list[ReceivedMail]):
    """The sink's list of mails, counting each into the value the bench reads (no polling here)."""

    def __init__(self, count: "Synchronized[int]") -> None:
        super().__init__()
        self._count = count

    def append(self, mail: ReceivedMail) -> None:
        super().append(mail)
        self._count.value += 1


def _run_sink(port: "Synchronized[int]", count: "Synchronized[int]", stop: Event) -> None:
    sink = SmtpSink()
    sink.messages = _Counted(count)
    sink.start()
    port.value = sink.port
    stop.wait()
    sink.stop()


class SinkProcess:
    """shared.testing's SmtpSink in a process of its own; ``count()`` is how many mails it took."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._port: Synchronized[int] = context.Value("i", 0)
        self._count: Synchronized[int] = context.Value("q", 0)
        self._stop = context.Event()
        self._process = context.Process(target=_run_sink, args=(self._port, self._count, self._stop), daemon=True)

    def start(self) -> None:
        self._process.start()
        deadline = time.monotonic() + 30
        while not self._port.value:
            if time.monotonic() > deadline or not self._process.is_alive():
                raise RuntimeError("the SMTP sink process did not start")
            time.sleep(0.01)

    @property
    def port(self) -> int:
        return self._port.value

    def count(self) -> int:
        return self._count.value

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)


class Sink:
    """Where the notifier's mails go for the measurement: the sink process, or (``--sink thread``)
    the harness's own sink on a thread of this process."""

    def __init__(self, system: System, process: SinkProcess | None) -> None:
        self.host = system.smtp.host
        self.port = process.port if process else system.smtp.port
        self.count: Callable[[], int] = process.count if process else lambda: len(system.smtp.messages)
        if process:
            # After the set-up (invitations are read from the harness's sink): the notifier's mailer
            # now connects to the sink process; its kept connections to the other are closed.
            mailer = system.services["notifier"].app[DELIVERER]._mailer
            mailer._settings = mailer._settings.model_copy(update={"smtp_port": process.port})
            for connection in mailer._idle:
                connection.close()
            mailer._idle.clear()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def register_push(system: System, token: str) -> dict[str, Any]:
    _, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    subscription = system.push.subscribe(key["application_server_key"])
    status, body = await system.call(
        "POST", "notifier", "/devices", token, json={"subscription": subscription}
    )
    assert status == 201, body
    # Email and push both: with a device the default is push only.
    choice = {"channel": "both", "timing": "immediate"}
    status, body = await system.call(
        "PUT", "notifier", "/preferences", token, json={"posts": choice, "signups": choice, "reminders": choice}
    )
    assert status == 200, body
    return subscription


async def until(check: Any, timeout: float = 10.0) -> float:  # noqa: ASYNC109
    """perf_counter when check() first held (polled every millisecond)."""
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError("not reached")
        await asyncio.sleep(0.001)
    return time.perf_counter()


async def fan_out(
    system: System, parents: int, posts: int, gap: float, process: SinkProcess | None
) -> dict[str, Any]:
    school, group, teacher, first = await make_class(system, "Groep 7")
    people = [first] + [
        await add_person(system, school, f"ouder{i}", "guardian", "Groep 7") for i in range(1, parents)
    ]
    for person in people:
        await wait_until_linked(system, person, group)
    subscriptions = [await register_push(system, p.token) for p in people]
    addresses = {p.email for p in people}
    sink = Sink(system, process)
    posts_pool = system.services["posts"].app[POOL]

    push_ms, mail_ms = [], []
    stages: dict[str, list[float]] = {
        "notification stored": [],
        "first push marked sent": [],
        "last push marked sent": [],
    }
    notifier_pool = system.services["notifier"].app[POOL]
    for n in range(1, posts + 1):
        await posts_pool.execute("DELETE FROM post_days WHERE group_id = $1", group)
        mails_before, pushes_before = sink.count(), len(system.push.messages)
        status, body = await system.call(
            "POST",
            "posts",
            f"/groups/{group}/posts",
            teacher.token,
            json={"title": "Nieuws", "body": f"Bericht {n}"},
        )
        accepted, accepted_wall = time.perf_counter(), time.time()
        assert status == 201, body

        # Cheap checks (counts only): the polling shares the event loop with every service.
        def all_pushed(before: int = pushes_before) -> bool:
            return len(system.push.messages) - before >= len(subscriptions)

        def all_mailed(before: int = mails_before) -> bool:
            return sink.count() - before >= len(addresses)

        pushed, mailed = await asyncio.gather(until(all_pushed), until(all_mailed))
        push_ms.append((pushed - accepted) * 1000)
        mail_ms.append((mailed - accepted) * 1000)
        # Where the time went, by the notifier's own clock (the database's, same machine).
        row = await notifier_pool.fetchrow(
            """SELECT extract(epoch FROM n.created_at) AS created,
                      extract(epoch FROM min(d.sent_at) FILTER (WHERE d.channel = 'push')) AS first_push,
                      extract(epoch FROM max(d.sent_at) FILTER (WHERE d.channel = 'push')) AS last_push
               FROM notifications n JOIN deliveries d USING (notification_id)
               WHERE n.post_id = $1 GROUP BY n.created_at""",
            uuid.UUID(body["post_id"]),
        )
        stages["notification stored"].append((float(row["created"]) - accepted_wall) * 1000)
        stages["first push marked sent"].append((float(row["first_push"]) - accepted_wall) * 1000)
        stages["last push marked sent"].append((float(row["last_push"]) - accepted_wall) * 1000)
        await asyncio.sleep(gap)
    return {"push": push_ms, "email": mail_ms, "subscriptions": subscriptions, "sink": sink, **stages}


async def school_wide(system: System, parents: int, process: SinkProcess | None) -> dict[str, Any]:
    """One post to a group of ``parents`` parents with a Web Push device and email each: seconds
    from the post's 201 until every push and every mail arrived. The first parent comes through the
    APIs; the others are written straight into the notifier's copies (people, memberships, devices,
    preferences) as its handlers of identity's events write them, which saves a thousand invitation
    round trips: the post itself goes through posts, the broker and the notifier's fan-out."""
    _school, group, teacher, first = await make_class(system, "Groep 8")
    subscriptions = [await register_push(system, first.token)]
    _, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    notifier_pool = system.services["notifier"].app[POOL]
    async with notifier_pool.acquire() as conn, conn.transaction():
        for i in range(1, parents):
            person_id = uuid.uuid4()
            await store.upsert_person(conn, person_id, f"ouder{i}-{person_id.hex[:6]}@ouders.test", f"Ouder {i}", "nl", 1)
            await conn.execute(
                "INSERT INTO memberships (group_id, person_id, role, active, revision) VALUES ($1, $2, 'guardian', true, 1)",
                group,
                person_id,
            )
            await conn.execute(
                "INSERT INTO preferences (person_id, category, channel, timing) VALUES ($1, 'posts', 'both', 'immediate')",
                person_id,
            )
            subscription = system.push.subscribe(key["application_server_key"])
            keys = subscription["keys"]
            await store.register_device(
                conn, uuid.uuid4(), person_id, subscription["endpoint"], keys["p256dh"], keys["auth"]
            )
            subscriptions.append(subscription)
    sink = Sink(system, process)
    posts_pool = system.services["posts"].app[POOL]
    await posts_pool.execute("DELETE FROM post_days WHERE group_id = $1", group)
    mails_before, pushes_before = sink.count(), len(system.push.messages)
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/posts", teacher.token, json={"title": "Schoolreis", "body": "Morgen!"}
    )
    accepted = time.perf_counter()
    assert status == 201, body

    def all_pushed() -> bool:
        return len(system.push.messages) - pushes_before >= parents

    def all_mailed() -> bool:
        return sink.count() - mails_before >= parents

    pushed, mailed = await asyncio.gather(until(all_pushed, 300), until(all_mailed, 300))
    return {
        "push_s": pushed - accepted,
        "mail_s": mailed - accepted,
        "all_s": max(pushed, mailed) - accepted,
        "subscriptions": subscriptions,
        "sink": sink,
    }


async def raw_push(system: System, subscriptions: list[dict[str, Any]], rounds: int) -> list[float]:
    settings = system.services["notifier"].app[SETTINGS]
    assert isinstance(settings, NotifierSettings)
    payload = new_post_push("nl", "Groep 7", "Bericht", "http://klaspost.test/posts/1", uuid.uuid4())
    times = []
    async with WebPushSender(settings) as sender:
        for _ in range(rounds):
            start = time.perf_counter()
            await asyncio.gather(*(sender.send(s, payload, topic="bench") for s in subscriptions))
            times.append((time.perf_counter() - start) * 1000)
    return times


async def raw_smtp(sink: Sink, count: int, rounds: int) -> list[float]:
    """count mails over one reused aiosmtplib connection, the same mails the notifier sends (text and
    HTML, built beforehand: the timing is the relay's and the client's, not the email package's)."""
    times = []
    messages = [
        new_post_parts(
            "nl", f"Ouder {i}", f"raw{i}@ouders.test", "Groep 7", "Bericht", "http://klaspost.test/posts/1",
            uuid.uuid4(), "Klaspost <noreply@klaspost.nl>",
        ).outgoing()
        for i in range(count)
    ]  # fmt: skip
    async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False) as client:
        for _ in range(rounds):
            start = time.perf_counter()
            for msg in messages:
                assert isinstance(msg, OutgoingMail)  # as the notifier sends them: bytes
                await client.sendmail(msg.sender, list(msg.recipients), msg.data)
            times.append((time.perf_counter() - start) * 1000)
    return times


def rate_line(name: str, count: int, seconds: float) -> str:
    return f"{name:<58} {count / seconds:8.0f} /s   ({count} in {seconds * 1000:.0f} ms)"


async def throughput(system: System, parents: int, process: SinkProcess | None) -> None:
    """--parents 1000: deliveries per second end to end, beside the raw building blocks."""
    result = await school_wide(system, parents, process)
    subscriptions = result["subscriptions"]
    [push_ms] = await raw_push(system, subscriptions, 1)
    [smtp_ms] = await raw_smtp(result["sink"], parents, 1)
    deliveries = 2 * parents
    end_to_end = deliveries / result["all_s"]
    # The raw blocks one after the other: what the same messages cost with no database, broker or
    # bookkeeping (the end-to-end run sends both channels at once on the same two cores).
    raw = deliveries / ((push_ms + smtp_ms) / 1000)
    print(f"school-wide post to {parents} parents (push + email each: {deliveries} deliveries)")
    print(rate_line("post 201 -> every push and mail received", deliveries, result["all_s"]))
    print(rate_line("  of which pushes (post 201 -> last push)", parents, result["push_s"]))
    print(rate_line("  of which emails (post 201 -> last email)", parents, result["mail_s"]))
    print(rate_line("raw: pushes at once (WebPushSender, one aiohttp session)", parents, push_ms / 1000))
    print(rate_line("raw: emails over one aiosmtplib connection", parents, smtp_ms / 1000))
    print(rate_line("raw: both, one after the other", deliveries, (push_ms + smtp_ms) / 1000))
    print(f"ratio end to end / raw: {end_to_end / raw:.2f}   (SMTP sink: {'thread' if process is None else 'process'})")


def line(name: str, values: list[float]) -> str:
    return f"{name:<58} p50 {statistics.median(values):7.1f} ms   p99 {pct(values, 99):7.1f} ms   (n={len(values)})"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parents", type=int, default=28)
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.5)
    parser.add_argument("--email-slots", type=int, help="DELIVERY_EMAIL_CONCURRENCY (default: the setting's)")
    parser.add_argument("--push-slots", type=int, help="DELIVERY_PUSH_CONCURRENCY (default: the setting's)")
    parser.add_argument(
        "--switch-interval", type=float, default=0.0005,
        help="sys.setswitchinterval (s); Python's default is 0.005",
    )  # fmt: skip
    parser.add_argument(
        "--sink", choices=("process", "thread"), default="process",
        help="the SMTP sink in a process of its own (as a relay), or on a thread of this one (as before)",
    )  # fmt: skip
    args = parser.parse_args()
    process = SinkProcess() if args.sink == "process" else None
    if process:
        process.start()  # before the system's threads and loop: a clean child
    # The SMTP sink (aiosmtpd) runs on a thread of this process, where a real relay is another process:
    # every time the services' loop lets go of the GIL (each socket write) it waits for the sink's
    # thread to give it back, up to the switch interval (5 ms by default) each time.
    sys.setswitchinterval(args.switch_interval)
    logging.disable(logging.WARNING)
    system = await start_system()
    deliverer = system.services["notifier"].app[DELIVERER]
    # The harness builds the settings itself; the bench's knobs go straight to the running worker.
    limits = deliverer._limits
    limits["smtp"] = args.email_slots or limits["smtp"]
    limits["webpush"] = args.push_slots or limits["webpush"]
    deliverer._slots = {provider: asyncio.Semaphore(limit) for provider, limit in limits.items()}
    if args.parents >= 100:
        try:
            await throughput(system, args.parents, process)
        finally:
            await stop_system(system)
            if process:
                process.stop()
        return
    try:
        result = await fan_out(system, args.parents, args.posts, args.gap, process)
        pushes = await raw_push(system, result["subscriptions"], 20)
        smtp = await raw_smtp(result["sink"], args.parents, 20)
    finally:
        await stop_system(system)
        if process:
            process.stop()
    print(
        f"fan-out to {args.parents} parents (push + email each), {args.posts} posts, {args.gap} s apart, "
        f"send slots smtp {limits['smtp']} webpush {limits['webpush']}, SMTP sink on a {args.sink} of its own"
    )
    print(line("post 201 -> last push received", result["push"]))
    print(line("post 201 -> last email received", result["email"]))
    for stage in ("notification stored", "first push marked sent", "last push marked sent"):
        print(line(f"  of which: post 201 -> {stage}", result[stage]))
    print(line(f"raw: {args.parents} pushes at once (WebPushSender, one session)", pushes))
    print(line(f"raw: {args.parents} emails over one aiosmtplib connection", smtp))
    push_ratio = statistics.median(result["push"]) / statistics.median(pushes)
    mail_ratio = statistics.median(result["email"]) / statistics.median(smtp)
    print(f"ratio at p50, end to end / raw: last push {push_ratio:.1f}x, last email {mail_ratio:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
