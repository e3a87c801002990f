"""Sending what the deliveries and mails tables hold: claimed a few at a time on short leases, sent
over mail or push (Web Push, FCM or APNs by the device's kind), and each marked sent, retried later
with back-off, or failed for good.

A one-off mail carries a secret (an access code, a reset token): it is dropped in the statement that
marks the mail sent or failed, and it never reaches a log line or a stored error.
"""

import asyncio
import functools
import logging
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import asyncpg

from notifier import message_store, store, unsubscribe
from notifier.apns import ApnsSender
from notifier.compose import OutgoingMail
from notifier.delivery_errors import DeliveryFailed
from notifier.delivery_outcomes import SentRecorder
from notifier.domain import backoff_seconds
from notifier.fcm import FcmSender
from notifier.mailer import Envelope, Mailer
from notifier.mails import local_zone, one_off_email
from notifier.notices import CATEGORY, delivery_email, delivery_push
from notifier.settings import Settings
from notifier.webpush import WebPushSender
from shared.logs import correlation_id

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = store.NOTIFY_CHANNEL

# Rows claimed per provider: up to this many times its send slots, queued for the slots. One claim
# then serves a class's whole fan-out instead of one round trip per freed slot; only the sends in
# flight (the slots) can have reached a server unrecorded, so a crash repeats no more than before.
PREFETCH = 4
# A provider whose claim came back short has nothing more due: asked again after this long at the
# earliest while the drain goes on (a new fan-out also sends a NOTIFY, which starts another drain).
RECLAIM_SECONDS = 0.05
# Started first within a claim: a push is what a parent sees at once; an email a moment later is not
# noticed, and building one costs far more CPU than a push.
_FIRST = {"webpush": 0, "fcm": 0, "apns": 0, "smtp": 1}
PUSH_PROVIDERS = frozenset({"webpush", "fcm", "apns"})
# Pushes before emails: an email waits to start while pushes of this worker queued before it are not
# yet done (waiting for a slot or in flight) and are moving (one started or finished within
# PUSH_MOVING_SECONDS), at most PUSH_FIRST_SECONDS. Only those queued before it: pushes claimed later
# never hold it back. Sending a mail costs more CPU than a push (building it, four SMTP round trips);
# on the one event loop they would otherwise take turns, and the last pushes of a class, in flight
# while mails started, waited for them. A push service that hangs stops moving, so it never holds
# emails back for long.
PUSH_FIRST_SECONDS = 0.5
PUSH_MOVING_SECONDS = 0.1
# A push service (a Web Push origin, FCM or APNs) is stuck when all its slots are taken, sends wait
# for it, and none of its sends started or finished for this long (it takes requests and does not
# answer, until PUSH_TIMEOUT_SECONDS): the rows waiting for it then no longer count as its provider's
# queue, so rows for other push services are claimed (at most PREFETCH x the slots more).
STUCK_SECONDS = 0.5


@dataclass(frozen=True)
class _Attempt:
    """One claimed row: how to send it, and how to record each outcome in its table."""

    key: tuple[str, uuid.UUID]  # (table, id)
    channel: str  # "email" or "push"
    provider: str  # "smtp", "webpush", "fcm" or "apns": whose send slots it takes
    names: dict[str, str]  # what log lines name it by, e.g. {"mail_id": ..., "kind": ...}
    attempts: int
    correlation_id: str | None
    send: Callable[[], Awaitable[None]]
    # Records a failed attempt in one statement: (conn, failure, reason, given up by attempts,
    # retry in seconds) -> the status afterwards ('failed', 'pending', None: no longer pending).
    record: Callable[[asyncpg.Connection, DeliveryFailed, str, bool, float], Awaitable[str | None]]
    secret: str | None = None
    # CPU work before the send that reaches no server, done while it waits for a slot (pushes).
    prepare: Callable[[], None] | None = None
    notification_id: uuid.UUID | None = None  # a delivery's: its post deleted, it is not sent
    # A push's push service, whose own slots it takes too: the endpoint's origin for Web Push, else
    # the provider (FCM and APNs are one service each); None: no device, it fails at once.
    service: str | None = None
    device_id: uuid.UUID | None = None  # a push's: the device removed, it is not sent
    # An email's envelope (MAIL FROM and RCPT TO, which no relay delivers on: see mailer.Mailer) sent
    # on a pooled connection while it waits for a slot, after the pushes ahead of it; what that raised
    # is raised again by send(), under the slot. abandon drops an envelope opened and not sent (RSET),
    # and does nothing after send().
    open: Callable[[], Awaitable[None]] | None = None
    abandon: Callable[[], Awaitable[None]] | None = None

    def redact(self, text: str) -> str:
        """text without the secret, as given or as it appears in a link."""
        if not self.secret:
            return text
        for form in (self.secret, quote(self.secret, safe="")):
            text = text.replace(form, "[secret]")
        return text


class Deliverer:
    """Sends what is due, a few at a time per provider, and records each outcome as soon as it is known.

    ``drain()`` streams: it claims up to ``PREFETCH`` times each provider's send slots (each provider
    has its own limit), queued for those slots, pushes first; it claims again whenever a provider has
    fewer rows than slots left, and returns when nothing is due and nothing runs. A slot is given back
    only after its outcome is stored (successes that finish together stored in one commit:
    SentRecorder), so at any instant at most the slots' worth of sends can have been accepted
    by a server without being recorded: that is all a crash can make us send twice (each repeat with
    the same Message-ID, or push Topic and notification tag). Pushes also share the in-flight slots
    (``delivery_push_in_flight``, all push providers together: the crash-repeat bound) and each push
    service has its own few (``delivery_push_service_concurrency``), so one that hangs leaves the
    others slots. An email sends its envelope (MAIL FROM, RCPT TO) before it takes its slot and only
    DATA under it (``_Email``): only the end of DATA makes a relay take a mail (RFC 5321 §4.1.1.4).

    Claims are short leases (``delivery_lease_seconds``) renewed by a heartbeat while the rows are
    held, so a restarted notifier or another replica takes over a crashed one's work within one lease.
    A renewal names the attempt number the claim gave the row: once another worker re-claimed it
    (attempts moved on) this one cannot renew it, and a send whose lease is not comfortably valid
    is not started.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        mailer: Mailer,
        push: WebPushSender | None,
        settings: Settings,
        *,
        fcm: FcmSender | None = None,
        apns: ApnsSender | None = None,
    ) -> None:
        self._pool = pool
        self._mailer = mailer
        self._push = push
        self._fcm = fcm
        self._apns = apns
        # Set by stop(): claim nothing more; what runs finishes.
        self._stopping = False
        self._running: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._settings = settings
        # The key one-click unsubscribe links are signed with: read from the database at first use.
        self._unsubscribe_key: bytes | None = None
        self._lease = settings.delivery_lease_seconds
        # Sends at once per provider (mails and email deliveries share the SMTP slots); rows are
        # claimed only for free slots, so a claimed row is sent at once, and a provider that is slow
        # or down holds only its own slots.
        self._limits = {
            "smtp": settings.delivery_email_concurrency,
            "webpush": settings.delivery_push_concurrency,
            "fcm": settings.delivery_fcm_concurrency,
            "apns": settings.delivery_apns_concurrency,
        }
        # Rows this worker holds, by (table, id): the attempt number of its claim, and the loop time
        # its lease runs out at.
        self._held: dict[tuple[str, uuid.UUID], _Lease] = {}
        # Notifications cancelled and devices removed since (NOTIFY, see notified()), by id, with the
        # loop time this worker heard of it: kept a lease, by then the heartbeat has let go of any
        # row of them this worker held (no longer pending, so not renewed).
        self._cancelled: dict[uuid.UUID, float] = {}
        self._removed: dict[uuid.UUID, float] = {}
        self._slots = {provider: asyncio.Semaphore(limit) for provider, limit in self._limits.items()}
        # Pushes in flight over all providers (the most a crash repeats of pushes), and per push
        # service, one less than the in-flight and Web Push limits at most, so that a service that
        # hangs leaves the others a slot. A push takes its service's slot, its provider's, then this.
        self._push_in_flight = asyncio.Semaphore(settings.delivery_push_in_flight)
        self._service_limit = max(
            1,
            min(
                settings.delivery_push_service_concurrency,
                settings.delivery_push_in_flight - 1,
                settings.delivery_push_concurrency - 1,
            ),
        )
        self._services: dict[str, _Service] = {}
        # Pushes that joined a queue for a slot, and those that left it (started, or cancelled); the
        # loop time a push last started or finished, and an event set then.
        self._push_tickets = 0
        self._push_done = 0
        self._preparing = asyncio.Lock()
        self._push_moved_at = 0.0
        # Emails waiting for the pushes ahead of them: (how many pushes must be done, its future), in
        # the order they came (so by that count), each woken once, when its pushes are done.
        self._push_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._recorder = SentRecorder(pool)
        # Counters for /metrics since start, by channel: attempts that failed and will be tried
        # again, and deliveries given up on.
        self.retries: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        # The same by provider ("smtp", "webpush", "fcm", "apns"), and sends that succeeded.
        self.provider_retries: Counter[str] = Counter()
        self.provider_failures: Counter[str] = Counter()
        self.provider_sent: Counter[str] = Counter()

    async def stop(self, grace_seconds: float) -> None:
        """For SIGTERM: claim nothing more, give the sends in flight up to grace_seconds to finish and
        be recorded, then hand every row still held back (due at once), so another replica or the next
        start takes it over without waiting out the lease. A send cut off here may have reached its
        server: a repeat carries the same idempotency key, as after a crash."""
        self._stopping = True
        if self._running:
            try:
                async with asyncio.timeout(grace_seconds):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("deliveries still in flight at stop", extra={"in_flight": len(self._running)})
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self.release()

    async def release(self) -> None:
        """Make the rows this worker still holds due again now (only while it still holds the claim)."""
        held = [(table, key, lease.attempts) for (table, key), lease in self._held.items()]
        self._held.clear()
        if not held:
            return
        try:
            async with self._pool.acquire() as conn:
                released = await store.release_claims(conn, held)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("delivery leases not released", extra={"error": repr(exc), "held": len(held)})
            return
        log.info("delivery leases released", extra={"released": released})

    def notified(self, payload: str) -> None:
        """News on store.NOTIFY_CHANNEL, from any replica's transaction once it commits: "cancelled
        <notification id> ..." (a deleted post: its deliveries are no longer pending) or "removed
        <device id> ..." (devices deleted, dropped by the per-person cap, or moved to another person).
        A send of those this worker claimed and queued is not started when its turn
        comes (_run), without a look-up in the database per send; one already in flight still ends."""
        news, _, ids = payload.partition(" ")
        heard = {"cancelled": self._cancelled, "removed": self._removed}.get(news)
        if heard is None:
            log.warning("unknown delivery notification", extra={"payload": payload[:100]})
            return
        now = asyncio.get_running_loop().time()
        for forgotten in [key for key, at in heard.items() if now - at > self._lease]:
            del heard[forgotten]
        for text in ids.split():
            try:
                heard[uuid.UUID(text)] = now
            except ValueError:
                log.warning("unknown delivery notification", extra={"payload": payload[:100]})

    async def drain(self) -> int:
        loop = asyncio.get_running_loop()
        handled = 0
        began, sent_before = loop.time(), Counter(self.provider_sent)
        # Each claimed row's task (queued or sending), and its provider.
        running: dict[asyncio.Task[None], str] = {}
        heartbeat = asyncio.create_task(self._heartbeat(), name="notifier-deliveries-heartbeat")
        # Providers whose last claim found fewer due rows than it had room for (and "mails", the
        # one-off mails that share the SMTP slots): asked again only after RECLAIM_SECONDS, not at
        # every finished send (FCM and APNs, often without a single device, were asked each time).
        exhausted: set[str] = set()
        exhausted_at = 0.0
        try:
            while True:
                held = Counter(running.values())
                now = loop.time()
                if now - exhausted_at >= RECLAIM_SECONDS:
                    exhausted.clear()
                # Rows waiting for a stuck push service are not its provider's queue: they do not
                # keep rows for other push services from being claimed (up to PREFETCH x more).
                ready = held - Counter(
                    {
                        service.provider: service.waiting
                        for service in self._services.values()
                        if service.stuck(now)
                    }
                )
                # Claim when some provider would soon have a slot with nothing to send.
                short = {
                    provider: min(limit * PREFETCH - ready[provider], 2 * limit * PREFETCH - held[provider])
                    for provider, limit in self._limits.items()
                    if ready[provider] < limit
                    and held[provider] < 2 * limit * PREFETCH
                    and provider not in exhausted
                }
                if short and not self._stopping:
                    room = {provider: short.get(provider, 0) for provider in self._limits}
                    started = loop.time()
                    async with self._pool.acquire() as conn:
                        deliveries = await store.claim_deliveries(conn, room, self._lease)
                        got = Counter(row["provider"] for row in deliveries)
                        mail_room = room["smtp"] - got["smtp"] if "mails" not in exhausted else 0
                        mails = await store.claim_mails(conn, mail_room, self._lease) if mail_room > 0 else []
                    got["smtp"] += len(mails)
                    came_short = {provider for provider, wanted in short.items() if got[provider] < wanted}
                    if mail_room > len(mails):
                        came_short.add("mails")
                    if came_short:
                        exhausted |= came_short
                        exhausted_at = started
                    attempts = [self._delivery(row) for row in deliveries]
                    attempts += [self._mail(row) for row in mails]
                    attempts.sort(key=lambda attempt: _FIRST[attempt.provider])
                    for attempt in attempts:
                        self._held[attempt.key] = _Lease(attempt.attempts, started + self._lease)
                        if self._stopping:
                            continue  # stop() came during the claim: held, and handed back by release()
                        task = asyncio.create_task(self._run(attempt))
                        running[task] = attempt.provider
                        self._track(task)
                    handled += len(attempts)
                if not running:
                    sent = self.provider_sent - sent_before
                    if sent:
                        # One line a drain: a line per delivery cost 3 % of the CPU of a fan-out;
                        # each failure still has its own warning, each send a debug line.
                        log.info(
                            "deliveries sent",
                            extra={"sent": dict(sent), "seconds": round(loop.time() - began, 3)},
                        )
                    return handled
                # While a push service may get stuck, look again then: its rows stop counting.
                waiting = any(service.waiting for service in self._services.values())
                done, _ = await asyncio.wait(
                    running, timeout=STUCK_SECONDS if waiting else None, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    del running[task]
                for task in done:
                    failure = task.exception()
                    if failure is not None:
                        # Storing an outcome failed (the database, not the send): the Drainer logs it
                        # and tries again; the row's lease runs out and it is claimed afresh.
                        raise failure
        finally:
            heartbeat.cancel()
            for task in running:
                task.cancel()
            await asyncio.gather(heartbeat, *running, return_exceptions=True)

    def _track(self, task: asyncio.Task[None]) -> None:
        """Count a send as in flight until its task ends (stop() waits for these)."""
        self._running.add(task)
        self._idle.clear()

        def done(finished: asyncio.Task[None]) -> None:
            self._running.discard(finished)
            if not self._running:
                self._idle.set()

        task.add_done_callback(done)

    async def _heartbeat(self) -> None:
        """Renew the leases of held rows every third of a lease; drop those another worker took."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._lease / 3)
            if not self._held:
                continue
            held = dict(self._held)
            started = loop.time()
            try:
                async with self._pool.acquire() as conn:
                    renewed = await store.renew_claims(
                        conn,
                        [(table, key, lease.attempts) for (table, key), lease in held.items()],
                        self._lease,
                    )
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("delivery leases not renewed", extra={"error": repr(exc), "held": len(held)})
                continue
            for key in held:
                if key not in self._held:
                    continue  # finished meanwhile
                if key in renewed:
                    self._held[key] = _Lease(held[key].attempts, started + self._lease)
                else:
                    # Re-claimed by another worker (or finished or cancelled): not ours to send.
                    self._held[key] = _Lease(held[key].attempts, 0.0)

    def _may_start(self, key: tuple[str, uuid.UUID]) -> bool:
        """Whether this worker's lease on the row leaves room for a send: more than half of it left."""
        lease = self._held.get(key)
        return lease is not None and lease.until - asyncio.get_running_loop().time() > self._lease / 2

    def _delivery(self, row: asyncpg.Record) -> _Attempt:
        delivery_id = row["delivery_id"]

        async def record(
            conn: asyncpg.Connection, exc: DeliveryFailed, reason: str, out_of_attempts: bool, seconds: float
        ) -> str | None:
            return await store.record_delivery_failure(
                conn,
                delivery_id,
                reason,
                permanent=exc.permanent,
                out_of_attempts=out_of_attempts,
                keep_trying_seconds=self._keep_trying(row["channel"]),
                retry_in_seconds=seconds,
                # The browser unsubscribed or the subscription expired: stop pushing to it at all.
                forget_device=row["device_id"] if exc.gone else None,
            )

        # A push's payload, encryption and signature are CPU work that reaches no server: done while
        # it waits for a send slot (prepare), so a slot holds only the network part. What preparing
        # raised is raised again by send(), under the slot, and recorded like any failed send.
        prepared: list[Callable[[], Awaitable[object]]] = []

        def prepare() -> None:
            try:
                prepared.append(self._push_sender(row))
            except Exception as exc:
                prepared.append(functools.partial(_raise, exc))

        email = _Email(self._mailer, lambda: self._delivery_email(row)) if row["channel"] == "email" else None
        return _Attempt(
            key=("deliveries", delivery_id),
            channel=row["channel"],
            provider=row["provider"],
            names={"delivery_id": str(delivery_id), "channel": row["channel"], "provider": row["provider"]},
            attempts=row["attempts"],
            correlation_id=row["correlation_id"],
            send=email.send if email else lambda: self._send_push(row, prepared[0] if prepared else None),
            record=record,
            prepare=prepare if row["channel"] == "push" else None,
            open=email.open if email else None,
            abandon=email.abandon if email else None,
            notification_id=row["notification_id"],
            device_id=row["device_id"],
            service=_push_service(row) if row["channel"] == "push" else None,
        )

    def _mail(self, row: asyncpg.Record) -> _Attempt:
        mail_id = row["mail_id"]
        email = _Email(self._mailer, lambda: self._mail_email(row))
        return _Attempt(
            key=("mails", mail_id),
            channel="email",
            provider="smtp",
            names={"mail_id": str(mail_id), "kind": row["kind"], "channel": "email", "provider": "smtp"},
            attempts=row["attempts"],
            correlation_id=row["correlation_id"],
            send=email.send,
            record=lambda conn, exc, reason, out_of_attempts, seconds: store.record_mail_failure(
                conn,
                mail_id,
                reason,
                permanent=exc.permanent,
                out_of_attempts=out_of_attempts,
                keep_trying_seconds=self._keep_trying("email"),
                retry_in_seconds=seconds,
            ),
            secret=row["secret"],
            open=email.open,
            abandon=email.abandon,
        )

    async def _send_push(self, row: asyncpg.Record, push: Callable[[], Awaitable[object]] | None) -> None:
        """The delivery's push (``push``: as prepared before its slot; else prepared now)."""
        try:
            await (push or self._push_sender(row))()
        except ValueError as exc:
            # A URL that cannot be put in a message: no retry will change that.
            raise DeliveryFailed(True, f"cannot build the message: {exc}") from exc

    async def _mail_email(self, row: asyncpg.Record) -> EmailMessage:
        """A one-off mail's message; DeliveryFailed (permanent) once its code or link has expired."""
        expires_at = datetime.fromisoformat(row["context"]["expires_at"])
        if expires_at <= datetime.now(UTC):
            raise DeliveryFailed(True, "the code or link expired before the mail could be sent")
        return self._one_off_email(row)

    async def _delivery_email(self, row: asyncpg.Record) -> EmailMessage | OutgoingMail:
        """The email of a delivery of any kind (notices.py), with its one-click unsubscribe headers."""
        if self._unsubscribe_key is None:
            async with self._pool.acquire() as conn:
                self._unsubscribe_key = await message_store.unsubscribe_key(conn)
        kind = row["kind"]
        target: unsubscribe.Target = "digest" if kind == "digest" else CATEGORY[kind]
        headers = unsubscribe.headers(
            self._settings.public_api_url, self._unsubscribe_key, row["person_id"], target
        )
        return delivery_email(
            row, self._zone(row), self._settings.public_base_url, self._settings.mail_from, headers
        )

    def _zone(self, row: asyncpg.Record) -> ZoneInfo:
        return local_zone(row["time_zone"], self._settings.default_time_zone)

    def _one_off_email(self, row: asyncpg.Record) -> EmailMessage:
        return one_off_email(
            row["kind"],
            row["mail_id"],
            row["locale"],
            row["to_email"],
            row["display_name"],
            row["context"],
            row["secret"],
            local_zone(row["time_zone"], self._settings.default_time_zone),
            self._settings.public_base_url,
            self._settings.mail_from,
        )

    def _push_sender(self, row: asyncpg.Record) -> Callable[[], Awaitable[object]]:
        """The send of one push to the delivery's device, by its kind, with what it needs made now.
        Every repeat of a delivery carries the same idempotency key: the notification ``tag``
        (post-<post id>) the apps show one notification for, also as FCM's collapse key and APNs'
        apns-collapse-id, and the Web Push Topic."""
        device = row["device"]
        if device is None:
            raise DeliveryFailed(True, "the device was removed", gone=True)
        payload, topic = delivery_push(row, self._zone(row), self._settings.public_base_url)
        kind = device.get("kind", "webpush")
        # A channel whose settings were removed since the device registered: held (retried with
        # back-off) rather than dropped, so configuring it again delivers.
        if kind == "fcm":
            if self._fcm is None:
                raise DeliveryFailed(False, "FCM is not configured (FCM_CREDENTIALS)")
            return functools.partial(self._fcm.send, device["token"], payload, payload["tag"])
        if kind == "apns":
            if self._apns is None:
                raise DeliveryFailed(False, "APNs is not configured (APNS_KEY...)")
            return functools.partial(self._apns.send, device["token"], payload, payload["tag"])
        if self._push is None:
            raise DeliveryFailed(False, "Web Push is not configured (VAPID keys)")
        subscription = {
            "endpoint": device["endpoint"],
            "keys": {"p256dh": device["p256dh"], "auth": device["auth"]},
        }
        return functools.partial(self._push.post, self._push.prepare(subscription, payload, topic=topic))

    def _push_moves(self) -> None:
        self._push_moved_at = asyncio.get_running_loop().time()

    def _push_finished(self) -> None:
        """A push is done (sent and recorded, or cancelled): wake the emails that waited for it."""
        self._push_done += 1
        self._push_moves()
        while self._push_waiters and self._push_waiters[0][0] <= self._push_done:
            _, waiter = self._push_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _after_pushes(self) -> None:
        """Wait while pushes queued before now are not done and are moving, at most PUSH_FIRST_SECONDS.
        Woken when they are done, or every PUSH_MOVING_SECONDS to see whether they still move (not
        at every push: a class's 16 waiting emails woken by each of 28 pushes cost ~10 ms of CPU)."""
        ahead = self._push_tickets
        if self._push_done >= ahead:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUSH_FIRST_SECONDS
        waiter: asyncio.Future[None] = loop.create_future()
        self._push_waiters.append((ahead, waiter))
        while not waiter.done() and not self._stopping:
            now = loop.time()
            if now >= deadline or now - self._push_moved_at > PUSH_MOVING_SECONDS:
                return
            await asyncio.wait({waiter}, timeout=min(deadline - now, PUSH_MOVING_SECONDS))

    async def _acquire(self, attempt: _Attempt, service: "_Service | None") -> None:
        """The attempt's send slots. An email's: its provider's, once the pushes queued before it are
        done and its envelope is open (``_Attempt.open``). A push's (counted from now until done:
        ``_run`` counts it out once sent): its push service's, its provider's, then one of the pushes
        in flight, always in that order."""
        provider, prepare = attempt.provider, attempt.prepare
        if provider not in PUSH_PROVIDERS:
            await self._after_pushes()
            if attempt.open is not None and attempt.notification_id not in self._cancelled:
                await attempt.open()
            await self._slots[provider].acquire()
            return
        self._push_tickets += 1
        taken: list[asyncio.Semaphore] = []
        try:
            slots = [self._slots[provider], self._push_in_flight]
            if prepare is not None and (
                any(s.locked() for s in slots) or (service is not None and service.slots.locked())
            ):
                # It waits anyway: prepared now, one push per turn of the loop, so that the answers
                # to the sends in flight are read in between rather than after all the preparing.
                async with self._preparing:
                    prepare()
                    await asyncio.sleep(0)
            elif prepare is not None:
                prepare()
            if service is not None:
                service.waiting += 1
                try:
                    await service.slots.acquire()
                finally:
                    service.waiting -= 1
                taken.append(service.slots)
                service.moved_at = asyncio.get_running_loop().time()
            for slot in slots:
                await slot.acquire()
                taken.append(slot)
        except BaseException:
            for slot in taken:
                slot.release()
            self._push_finished()  # cancelled while queued
            raise
        self._push_moves()

    def _release(self, attempt: _Attempt, service: "_Service | None") -> None:
        self._slots[attempt.provider].release()
        if attempt.provider not in PUSH_PROVIDERS:
            return
        self._push_in_flight.release()
        if service is not None:
            service.slots.release()
            service.moved_at = asyncio.get_running_loop().time()
        self._push_finished()

    def _service(self, attempt: _Attempt) -> "_Service | None":
        """The push service's slots the attempt takes, kept while some attempt uses them."""
        if attempt.service is None:
            return None
        service = self._services.get(attempt.service)
        if service is None:
            service = _Service(attempt.service, attempt.provider, self._service_limit)
            self._services[attempt.service] = service
        service.users += 1
        return service

    def _leave(self, service: "_Service") -> None:
        service.users -= 1
        if not service.users:
            del self._services[service.name]

    async def _run(self, attempt: _Attempt) -> None:
        service = self._service(attempt)
        try:
            await self._send_in_turn(attempt, service)
        finally:
            if service is not None:
                self._leave(service)

    async def _send_in_turn(self, attempt: _Attempt, service: "_Service | None") -> None:
        try:
            await self._turn(attempt, service)
        finally:
            if attempt.abandon is not None:
                # An envelope opened and not sent (cancelled or not started): dropped, its connection back.
                await attempt.abandon()

    async def _turn(self, attempt: _Attempt, service: "_Service | None") -> None:
        try:
            await self._acquire(attempt, service)
        except asyncio.CancelledError:
            # Cancelled while queued: at a stop it stays held (release() hands it back); otherwise
            # (the drain failed) it is let go, so no heartbeat renews it and its lease runs out.
            if not self._stopping:
                self._held.pop(attempt.key, None)
            raise
        try:
            if self._stopping:
                return  # not started: still held, handed back by release()
            try:
                if not self._may_start(attempt.key):
                    # The lease ran out (a stalled worker) or another worker took the row: leave it.
                    log.warning("delivery lease lost, not sent", extra=attempt.names)
                    return
                if attempt.notification_id in self._cancelled:
                    # Its post was deleted after the claim: the row is no longer pending, nothing to record.
                    log.debug("delivery cancelled, not sent", extra=attempt.names)
                    return
                if attempt.device_id in self._removed:
                    await self._record_failure(attempt, DeliveryFailed(True, "the device was removed"))
                    return
                await self._attempt(attempt)
            finally:
                self._held.pop(attempt.key, None)
        finally:
            self._release(attempt, service)

    async def _attempt(self, attempt: _Attempt) -> None:
        # Each attempt runs in its own task: this sets the id of the request that caused it for its logs only.
        correlation_id.set(attempt.correlation_id)
        try:
            await attempt.send()
        except DeliveryFailed as exc:
            await self._record_failure(attempt, exc)
            return
        except Exception as exc:
            # A bug or an unexpected answer: retried like a passing failure, so nothing is silently dropped.
            # Logged by hand rather than with exc_info, so that a secret in a message can be redacted.
            error = attempt.redact(repr(exc))
            trace = attempt.redact("".join(traceback.format_exception(exc)))
            log.error("delivery error", extra={**attempt.names, "error": error, "traceback": trace})
            await self._record_failure(attempt, DeliveryFailed(False, error))
            return
        # Recorded before the slot is given back: the next send starts only once this one is stored.
        # Shielded: a stop while this runs still records what the server already accepted.
        await self._recorder.sent(*attempt.key)
        self.provider_sent[attempt.provider] += 1
        log.debug("delivered", extra=attempt.names)

    async def _record_failure(self, attempt: _Attempt, exc: DeliveryFailed) -> None:
        reason = attempt.redact(exc.reason)
        facts = {**attempt.names, "reason": reason, "attempt": attempt.attempts}
        # Email that failed for the server's sake (unreachable, timeout, TLS or auth, 4xx) keeps
        # being tried as an MTA would: pauses capped at a few minutes, given up on after hours.
        cap = self._settings.delivery_email_max_backoff_seconds if attempt.channel == "email" else 3600.0
        seconds = backoff_seconds(attempt.attempts, exc.retry_after, cap)
        out_of_attempts = attempt.attempts >= self._settings.delivery_max_attempts
        # One statement, not a transaction: a worker paused inside one would hold the row's lock.
        async with self._pool.acquire() as conn:
            status = await attempt.record(conn, exc, reason, out_of_attempts, seconds)
        if status == "failed":
            self.failures[attempt.channel] += 1
            self.provider_failures[attempt.provider] += 1
            log.warning("delivery failed", extra=facts)
        elif status == "pending":
            self.retries[attempt.channel] += 1
            self.provider_retries[attempt.provider] += 1
            log.warning("delivery attempt failed, retrying", extra={**facts, "retry_in_seconds": seconds})
        else:
            log.warning("delivery attempt failed; no longer pending (cancelled meanwhile)", extra=facts)

    def _keep_trying(self, channel: str) -> float | None:
        """Seconds a failing email keeps being tried since it was due; None: attempts alone decide."""
        return self._settings.delivery_email_retry_hours * 3600 if channel == "email" else None


async def _raise(exc: Exception) -> None:
    raise exc


class _Email:
    """One email in two phases (mailer.Mailer): ``open()`` builds it and sends its envelope (MAIL FROM,
    RCPT TO) while it waits for a send slot, ``send()`` (under the slot) delivers it: DATA and the final
    dot, which alone makes the relay take it (RFC 5321 §4.1.1.4). So the send slots, the most a crash
    can repeat, are held only for the part that can be repeated; the envelopes' round trips overlap the
    mails in flight (up to ``smtp_max_connections`` connections per process). What ``open()`` raised
    (the relay refused, the message could not be built) is raised by ``send()`` and recorded there."""

    def __init__(self, mailer: Mailer, build: Callable[[], Awaitable[EmailMessage | OutgoingMail]]) -> None:
        self._mailer = mailer
        self._build = build
        self._envelope: Envelope | None = None
        self._failure: Exception | None = None

    async def open(self) -> None:
        try:
            self._envelope = await self._open()
        except Exception as exc:
            self._failure = exc

    async def send(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure
        envelope, self._envelope = self._envelope, None
        if envelope is None:  # not opened beforehand (its post was deleted meanwhile)
            envelope = await self._open()
        await envelope.deliver()

    async def abandon(self) -> None:
        envelope, self._envelope = self._envelope, None
        if envelope is not None:
            await envelope.abandon()

    async def _open(self) -> Envelope:
        try:
            return await self._mailer.open(await self._build())
        except ValueError as exc:
            # An address that cannot be put in a message: no retry will change that.
            raise DeliveryFailed(True, f"cannot build the message: {exc}") from exc


def _push_service(row: asyncpg.Record) -> str | None:
    """The push service a delivery's push goes to: a Web Push endpoint's origin (RFC 6454: scheme,
    host, port), else its provider."""
    device = row["device"]
    if device is None:
        return None
    if device.get("kind", "webpush") != "webpush":
        return str(row["provider"])
    endpoint = urlsplit(device["endpoint"])
    return f"{endpoint.scheme}://{endpoint.netloc}".lower()


class _Service:
    """One push service's send slots, and what shows it stuck: sends wait, none moved lately."""

    def __init__(self, name: str, provider: str, limit: int) -> None:
        self.name = name  # the origin, "fcm" or "apns"
        self.provider = provider
        self.slots = asyncio.Semaphore(limit)
        self.waiting = 0  # sends waiting for one of its slots
        self.users = 0  # sends waiting for any slot or in flight: forgotten at none
        self.moved_at = asyncio.get_running_loop().time()  # a send of it last started or finished

    def stuck(self, now: float) -> bool:
        return self.waiting > 0 and self.slots.locked() and now - self.moved_at > STUCK_SECONDS


@dataclass(frozen=True)
class _Lease:
    attempts: int  # the attempt number the claim gave the row: renewals name it
    until: float  # loop time the lease runs out at, as this worker last made sure of it
