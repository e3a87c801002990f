"""Schemathesis, run against each service of the whole system, finds no request on which server and
OpenAPI document disagree: no 500, no undocumented status, header or content type, no answer off its
schema, nothing the schema refuses that the server takes, and (where the schema can say it all)
nothing the schema allows that the server refuses.

The CLI runs in a subprocess against the real servers, which keep serving on this test's event loop
while it runs. Examples, coverage, fuzzing and stateful phases; a fixed seed so a run is repeatable
(set SCHEMATHESIS_SEED to explore others).
"""

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.app import POOL
from shared.testing.images import png_bytes
from tests.harness.school import make_class, upload_photo
from tests.harness.system import OPERATOR_KEY, System

MAX_EXAMPLES = 25
# Identity has five times the operations of the others: fewer examples each keeps its run as short.
EXAMPLES = {"identity": 8}
# A loaded machine may need longer: SCHEMATHESIS_SECONDS (and pytest --timeout) give it more.
RUN_SECONDS = int(os.environ.get("SCHEMATHESIS_SECONDS", "110"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261201")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
]


@dataclass
class Target:
    """How to reach past 401 and 404: credentials and path ids that exist."""

    headers: dict[str, str]
    path_ids: dict[str, str]
    # Operations whose schema cannot say everything the server checks: (method, path) -> why.
    beyond_schema: dict[tuple[str, str], str] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def targets(system: System) -> dict[str, Target]:
    school, group, teacher, parent = await make_class(system, "Groep 8")
    photo = await upload_photo(system, teacher, png_bytes(32, 24), "image/png", group_id=group)
    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "Schoolreis!"},
    )
    assert status == 201, post
    status, helper_list = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/helper-lists",
        teacher.token,
        json={
            "title": "Schoolreis",
            "deadline": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
            "items": [{"title": "Rijden", "capacity": 4}],
        },
    )
    assert status == 201, helper_list
    status, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    assert status == 200, key
    subscription = system.push.subscribe(key["application_server_key"])
    status, device = await system.call(
        "POST", "notifier", "/devices", parent.token, json={"subscription": subscription}
    )
    assert status == 201, device

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return {
        "identity": Target(
            {**bearer(school.admin.token), "X-Operator-Key": OPERATOR_KEY},
            {"school_id": str(school.school_id), "group_id": str(group), "person_id": str(parent.person_id)},
            {
                ("POST", "/schools"): "a password on the common-password list is refused",
                ("POST", "/access-codes/redeem"): "only codes the school handed out are taken",
                ("POST", "/schools/{school_id}/imports"): "the bytes must be a class list that can be read",
                ("POST", "/schools/{school_id}/groups"): "the school year must be one the school has",
                ("POST", "/schools/{school_id}/school-years"): "ends_on after starts_on, at most 400 days on",
            },
        ),
        "posts": Target(
            bearer(teacher.token),
            {
                "group_id": str(group),
                "post_id": post["post_id"],
                "list_id": helper_list["list_id"],
                "item_id": helper_list["items"][0]["item_id"],
            },
            {
                ("POST", "/groups/{group_id}/helper-lists"): "the deadline must lie ahead, within the school "
                "year and before the activity's day; item titles must differ",
                ("POST", "/groups/{group_id}/posts"): "photo_ids and attachment_ids must be the writer's own "
                "uploads for the group",
                (
                    "PATCH",
                    "/posts/{post_id}",
                ): "photo_ids and attachment_ids must be the writer's own uploads for the group",
            },
        ),
        "media": Target(
            bearer(teacher.token),
            {"group_id": str(group), "photo_id": photo["photo_id"]},
            {
                ("POST", "/groups/{group_id}/photos"): "the bytes must be a JPEG, PNG or WebP image",
                ("PUT", "/photos/{photo_id}/children"): "child_ids must be children of the photo's school",
                ("POST", "/groups/{group_id}/attachments"): "the bytes must be a plain PDF",
            },
        ),
        "notifier": Target(
            bearer(parent.token),
            # No device_id: the stateful phase deletes the devices it registers (an app token is valid
            # by the schema alone) and a configured id would outlive its deletion (ST302).
            {},
            {
                ("POST", "/devices"): "the push services allowed are the deployment's choice",
                ("PUT", "/preferences"): "quiet hours must end at another time than they start",
            },
        ),
    }


def config(target: Target) -> str:
    """schemathesis.toml for one service (TOML strings written as JSON strings, which they accept).

    The checks are chosen here, not with --checks: a check named on the command line would override
    an operation's own setting.
    """
    lines = ["[checks]", "enabled = false", *(f"{check}.enabled = true" for check in CHECKS), ""]
    lines += ["[parameters]"]
    lines += [
        f"{json.dumps('path.' + name)} = {json.dumps(value)}" for name, value in target.path_ids.items()
    ]
    for (method, path), why in target.beyond_schema.items():
        lines += [
            "",
            f"# {why}",
            "[[operations]]",
            f"include-method = {json.dumps(method)}",
            f"include-path = {json.dumps(path)}",
            "checks.positive_data_acceptance.enabled = false",
        ]
    return "\n".join(lines) + "\n"


async def run_schemathesis(system: System, service: str, target: Target, workdir: Path) -> tuple[int, str]:
    """Schemathesis's exit code and output for one service."""
    (workdir / "schemathesis.toml").write_text(config(target))
    headers = [arg for name, value in target.headers.items() for arg in ("-H", f"{name}: {value}")]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(workdir / "schemathesis.toml"),
        "--no-color",
        "run",
        system.url(service, "/openapi.json"),
        *headers,
        "--max-examples",
        str(EXAMPLES.get(service, MAX_EXAMPLES)),
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=RUN_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"schemathesis did not finish within {RUN_SECONDS} s") from None
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def opaque_cursors(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Operations paged with ``?cursor=``: only cursors the list handed out are taken."""
    return {
        (method.upper(), path): "cursors are opaque: only those handed out are taken"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if any(p["in"] == "query" and p["name"] == "cursor" for p in op.get("parameters", []))
    }


def findings(output: str) -> str:
    """The failures and the summary, without the progress lines before them."""
    start = output.find("= FAILURES =")
    return output[start:] if start >= 0 else output[-3000:]


SERVICES = ["identity", "posts", "media", "notifier"]

# Conference operations whose schema cannot say all the server checks.
CONFERENCES_BEYOND_SCHEMA = {
    ("POST", "/conferences"): "the groups must be the caller's; windows, deadlines and ranges must agree",
    ("POST", "/conferences/{schedule_id}/bookings"): "a slot is booked once, a child once, in the window",
    (
        "PUT",
        "/conference-bookings/{booking_id}/slot",
    ): "the slot must be a free one of the booking's schedule",
}


@pytest.fixture(scope="module")
async def conference_ids(system: System, targets: dict[str, Target]) -> dict[str, str]:
    """A conference schedule of the posts target's group, a booking the teacher made on a family's
    behalf and the token of the teacher's calendar feed: ids that reach past 404. Not the feed's id:
    the stateful phase revokes the feeds it makes, and a configured id would outlive its revocation."""
    posts = targets["posts"]
    token = posts.headers["Authorization"].removeprefix("Bearer ")
    times = (
        await system.services["posts"]
        .app[POOL]
        .fetchrow(
            """SELECT to_char(now() AT TIME ZONE 'UTC' + interval '10 days', 'YYYY-MM-DD') AS day,
                  to_char(now() AT TIME ZONE 'UTC' - interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS opens,
                  to_char(now() AT TIME ZONE 'UTC' + interval '5 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS closes,
                  (SELECT children[1]::text FROM memberships
                   WHERE group_id = $1::uuid AND role = 'guardian' AND active LIMIT 1) AS child""",
            posts.path_ids["group_id"],
        )
    )
    body = {
        "group_ids": [posts.path_ids["group_id"]],
        "title": "Tienminutengesprekken",
        "days": [{"date": times["day"], "ranges": [{"start": "15:00", "end": "17:00"}]}],
        "slot_minutes": 10,
        "opens_at": times["opens"],
        "closes_at": times["closes"],
        "change_deadline": times["closes"],
    }
    status, schedule = await system.call("POST", "posts", "/conferences", token, json=body)
    assert status == 201, schedule
    status, booking = await system.call(
        "POST",
        "posts",
        f"/conferences/{schedule['schedule_id']}/bookings",
        token,
        json={"slot_id": schedule["slots"][0]["slot_id"], "child_id": times["child"]},
    )
    assert status == 201, booking
    status, feed = await system.call("POST", "posts", "/calendar-feeds", token)
    assert status == 201, feed
    return {
        "schedule_id": schedule["schedule_id"],
        "booking_id": booking["booking_id"],
        "token": feed["token"],
    }


@pytest.mark.parametrize("service", SERVICES)
async def test_schemathesis_finds_no_mismatch_between_server_and_document(
    system: System, targets: dict[str, Target], service: str, tmp_path: Path, conference_ids: dict[str, str]
) -> None:
    status, document = await system.call("GET", service, "/openapi.json")
    assert status == 200, document
    target = targets[service]
    target = replace(target, beyond_schema={**target.beyond_schema, **opaque_cursors(document)})
    if service == "posts":
        target = replace(
            target,
            path_ids={**target.path_ids, **conference_ids},
            beyond_schema={**target.beyond_schema, **CONFERENCES_BEYOND_SCHEMA},
        )
    code, output = await run_schemathesis(system, service, target, tmp_path)
    assert code == 0, findings(output)
