"""Login, tokens and password resets against identity alone, on its own database and RabbitMQ vhost.

Clients are told apart as behind a reverse proxy: the test's "proxy" connects from 127.0.0.2 (the
only trusted proxy) and names the client in X-Forwarded-For; direct requests come from 127.0.0.1.
"""

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
from aiohttp import web

from identity.app import spec
from identity.login import refresh, store
from identity.login.api import DEVICE_COOKIE, RESET_ANSWER_SECONDS
from identity.login.throttle import DelayedChecks, LoginAttempt, LoginRules, SoftLimit
from identity.passwords import hash_password
from identity.settings import Settings
from identity.tokens import generate_signing_key_pem
from shared.app import POOL, create_app
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port

PASSWORD = "paarse olifant op de fiets"
NEW_PASSWORD = "een heel nieuw wachtwoord"
PROXY = "127.0.0.2"
_numbers = itertools.count(1)


@dataclass
class Answer:
    status: int
    body: Any
    headers: "aiohttp.typedefs.LooseHeaders"
    device: str | None

    @property
    def retry_after(self) -> int:
        return int(self.headers["Retry-After"])  # type: ignore[index]


@dataclass
class Identity:
    url: str
    runner: web.AppRunner
    settings: Settings
    direct: aiohttp.ClientSession
    proxied: aiohttp.ClientSession
    password_hash: str

    @property
    def pool(self) -> asyncpg.Pool:
        return self.runner.app[POOL]

    async def call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        client: str | None = None,
        device: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """POST ``body``; from ``client`` (an IP address, through the proxy) or else directly."""
        sent = dict(headers or {})
        if client is not None:
            sent["X-Forwarded-For"] = client
        if device is not None:
            sent["Cookie"] = f"{DEVICE_COOKIE}={device}"
        session = self.proxied if client is not None else self.direct
        async with session.post(self.url + path, json=body, headers=sent) as response:
            content = await response.json() if response.content_type == "application/json" else None
            cookie = response.cookies.get(DEVICE_COOKIE)
            return Answer(response.status, content, response.headers, cookie.value if cookie else None)

    async def login(self, email: str, password: str = PASSWORD, **how: Any) -> Answer:
        return await self.call("/auth/login", {"email": email, "password": password}, **how)

    async def account(self, name: str = "ouder") -> str:
        """A new account with PASSWORD; returns its address."""
        email = f"{name}{next(_numbers)}-{uuid.uuid4().hex[:6]}@lichtstraat.nl"
        await self.pool.execute(
            "INSERT INTO accounts (person_id, email, display_name, password_hash) VALUES ($1, $2, $3, $4)",
            uuid.uuid4(),
            email,
            name,
            self.password_hash,
        )
        return email


@pytest.fixture(scope="module")
async def identity() -> AsyncIterator[Identity]:
    amqp_url, database_url = await create_vhost(), await create_database("identity_login")
    settings = Settings.model_validate(
        {
            "http_port": free_port(),
            "database_url": database_url,
            "amqp_url": amqp_url,
            "token_signing_key": generate_signing_key_pem(),
            "trusted_proxies": [f"{PROXY}/32"],
            "outbox_sweep_seconds": 0.5,
        }
    )
    runner = web.AppRunner(create_app(spec(), settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
    direct = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    proxied = aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(local_addr=(PROXY, 0))
    )
    try:
        yield Identity(
            f"http://127.0.0.1:{settings.http_port}",
            runner,
            settings,
            direct,
            proxied,
            await hash_password(PASSWORD),
        )
    finally:
        await direct.close()
        await proxied.close()
        await runner.cleanup()
        await drop_database(database_url)
        await delete_vhost(amqp_url)


def a_client() -> str:
    """A fresh client IP address (TEST-NET-2)."""
    n = next(_numbers)
    return f"198.51.{n // 250}.{n % 250 + 1}"


def throttled(answer: Answer) -> int:
    """The Retry-After of a 429 in the one error shape."""
    assert answer.status == 429, (answer.status, answer.body)
    assert answer.body["error"]["code"] == "too_many_requests"
    assert answer.retry_after >= 1, answer.headers
    return answer.retry_after


# Throttling: the guesser is held back, the owner is not.


async def test_the_owners_right_password_works_from_their_device_while_a_stranger_guesses(
    identity: Identity,
) -> None:
    owner = await identity.account()
    home = a_client()
    first = await identity.login(owner, client=home)
    assert first.status == 200, first.body
    assert first.device is not None

    # One stranger's 50 guesses in a row: 5 are checked, then one each time a doubling delay (1 s,
    # 2 s, 4 s, ...) has passed, which in the few seconds this takes is a handful at most.
    stranger = a_client()
    first_strangers = [await identity.login(owner, f"gok {n}", client=stranger) for n in range(50)]
    assert [a.status for a in first_strangers[:5]] == [401] * 5
    assert sum(a.status == 401 for a in first_strangers[5:]) <= 5
    for answer in first_strangers[5:]:
        if answer.status != 401:
            throttled(answer)
    assert (await identity.login(owner, client=home, device=first.device)).status == 200

    # 150 wrong passwords from 30 other addresses: past the address's soft limit (100), after which
    # they are answered later, not refused; each stranger's own pair still holds it to a handful.
    strangers = [a_client() for _ in range(30)]
    answers = await asyncio.gather(
        *(identity.login(owner, f"gok {n}", client=strangers[n % 30]) for n in range(150))
    )
    assert {a.status for a in answers} <= {401, 429}
    checked = sum(a.status == 401 for a in answers) + sum(a.status == 401 for a in first_strangers)
    assert checked >= identity.settings.login_address_soft_limit

    assert (await identity.login(owner, client=home, device=first.device)).status == 200
    # Also from a new address (the owner on the road): the device is what is known.
    assert (await identity.login(owner, client=a_client(), device=first.device)).status == 200
    # And the owner's usual address, without the cookie, is known too (the pair's success history).
    assert (await identity.login(owner, client=home)).status == 200


async def seed_failures(identity: Identity, key: str, count: int, ago: float = 0.0) -> None:
    """``count`` failed attempts under ``key`` ``ago`` seconds ago, as many requests would have left them."""
    await identity.pool.execute(
        """INSERT INTO login_failures (key, failed_at)
           SELECT $1, clock_timestamp() - $3::float8 * interval '1 second' FROM generate_series(1, $2)""",
        key,
        count,
        ago,
    )


async def timed(answer: Awaitable[Answer]) -> tuple[Answer, float]:
    """The answer to a request and the seconds it took."""
    clock = asyncio.get_running_loop().time
    started = clock()
    got = await answer
    return got, clock() - started


async def test_past_the_soft_limit_an_unknown_client_is_answered_later_never_refused(
    identity: Identity,
) -> None:
    owner = await identity.account()
    device = (await identity.login(owner, client=a_client())).device
    delay = LoginRules.from_settings(identity.settings).address.delay
    await seed_failures(identity, f"address:{owner}", identity.settings.login_address_soft_limit)

    wrong, took = await timed(identity.login(owner, "nog een gok", client=a_client()))
    assert wrong.status == 401
    assert took >= delay
    # The owner on a new device and address waits as long, and gets in.
    right, took = await timed(identity.login(owner, client=a_client()))
    assert right.status == 200, right.body
    assert took >= delay
    # The owner's known device is not held back at all.
    known, took = await timed(identity.login(owner, client=a_client(), device=device))
    assert known.status == 200
    assert took < delay


async def test_strangers_spraying_wrong_passwords_cannot_lock_the_owner_out_of_a_new_device(
    identity: Identity,
) -> None:
    """105 wrong passwords from as many addresses, and one more every 50 ms while the owner, on a new
    device and a new address, logs in: the owner gets in (the soft limit per address was a slot the
    strangers kept taking: 429 for as long as they kept at it)."""
    owner = await identity.account()
    answers = await asyncio.gather(
        *(identity.login(owner, f"gok {n}", client=a_client()) for n in range(105))
    )
    assert {a.status for a in answers} == {401}
    spraying = True

    async def spray() -> list[Answer]:
        sprayed = []
        while spraying:
            sprayed.append(asyncio.ensure_future(identity.login(owner, "nog een gok", client=a_client())))
            await asyncio.sleep(0.05)
        return list(await asyncio.gather(*sprayed))

    sprayer = asyncio.create_task(spray())
    await asyncio.sleep(1)
    owners, took = await timed(identity.login(owner, client=a_client()))
    spraying = False
    sprayed = await sprayer
    assert owners.status == 200, owners.body
    assert took < 15
    assert len(sprayed) >= 20
    assert {a.status for a in sprayed} == {401}


async def test_delayed_checks_of_one_address_are_let_through_a_few_at_a_time_and_forgotten() -> None:
    rule = SoftLimit(limit=1, window=60, delay=0.2, concurrent=2)
    checks = DelayedChecks()
    running = 0
    most = 0

    async def check(email: str) -> None:
        nonlocal running, most
        attempt = LoginAttempt(email=email, ip="192.0.2.1", device=None, pair_key="", ids=[], delayed=True)
        async with checks.turn(rule, attempt):
            running += 1
            most = max(most, running)
            await asyncio.sleep(0)
            running -= 1

    clock = asyncio.get_running_loop().time
    started = clock()
    await asyncio.gather(*(check("a@lichtstraat.nl") for _ in range(6)), check("b@lichtstraat.nl"))
    # Six for one address, two at a time, each after the delay: three rounds; the other address
    # waits in no one's line.
    assert clock() - started == pytest.approx(3 * rule.delay, abs=0.15)
    assert most <= 3
    assert checks._lines == {}


async def test_one_client_guessing_one_address_waits_longer_after_each_failure(identity: Identity) -> None:
    owner = await identity.account()
    stranger = a_client()
    for n in range(5):
        assert (await identity.login(owner, f"gok {n}", client=stranger)).status == 401
    assert throttled(await identity.login(owner, "gok 5", client=stranger)) == 1
    # Even the right password waits: the guesser must not learn it is right.
    assert throttled(await identity.login(owner, client=stranger)) == 1
    await asyncio.sleep(1.05)
    assert (await identity.login(owner, "gok 6", client=stranger)).status == 401
    assert throttled(await identity.login(owner, "gok 7", client=stranger)) == 2
    await asyncio.sleep(2.05)
    assert (await identity.login(owner, "gok 8", client=stranger)).status == 401
    assert throttled(await identity.login(owner, "gok 9", client=stranger)) == 4

    # Meanwhile the owner's own address is another pair.
    assert (await identity.login(owner, client=a_client())).status == 200


async def test_guesses_sent_at_once_are_counted_before_any_password_is_checked(identity: Identity) -> None:
    owner = await identity.account()
    stranger = a_client()
    answers = await asyncio.gather(*(identity.login(owner, f"gok {n}", client=stranger) for n in range(20)))
    assert [a.status for a in answers].count(401) == 5
    for answer in answers:
        if answer.status != 401:
            throttled(answer)


async def test_a_stranger_behind_the_owners_nat_address_cannot_slow_the_owners_device(
    identity: Identity,
) -> None:
    owner = await identity.account()
    school = a_client()
    device = (await identity.login(owner, client=school)).device
    # Someone else at the school guessed the owner's password eight times.
    await seed_failures(identity, f"pair:{owner} ip:{school}", 8)
    throttled(await identity.login(owner, "gok", client=school))

    assert (await identity.login(owner, client=school, device=device)).status == 200


async def test_an_invented_device_cookie_does_not_reset_the_count(identity: Identity) -> None:
    owner = await identity.account()
    stranger = a_client()
    for n in range(5):
        await identity.login(owner, f"gok {n}", client=stranger)
    throttled(await identity.login(owner, "gok", client=stranger, device="A" * 43))


async def test_a_schools_nat_address_is_not_locked_for_everyone(identity: Identity) -> None:
    """A morning at school: 400 failures from its one address already, then 30 more parents who each
    mistype once and log in."""
    school = a_client()
    await seed_failures(identity, f"ip:{school}", 400)
    parents = [await identity.account() for _ in range(30)]
    answers = await asyncio.gather(*(identity.login(p, "tikfout", client=school) for p in parents))
    assert {a.status for a in answers} == {401}
    answers = await asyncio.gather(*(identity.login(p, client=school) for p in parents))
    assert {a.status for a in answers} == {200}


async def test_past_the_limit_of_a_client_address_only_clients_unknown_to_the_account_wait(
    identity: Identity,
) -> None:
    school = a_client()
    regular = await identity.account()
    device = (await identity.login(regular, client=school)).device
    newcomer = await identity.account()
    # Someone at the school tried many addresses: past the limit per client address.
    await seed_failures(identity, f"ip:{school}", identity.settings.login_client_limit)
    wait = throttled(await identity.login(newcomer, client=school))
    assert (
        identity.settings.login_client_window_seconds - 5
        <= wait
        <= identity.settings.login_client_window_seconds
    )

    assert (await identity.login(regular, client=school, device=device)).status == 200
    assert (await identity.login(regular, client=school)).status == 200


async def test_an_ipv6_client_is_counted_as_its_64(identity: Identity) -> None:
    owner = await identity.account()
    home = f"2001:db8:{next(_numbers):x}:7"
    for n in range(5):
        assert (await identity.login(owner, f"gok {n}", client=f"{home}::{n + 1:x}")).status == 401
    # Another address in the same /64 is the same guesser: its pair waits.
    throttled(await identity.login(owner, "gok", client=f"{home}:ffff::99"))
    # And past the limit per client, every address of the /64 waits, for any account.
    await seed_failures(identity, f"ip:{home}::/64", identity.settings.login_client_limit)
    throttled(await identity.login(await identity.account(), client=f"{home}::abcd"))


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(identity: Identity) -> None:
    owner = await identity.account()
    # Sent directly (not through the proxy), the header is the client's own word: ignored, so every
    # guess counts for 127.0.0.1 whatever address it names.
    for n in range(5):
        headers = {"X-Forwarded-For": a_client()}
        assert (await identity.login(owner, f"gok {n}", headers=headers)).status == 401
    throttled(await identity.login(owner, "gok", headers={"X-Forwarded-For": a_client()}))
    # Through the trusted proxy, the client it names is a pair of its own.
    assert (await identity.login(owner, "gok", client=a_client())).status == 401
    # A client-written address left of the proxy's is not believed either.
    guesser = a_client()
    for n in range(5):
        await identity.login(owner, f"gok {n}", client=f"{a_client()}, {guesser}")
    throttled(await identity.login(owner, "gok", client=f"{a_client()}, {guesser}"))


async def test_an_unknown_address_answers_like_a_wrong_password(identity: Identity) -> None:
    owner = await identity.account()
    wrong = await identity.login(owner, "verkeerd wachtwoord", client=a_client())
    unknown = await identity.login(f"niemand-{uuid.uuid4().hex[:6]}@lichtstraat.nl", client=a_client())
    assert (wrong.status, wrong.body) == (unknown.status, unknown.body) == (401, wrong.body)


# Refresh tokens.


async def logged_in(identity: Identity, email: str | None = None) -> tuple[str, dict[str, Any]]:
    email = email or await identity.account()
    answer = await identity.login(email, client=a_client())
    assert answer.status == 200, answer.body
    return email, answer.body


async def refreshed(identity: Identity, token: str) -> Answer:
    return await identity.call("/auth/refresh", {"refresh_token": token})


async def test_login_returns_an_access_token_and_a_refresh_token(identity: Identity) -> None:
    _, tokens = await logged_in(identity)
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_expires_in"] == pytest.approx(identity.settings.refresh_idle_days * 86_400, abs=60)
    async with identity.direct.get(
        identity.url + "/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ) as me:
        assert me.status == 200


async def test_a_refresh_token_is_traded_once_for_new_tokens(identity: Identity) -> None:
    _, tokens = await logged_in(identity)
    first = await refreshed(identity, tokens["refresh_token"])
    assert first.status == 200, first.body
    assert first.body["refresh_token"] != tokens["refresh_token"]
    assert first.body["access_token"] != tokens["access_token"]
    second = await refreshed(identity, first.body["refresh_token"])
    assert second.status == 200, second.body


async def test_a_used_refresh_token_that_comes_back_ends_its_whole_family(identity: Identity) -> None:
    email, tokens = await logged_in(identity)
    _, other_login = await logged_in(identity, email)
    stolen = tokens["refresh_token"]
    owners = await refreshed(identity, stolen)
    owners = await refreshed(identity, owners.body["refresh_token"])

    reused = await refreshed(identity, stolen)
    assert reused.status == 401, reused.body
    assert reused.headers["WWW-Authenticate"] == "Bearer"  # type: ignore[index]
    # The owner's current token, refreshed from the same login, stops working too.
    assert (await refreshed(identity, owners.body["refresh_token"])).status == 401
    # Another login of the same account is another family.
    assert (await refreshed(identity, other_login["refresh_token"])).status == 200


async def test_refresh_tokens_sent_twice_at_once_get_one_answer_and_end_the_family(
    identity: Identity,
) -> None:
    _, tokens = await logged_in(identity)
    answers = await asyncio.gather(*(refreshed(identity, tokens["refresh_token"]) for _ in range(2)))
    assert sorted(a.status for a in answers) == [200, 401]
    [ok] = [a for a in answers if a.status == 200]
    assert (await refreshed(identity, ok.body["refresh_token"])).status == 401


async def test_logout_ends_the_family(identity: Identity) -> None:
    _, tokens = await logged_in(identity)
    later = await refreshed(identity, tokens["refresh_token"])
    out = await identity.call("/auth/logout", {"refresh_token": tokens["refresh_token"]})
    assert out.status == 204
    assert (await refreshed(identity, later.body["refresh_token"])).status == 401
    # Logging out again, or with a token we never made, is no error.
    assert (await identity.call("/auth/logout", {"refresh_token": tokens["refresh_token"]})).status == 204
    assert (await identity.call("/auth/logout", {"refresh_token": "x" * 43})).status == 204


async def test_an_unknown_or_expired_refresh_token_is_refused(identity: Identity) -> None:
    assert (await refreshed(identity, "y" * 43)).status == 401
    _, tokens = await logged_in(identity)
    await identity.pool.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    assert (await refreshed(identity, tokens["refresh_token"])).status == 401


async def test_a_disabled_account_cannot_refresh(identity: Identity) -> None:
    email, tokens = await logged_in(identity)
    await identity.pool.execute("UPDATE accounts SET disabled = true WHERE email = $1", email)
    assert (await refreshed(identity, tokens["refresh_token"])).status == 401


# Password resets.


@pytest.fixture
async def reset_mails(identity: Identity) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """The PasswordResetRequested events identity publishes from now on, as the notifier gets them."""
    connection = await aio_pika.connect(identity.settings.amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        identity.settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "identity.password_reset_requested")
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            await received.put(json.loads(message.body)["payload"])

    await queue.consume(on_message)
    try:
        yield received
    finally:
        await connection.close()


async def ask_reset(identity: Identity, email: str, client: str | None = None) -> Answer:
    return await identity.call("/auth/password-reset", {"email": email}, client=client or a_client())


async def set_password(identity: Identity, token: str, password: str = NEW_PASSWORD) -> Answer:
    return await identity.call("/auth/password", {"token": token, "password": password}, client=a_client())


async def test_a_reset_answers_the_same_for_an_unknown_address(
    identity: Identity, reset_mails: asyncio.Queue[dict[str, Any]]
) -> None:
    email = await identity.account()
    clock = asyncio.get_running_loop().time
    started = clock()
    known = await ask_reset(identity, email)
    known_took, started = clock() - started, clock()
    unknown = await ask_reset(identity, f"niemand-{uuid.uuid4().hex[:6]}@lichtstraat.nl")
    unknown_took = clock() - started
    assert (known.status, known.body) == (unknown.status, unknown.body)
    assert known.status == 202
    # Both wait out the same floor, which is longer than making the mail takes.
    assert known_took >= RESET_ANSWER_SECONDS
    assert unknown_took >= RESET_ANSWER_SECONDS
    assert abs(known_took - unknown_took) < RESET_ANSWER_SECONDS / 2
    mail = await asyncio.wait_for(reset_mails.get(), 10)
    assert mail["purpose"] == "reset"
    await asyncio.sleep(1)
    assert reset_mails.empty(), "a mail for the unknown address"


async def test_a_reset_link_sets_the_password_once_and_ends_every_login(
    identity: Identity, reset_mails: asyncio.Queue[dict[str, Any]]
) -> None:
    email, tokens = await logged_in(identity)
    assert (await ask_reset(identity, email)).status == 202
    mail = await asyncio.wait_for(reset_mails.get(), 10)
    assert mail["email"] == email

    answer = await set_password(identity, mail["reset_token"])
    assert answer.status == 200, answer.body
    assert (await refreshed(identity, answer.body["refresh_token"])).status == 200
    # The logins from before the reset are over; the old password is no more.
    assert (await refreshed(identity, tokens["refresh_token"])).status == 401
    assert (await identity.login(email, client=a_client())).status == 401
    assert (await identity.login(email, NEW_PASSWORD, client=a_client())).status == 200
    # The link worked once.
    assert (await set_password(identity, mail["reset_token"], "nog een ander wachtwoord")).status == 401


async def test_an_expired_reset_link_is_refused(
    identity: Identity, reset_mails: asyncio.Queue[dict[str, Any]]
) -> None:
    email = await identity.account()
    await ask_reset(identity, email)
    mail = await asyncio.wait_for(reset_mails.get(), 10)
    await identity.pool.execute(
        "UPDATE password_resets SET expires_at = now() - interval '1 second' WHERE reset_id = $1",
        uuid.UUID(mail["request_id"]),
    )
    answer = await set_password(identity, mail["reset_token"])
    assert answer.status == 401, answer.body
    assert (await identity.login(email, client=a_client())).status == 200


async def test_resets_are_throttled_per_address_and_per_client(identity: Identity) -> None:
    email = await identity.account()
    for _ in range(identity.settings.reset_limit_per_address):
        assert (await ask_reset(identity, email)).status == 202
    assert throttled(await ask_reset(identity, email)) > 3_000
    # The same for an address without an account: the limit tells nothing.
    nobody = f"niemand-{uuid.uuid4().hex[:6]}@lichtstraat.nl"
    for _ in range(identity.settings.reset_limit_per_address):
        assert (await ask_reset(identity, nobody)).status == 202
    throttled(await ask_reset(identity, nobody))

    client = a_client()
    for _ in range(identity.settings.reset_limit_per_client):
        assert (await ask_reset(identity, f"x{uuid.uuid4().hex[:8]}@lichtstraat.nl", client)).status == 202
    throttled(await ask_reset(identity, f"x{uuid.uuid4().hex[:8]}@lichtstraat.nl", client))


async def test_a_client_that_set_the_password_from_a_link_is_known_as_after_a_login(
    identity: Identity, reset_mails: asyncio.Queue[dict[str, Any]]
) -> None:
    """A parent who only ever used a welcome or reset link: its device and address are not held
    back by strangers' failures at its address or its client address."""
    email = await identity.account()
    await ask_reset(identity, email)
    mail = await asyncio.wait_for(reset_mails.get(), 10)
    home = a_client()
    answer = await identity.call(
        "/auth/password", {"token": mail["reset_token"], "password": NEW_PASSWORD}, client=home
    )
    assert answer.status == 200, answer.body
    assert answer.device is not None

    await seed_failures(identity, f"address:{email}", identity.settings.login_address_soft_limit)
    await seed_failures(identity, f"ip:{home}", identity.settings.login_client_limit)
    delay = LoginRules.from_settings(identity.settings).address.delay
    by_device, took = await timed(
        identity.login(email, NEW_PASSWORD, client=a_client(), device=answer.device)
    )
    assert by_device.status == 200, by_device.body
    assert took < delay
    by_address, took = await timed(identity.login(email, NEW_PASSWORD, client=home))
    assert by_address.status == 200, by_address.body
    assert took < delay


async def test_setting_a_password_with_guessed_links_is_throttled(identity: Identity) -> None:
    client = a_client()
    for n in range(identity.settings.set_password_limit_per_client):
        guess = {"token": f"geraden{n:03d}" + "z" * 30, "password": NEW_PASSWORD}
        assert (await identity.call("/auth/password", guess, client=client)).status == 401
    guess = {"token": "geraden" + "q" * 30, "password": NEW_PASSWORD}
    throttled(await identity.call("/auth/password", guess, client=client))


# Housekeeping.


async def test_housekeeping_forgets_old_attempts_and_ended_logins_only(identity: Identity) -> None:
    email, ended = await logged_in(identity)
    _, live = await logged_in(identity, email)
    await identity.call("/auth/logout", {"refresh_token": ended["refresh_token"]})
    await identity.pool.execute(
        "UPDATE refresh_families SET revoked_at = now() - interval '31 days' WHERE revoked_at IS NOT NULL"
    )
    key = f"pair:{email} ip:{a_client()}"
    await seed_failures(identity, key, 3, ago=identity.settings.login_pair_window_seconds + 1)
    await seed_failures(identity, key, 2)

    async with identity.pool.acquire() as conn:
        await store.forget_old(conn, LoginRules.from_settings(identity.settings).longest_window, 90)
        await refresh.forget_ended(conn, refresh.Lifetime.from_settings(identity.settings))

    assert await identity.pool.fetchval("SELECT count(*) FROM login_failures WHERE key = $1", key) == 2
    assert (await refreshed(identity, ended["refresh_token"])).status == 401
    assert (await refreshed(identity, live["refresh_token"])).status == 200
