"""Numbered SQL migrations, applied at start-up once each, in a transaction, under an advisory lock.

Files are named ``NNN_description.sql`` in the service's ``migrations/`` folder. Replicas starting
together serialise on the lock; the second one finds everything applied and does nothing.
"""

import hashlib
import logging
import re
from importlib import resources
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# One constant for every service: each has its own database, so there is no contention between them.
_LOCK_KEY = 7_240_001


def migration_files(folder: Path) -> list[tuple[int, str, str]]:
    found: list[tuple[int, str, str]] = []
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path.name, path.read_text()))
        elif path.suffix == ".sql":
            raise ValueError(f"migration file {path.name} does not match NNN_name.sql")
    numbers = [n for n, _, _ in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"duplicate migration numbers in {folder}")
    return found


def package_migrations(package: str) -> Path:
    return Path(str(resources.files(package) / "migrations"))


SHARED_MIGRATIONS = Path(__file__).parent / "schema"


async def migrate(conn: asyncpg.Connection, folder: Path) -> list[str]:
    """Apply the shared tables (outbox, inbox, ...) and then the service's own migrations.

    Returns the names applied now. Each set is numbered on its own, kept apart by its scope.
    """
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                 scope text NOT NULL,
                 number int NOT NULL,
                 name text NOT NULL,
                 checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (scope, number))"""
        )
        rows = await conn.fetch("SELECT scope, number, checksum FROM schema_migrations")
        done = {(r["scope"], r["number"]): r["checksum"] for r in rows}
        for scope, path in (("shared", SHARED_MIGRATIONS), ("service", folder)):
            for number, name, sql in migration_files(path):
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if (scope, number) in done:
                    if done[(scope, number)] != checksum:
                        raise RuntimeError(f"migration {scope}/{name} was changed after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (scope, number, name, checksum) VALUES ($1, $2, $3, $4)",
                        scope,
                        number,
                        name,
                        checksum,
                    )
                log.info("applied migration", extra={"migration": f"{scope}/{name}"})
                applied_now.append(f"{scope}/{name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
