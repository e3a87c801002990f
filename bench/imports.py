"""Class-list import of a 2,000-pupil export next to raw asyncpg writing the same rows, in one run.

Ours: POST /schools/{id}/imports through identity's HTTP API (running in this process, on its own
database), timed from the upload until GET /imports/{id} says done: a dry run, an apply (children,
placements and guardianships in one transaction, memberships derived), and the same file applied
again (nothing to write). Raw: asyncpg alone writes the same children, placements and guardianships
for another school of the same database in one transaction, with COPY and with executemany.

Each round uses a fresh school, ours and raw interleaved so the machine's drift hits both alike; the
table shows medians and the median of each round's own ratio. The database and vhost are removed
afterwards, even on error.

    cd /work/main && PYTHONPATH=.:services/identity .venv/bin/python bench/imports.py [--pupils N] [--rounds R]
        [--launched]
"""

import argparse
import asyncio
import io
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from aiohttp import web

from identity.app import spec
from identity.emails import normalise_email
from identity.settings import Settings
from identity.tokens import generate_signing_key_pem
from shared.app import create_app
from shared.testing.class_lists import GROUPS, Pupil, class_list, pupils
from shared.testing.infra import create_database, create_vhost, delete_vhost, drop_database, free_port

OPERATOR_KEY = "operator-bench-key-0123456789abcdef"
PASSWORD = "correct horse battery staple"
YEAR = "2026-2027"


class Api:
    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as response:
            body = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {body}")
            return body


async def new_school(api: Api, launch: bool = False) -> tuple[uuid.UUID, str, dict[str, uuid.UUID]]:
    admin = f"admin.{uuid.uuid4().hex[:8]}@school.example.nl"
    body = await api.call(
        "POST",
        "/schools",
        headers={"X-Operator-Key": OPERATOR_KEY},
        json={"name": "Bench", "admin": {"email": admin, "display_name": "Directie", "password": PASSWORD}},
    )
    school_id = uuid.UUID(body["school_id"])
    token = (await api.call("POST", "/auth/login", json={"email": admin, "password": PASSWORD}))[
        "access_token"
    ]
    await api.call("POST", f"/schools/{school_id}/school-years", token, json={"name": YEAR})
    groups = {}
    for name in GROUPS:
        group = await api.call(
            "POST", f"/schools/{school_id}/groups", token, json={"name": name, "school_year": YEAR}
        )
        groups[name] = uuid.UUID(group["group_id"])
    if launch:
        await api.call("POST", f"/schools/{school_id}/invitations", token)
    return school_id, token, groups


async def timed_import(
    api: Api, school_id: uuid.UUID, token: str, data: bytes, **params: str
) -> tuple[float, Any]:
    """Seconds from the upload until the job is done, and the job."""
    started = time.perf_counter()
    job = await api.call(
        "POST",
        f"/schools/{school_id}/imports",
        token,
        data=io.BytesIO(data),
        params=params,
        headers={"Content-Type": "text/csv"},
    )
    upload = time.perf_counter() - started
    while job["status"] not in ("done", "failed"):
        await asyncio.sleep(0.05)
        job = await api.call("GET", f"/imports/{job['import_id']}", token)
    elapsed = (
        upload
        + (
            datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
        ).total_seconds()
    )
    if job["status"] != "done":
        raise RuntimeError(f"import failed: {job['failure']} {job['errors'][:3]}")
    return elapsed, job


def raw_rows(
    people: list[Pupil], school_id: uuid.UUID, groups: dict[str, uuid.UUID], year_id: uuid.UUID
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    children, placements, guardianships = [], [], []
    for p in people:
        child_id = uuid.uuid4()
        children.append(
            (
                child_id,
                school_id,
                p.number,
                p.given,
                p.tussenvoegsel,
                p.family,
                p.born,
                p.consent.lower() == "ja",
            )
        )
        placements.append((child_id, year_id, groups[p.group]))
        for email in (p.email_1, p.email_2):
            if email:
                guardianships.append((uuid.uuid4(), child_id, school_id, normalise_email(email), ""))
    return children, placements, guardianships


_CHILD_COLUMNS = [
    "child_id",
    "school_id",
    "external_id",
    "given_name",
    "tussenvoegsel",
    "family_name",
    "date_of_birth",
    "photo_consent",
]
_GUARDIAN_COLUMNS = ["guardianship_id", "child_id", "school_id", "email", "display_name"]


async def raw_copy(conn: asyncpg.Connection, rows: tuple[list[Any], list[Any], list[Any]]) -> None:
    children, placements, guardianships = rows
    async with conn.transaction():
        await conn.copy_records_to_table("children", records=children, columns=_CHILD_COLUMNS)
        await conn.copy_records_to_table(
            "placements", records=placements, columns=["child_id", "school_year_id", "group_id"]
        )
        await conn.copy_records_to_table("guardianships", records=guardianships, columns=_GUARDIAN_COLUMNS)


async def raw_executemany(conn: asyncpg.Connection, rows: tuple[list[Any], list[Any], list[Any]]) -> None:
    children, placements, guardianships = rows
    async with conn.transaction():
        await conn.executemany(
            """INSERT INTO children (child_id, school_id, external_id, given_name, tussenvoegsel, family_name,
                                     date_of_birth, photo_consent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            children,
        )
        await conn.executemany(
            "INSERT INTO placements (child_id, school_year_id, group_id) VALUES ($1, $2, $3)", placements
        )
        await conn.executemany(
            """INSERT INTO guardianships (guardianship_id, child_id, school_id, email, display_name)
               VALUES ($1, $2, $3, $4, $5)""",
            guardianships,
        )


async def raw_timed(
    api: Api, conn: asyncpg.Connection, people: list[Pupil], write: Callable[..., Awaitable[None]]
) -> float:
    """Seconds for raw asyncpg to write the same rows for a fresh school (its set-up not timed; the
    emails are checked beforehand, as the import checks them, but not timed either)."""
    school_id, _, groups = await new_school(api)
    year_id = await conn.fetchval("SELECT school_year_id FROM school_years WHERE school_id = $1", school_id)
    rows = raw_rows(people, school_id, groups, year_id)
    started = time.perf_counter()
    await write(conn, rows)
    return time.perf_counter() - started


async def main(count: int, rounds: int, launched: bool = False) -> None:
    amqp_url, database_url = await create_vhost(), await create_database("identity")
    settings = Settings.model_validate(
        {
            "http_port": free_port(),
            "database_url": database_url,
            "token_signing_key": generate_signing_key_pem(),
            "operator_api_key": OPERATOR_KEY,
            "amqp_url": amqp_url,
            "log_level": "ERROR",
        }
    )
    # Events go to a queue that keeps none of them (as if the notifier took them at once): unroutable
    # events would keep the relay retrying in this process and slow what is measured.
    broker = await aio_pika.connect_robust(amqp_url)
    channel = await broker.channel()
    exchange = await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    sink = await channel.declare_queue("bench-sink", arguments={"x-max-length": 0})
    await sink.bind(exchange, routing_key="#")
    runner = web.AppRunner(create_app(spec(), settings), access_log=None)
    people = pupils(count, seed=2000)
    data = class_list(people).render(";", "utf-8-sig")
    figures: dict[str, list[float]] = {}
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.http_port).start()
        conn = await asyncpg.connect(database_url)
        async with aiohttp.ClientSession() as http:
            api = Api(f"http://127.0.0.1:{settings.http_port}", http)
            for round_no in range(rounds):
                school_id, token, _ = await new_school(api, launch=launched)
                dry, _ = await timed_import(api, school_id, token, data)
                apply, job = await timed_import(api, school_id, token, data, dry_run="false")
                again, second = await timed_import(api, school_id, token, data, dry_run="false")
                assert job["counts"]["created"] == count
                assert second["counts"]["unchanged"] == count
                copy = await raw_timed(api, conn, people, raw_copy)
                many = await raw_timed(api, conn, people, raw_executemany)
                for name, value in (
                    ("dry", dry),
                    ("apply", apply),
                    ("again", again),
                    ("copy", copy),
                    ("many", many),
                ):
                    figures.setdefault(name, []).append(value)
                figures.setdefault("apply/copy", []).append(copy / apply)
                figures.setdefault("apply/many", []).append(many / apply)
                print(
                    f"round {round_no + 1}: dry {dry:.2f} s, apply {apply:.2f} s, again {again:.2f} s, "
                    f"raw COPY {copy:.3f} s, raw executemany {many:.3f} s",
                    flush=True,
                )
        await conn.close()
    finally:
        await runner.cleanup()
        await broker.close()
        await drop_database(database_url)
        await delete_vhost(amqp_url)

    def rate(name: str) -> str:
        return f"{count / statistics.median(figures[name]):,.0f}"

    print(
        f"\n{count} pupils, {rounds} rounds{', school inviting' if launched else ''}, medians (rows/s; ratio = median of each round's ours/raw)\n"
    )
    print("| figure | ours | raw | ratio |\n| --- | --: | --: | --: |")
    print(f"| dry run: upload to plan done (rows/s) | {rate('dry')} | | |")
    print(
        f"| apply / raw COPY in one transaction (rows/s) | {rate('apply')} | {rate('copy')} | {statistics.median(figures['apply/copy']):.3f} |"
    )
    print(
        f"| apply / raw executemany in one transaction (rows/s) | {rate('apply')} | {rate('many')} | {statistics.median(figures['apply/many']):.3f} |"
    )
    print(f"| the same file again: all unchanged (rows/s) | {rate('again')} | | |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--launched",
        action="store_true",
        help="the school invites already: the apply also issues a code per guardian",
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.pupils, arguments.rounds, arguments.launched))
