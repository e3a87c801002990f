"""Each test session's own databases, RabbitMQ vhost and S3 buckets on the real servers.

Servers and credentials come from KLASPOST_TEST_* variables (scripts/test exports them); the
defaults are the servers scripts/infra-up starts on this machine.
"""

import asyncio
import os
import re
import secrets
import socket
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import asyncpg
import boto3
from botocore.config import Config
from mypy_boto3_s3 import S3Client

TEST_PREFIX = "klaspost_test_"
_SAFE_NAME = re.compile(r"[a-z0-9_]+")


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _admin_database_url() -> str:
    return _env("KLASPOST_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _broker_url() -> str:
    return _env("KLASPOST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _rabbit_api() -> str:
    return _env("KLASPOST_TEST_RABBIT_API", "http://guest:guest@127.0.0.1:15672/api").rstrip("/")


def _with_path(url: str, name: str) -> str:
    return urlsplit(url)._replace(path="/" + quote(name, safe="")).geturl()


def _test_name(url: str) -> str:
    name = unquote(urlsplit(url).path.lstrip("/"))
    # A guard, because these helpers drop things: never touch a database or vhost we did not make.
    if not name.startswith(TEST_PREFIX):
        raise ValueError(f"{name!r} is not a test database or vhost")
    return name


async def create_database(prefix: str) -> str:
    """Creates an empty database `klaspost_test_<prefix>_<random>` and returns its DSN."""
    if not _SAFE_NAME.fullmatch(prefix):
        raise ValueError(f"database prefix {prefix!r} must match [a-z0-9_]+")
    name = f"{TEST_PREFIX}{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(_admin_database_url())
    try:
        # A database name cannot be a query parameter; it is built from the checked prefix only.
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_path(_admin_database_url(), name)


async def drop_database(dsn: str) -> None:
    name = _test_name(dsn)
    conn = await asyncpg.connect(_admin_database_url())
    try:
        # FORCE: a pool a failed test left open must not keep the database alive.
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def create_vhost() -> str:
    """Creates vhost `klaspost_test_<random>` with full rights for the AMQP user; returns its AMQP URL."""
    vhost = f"{TEST_PREFIX}{secrets.token_hex(4)}"
    user = urlsplit(_broker_url()).username or "guest"
    api = _rabbit_api()
    rights = {"configure": ".*", "write": ".*", "read": ".*"}
    async with aiohttp.ClientSession(raise_for_status=True) as http:
        async with http.put(f"{api}/vhosts/{vhost}", json={}):
            pass
        async with http.put(f"{api}/permissions/{vhost}/{quote(user, safe='')}", json=rights):
            pass
    return _with_path(_broker_url(), vhost)


async def delete_vhost(amqp_url: str) -> None:
    vhost = _test_name(amqp_url)
    async with aiohttp.ClientSession() as http, http.delete(f"{_rabbit_api()}/vhosts/{vhost}") as resp:
        if resp.status not in (204, 404):
            resp.raise_for_status()


async def close_all_broker_connections(amqp_url: str) -> None:
    """The broker fault switch: the broker closes every connection to the vhost of `amqp_url`.

    Scoped to the vhost because `rabbitmqctl close_all_connections` without --vhost closes only
    those of "/", and with --global it would also cut other test sessions on the same broker.
    """
    vhost = _test_name(amqp_url)
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        "close_all_connections",
        "--vhost",
        vhost,
        "test",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"rabbitmqctl close_all_connections failed: {stderr.decode().strip()}")


def s3_test_config() -> dict[str, str]:
    """The S3 store's settings, keyed as the media service's settings fields."""
    return {
        "s3_endpoint_url": _env("KLASPOST_TEST_S3_ENDPOINT", "http://127.0.0.1:18080"),
        "s3_access_key": _env("KLASPOST_TEST_S3_ACCESS_KEY", "test:tester"),
        "s3_secret_key": _env("KLASPOST_TEST_S3_SECRET_KEY", "testing"),
        # Swift's s3api refuses any other region.
        "s3_region": _env("KLASPOST_TEST_S3_REGION", "us-east-1"),
    }


def s3_client() -> S3Client:
    config = s3_test_config()
    return boto3.client(
        "s3",
        endpoint_url=config["s3_endpoint_url"],
        aws_access_key_id=config["s3_access_key"],
        aws_secret_access_key=config["s3_secret_key"],
        region_name=config["s3_region"],
        # Path style: bucket names are not DNS names on 127.0.0.1.
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def random_bucket_name(kind: str) -> str:
    if not re.fullmatch(r"[a-z0-9]+", kind):
        raise ValueError(f"bucket kind {kind!r} must match [a-z0-9]+")
    return f"klaspost-test-{kind}-{secrets.token_hex(4)}"


def create_bucket(name: str) -> None:
    s3_client().create_bucket(Bucket=name)


def delete_bucket(name: str) -> None:
    """Empties and deletes a bucket; one that is already gone is fine."""
    s3 = s3_client()
    try:
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        # One by one: Swift 2.30 rejects the CRC32 checksum boto3 sends with DeleteObjects.
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.NoSuchBucket:
        pass


def free_port() -> int:
    """A port free right now on 127.0.0.1, for servers that cannot bind port 0 themselves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
