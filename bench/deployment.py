"""The system as deployed, for the benches: each service in a process of its own, started as its
``python -m <service>`` starts it (``shared.service.run``), on fresh databases, a fresh RabbitMQ
vhost and fresh S3 buckets, with the production delays (not the test harness's short ones) and
logging at INFO to /dev/null (the log lines are made and written, as in production).

    async with deployed(settings={"notifier": {...}}, replicas={"notifier": 2}) as system:
        status, body = await system.call("GET", "notifier", "/push/vapid-public-key")
        await system.pools["notifier"].fetchval(...)

Everything is removed again afterwards. Used by bench/year_switch.py and bench/fanout.py.
"""

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from identity.tokens import generate_signing_key_pem
from notifier.vapid import generate_vapid_keys
from shared.db import create_pool
from shared.testing.infra import (
    create_bucket,
    create_database,
    create_vhost,
    delete_bucket,
    delete_vhost,
    drop_database,
    free_port,
    random_bucket_name,
    s3_test_config,
)
from shared.testing.smtp import SmtpSink

SERVICES = ("identity", "posts", "media", "notifier")
OPERATOR_KEY = "bench-operator-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent
PYTHONPATH = os.pathsep.join(
    str(ROOT / p) for p in (".", "services/identity", "services/posts", "services/media", "services/notifier")
)
# A service process: its settings from BENCH_SETTINGS, run as its __main__ runs it.
SERVICE_MAIN = """
import importlib, json, os, sys
from shared.service import run
name = sys.argv[1]
settings = importlib.import_module(name + ".settings").Settings
run(importlib.import_module(name + ".app").spec(), settings.model_validate(json.loads(os.environ["BENCH_SETTINGS"])))
"""


@dataclass
class Deployment:
    amqp_url: str
    pools: dict[str, asyncpg.Pool]
    # Each service's settings as given to its (first) process, and its base URL.
    settings: dict[str, dict[str, Any]]
    urls: dict[str, str]
    # The process ids of each service's processes (replicas), e.g. for py-spy.
    pids: dict[str, list[int]] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None

    async def call(
        self, method: str, service: str, path: str, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """(status, JSON body or bytes) of a request to the service's first process."""
        assert self.http is not None
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = self.urls[service] + path
        async with self.http.request(method, url, headers=headers, **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()


@contextlib.asynccontextmanager
async def deployed(
    *,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    replicas: Mapping[str, int] | None = None,
    smtp: tuple[str, int] | None = None,
    logs: Path | None = None,
) -> AsyncIterator[Deployment]:
    """The four services, each in its own process(es). ``settings``: per service, settings on top of
    the bench's; ``replicas``: processes per service (default 1; each its own HTTP port, the same
    database and queues, as replicas behind a load balancer); ``smtp``: the relay the notifier sends
    to (default: a strict SmtpSink on a thread of this process); ``logs``: a folder for each process's
    log lines (default /dev/null)."""
    async with contextlib.AsyncExitStack() as stack:
        amqp_url = await create_vhost()
        stack.push_async_callback(delete_vhost, amqp_url)
        if smtp is None:
            sink = SmtpSink()
            sink.start()
            stack.callback(sink.stop)
            smtp = (sink.host, sink.port)
        buckets = [random_bucket_name("originals"), random_bucket_name("variants")]
        for bucket in buckets:
            await asyncio.to_thread(create_bucket, bucket)
            stack.push_async_callback(asyncio.to_thread, delete_bucket, bucket)
        databases = {}
        for name in SERVICES:
            databases[name] = await create_database(f"bench_{name}")
            stack.push_async_callback(drop_database, databases[name])
        ports = {name: free_port() for name in SERVICES}
        jwks_url = f"http://127.0.0.1:{ports['identity']}/.well-known/jwks.json"
        vapid_private, vapid_public = generate_vapid_keys()
        common = {"amqp_url": amqp_url}
        given: dict[str, dict[str, Any]] = {
            "identity": {"token_signing_key": generate_signing_key_pem(), "operator_api_key": OPERATOR_KEY},
            "posts": {"jwks_url": jwks_url},
            "media": {
                "jwks_url": jwks_url,
                "s3_bucket_originals": buckets[0],
                "s3_bucket_variants": buckets[1],
                **s3_test_config(),
            },
            "notifier": {
                "jwks_url": jwks_url,
                "smtp_host": smtp[0],
                "smtp_port": smtp[1],
                "vapid_private_key": vapid_private,
                "vapid_public_key": vapid_public,
                "vapid_subject": "mailto:beheer@klaspost.nl",
                "public_base_url": "http://klaspost.test",
                "operator_api_key": OPERATOR_KEY,
            },
        }
        for name, extra in (settings or {}).items():
            given[name] |= extra
        for name in SERVICES:
            given[name] = {"http_port": ports[name], "database_url": databases[name], **common, **given[name]}
        system = Deployment(
            amqp_url, {}, given, {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES}
        )
        for name in SERVICES:
            system.pids[name] = []
            for replica in range((replicas or {}).get(name, 1)):
                port = ports[name] if replica == 0 else free_port()
                log = logs / f"{name}-{replica}.log" if logs else None
                process = await start_service(name, {**given[name], "http_port": port}, stack, log)
                system.pids[name].append(process.pid)
        for name in SERVICES:
            system.pools[name] = await create_pool(databases[name], size=2)
            stack.push_async_callback(system.pools[name].close)
        system.http = await stack.enter_async_context(aiohttp.ClientSession())
        yield system


async def start_service(
    name: str, settings: dict[str, Any], stack: contextlib.AsyncExitStack, log: Path | None = None
) -> asyncio.subprocess.Process:
    """One process of the service, ready (its /readyz answers 200); stopped when the stack closes.
    One after the other: identity first, whose keys the others fetch. A start can fail when the
    shared PostgreSQL has no connection to spare (other test runs): it is tried again."""
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "BENCH_SETTINGS": json.dumps(settings)}
    out = stack.enter_context(log.open("ab")) if log else asyncio.subprocess.DEVNULL
    for attempt in range(10):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVICE_MAIN, name, env=env, stdout=out
        )
        stack.push_async_callback(stop_process, process)
        if await until_ready(f"http://127.0.0.1:{settings['http_port']}/readyz", process):
            return process
        print(f"{name} did not start (attempt {attempt + 1}); trying again", flush=True)
        await asyncio.sleep(5)
    raise RuntimeError(f"{name} did not start")


async def until_ready(url: str, process: asyncio.subprocess.Process) -> bool:
    """Whether the service at ``url`` became ready; False when its process exited first."""
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if process.returncode is not None:
                return False
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return True
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} not ready within 60 s")


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
