"""`python -m identity.republish`: copies in posts, media and the notifier that lost (or never had) a
school's rows get them back from identity's current state, with the new fields (GroupChanged's
school-year dates); running it again changes nothing."""

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from identity.republish import republish
from shared.app import POOL
from tests.harness.school import make_class
from tests.harness.system import System, eventually

ROOT = Path(__file__).resolve().parents[3]


def pool(system: System, service: str) -> asyncpg.Pool:
    return system.services[service].app[POOL]


async def posts_copy(system: System, school_id: uuid.UUID) -> dict[str, Any]:
    """What posts holds of the school: its policy, staff, groups (with dates) and memberships."""
    posts = pool(system, "posts")
    return {
        "school": [
            tuple(r)
            for r in await posts.fetch(
                "SELECT time_zone, max_posts_per_day, min_posts_per_week, revision FROM schools WHERE school_id = $1",
                school_id,
            )
        ],
        "staff": sorted(
            tuple(r)
            for r in await posts.fetch("SELECT person_id, roles FROM staff WHERE school_id = $1", school_id)
        ),
        "groups": sorted(
            tuple(r)
            for r in await posts.fetch(
                "SELECT group_id, name, school_year, year_starts_on, year_ends_on, revision FROM groups WHERE school_id = $1",
                school_id,
            )
        ),
        "memberships": sorted(
            tuple(r)
            for r in await posts.fetch(
                """SELECT m.group_id, m.person_id, m.role, m.active, m.revision, m.children FROM memberships m
               JOIN groups g USING (group_id) WHERE g.school_id = $1""",
                school_id,
            )
        ),
    }


async def forget_school_in_posts(system: System, school_id: uuid.UUID, group_ids: list[uuid.UUID]) -> None:
    """As if posts had had no consumer when identity published the school."""
    posts = pool(system, "posts")
    await posts.execute("DELETE FROM memberships WHERE group_id = ANY($1)", group_ids)
    await posts.execute("DELETE FROM groups WHERE school_id = $1", school_id)
    await posts.execute("DELETE FROM staff WHERE school_id = $1", school_id)
    await posts.execute("DELETE FROM schools WHERE school_id = $1", school_id)


async def test_republishing_a_school_refills_the_copies_and_again_changes_nothing(system: System) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 6")
    before = await posts_copy(system, school.school_id)
    assert before["groups"][0][3:5] != (None, None)  # identity sends the school year's dates
    assert len(before["memberships"]) == 2

    await forget_school_in_posts(system, school.school_id, [group])
    # The notifier lost the teacher's address too.
    await pool(system, "notifier").execute("DELETE FROM people WHERE person_id = $1", teacher.person_id)

    counts = await republish(pool(system, "identity"), school.school_id)
    assert counts["identity.school_changed"] == 1
    assert counts["identity.group_changed"] == 1
    assert counts["identity.membership_granted"] == 2
    assert counts["identity.staff_changed"] == 2  # the admin and the teacher
    assert counts["identity.account_changed"] == 3
    assert counts["identity.child_changed"] == 1

    async def refilled() -> bool:
        now = await posts_copy(system, school.school_id)
        # Staff take new revisions (none stored): compare their roles, the rest exactly.
        return {**now, "staff": None} == {**before, "staff": None} and len(now["staff"]) == 2

    await eventually(refilled, what="posts' copy of the school refilled")

    async def mailable() -> bool:
        email = await pool(system, "notifier").fetchval(
            "SELECT email FROM people WHERE person_id = $1", teacher.person_id
        )
        return bool(email == teacher.email)

    await eventually(mailable, what="the notifier's copy of the teacher's account refilled")

    # Again: nothing changes (equal revisions are not applied again; staff roles stay the same).
    counts = await republish(pool(system, "identity"), school.school_id)
    assert sum(counts.values()) == 10
    await asyncio.sleep(0.5)
    after = await posts_copy(system, school.school_id)
    assert {**after, "staff": None} == {**before, "staff": None}
    assert [s[1] for s in after["staff"]] == [s[1] for s in before["staff"]]
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Weer terug", "body": "Alles werkt weer."},
    )
    assert status == 201, body
    del parent


async def test_the_command_republishes_one_school_or_refuses_an_unknown_one(system: System) -> None:
    school, group, _teacher, _parent = await make_class(system, "Groep 7")
    await pool(system, "posts").execute(
        "UPDATE groups SET year_starts_on = NULL, year_ends_on = NULL WHERE group_id = $1", group
    )
    env = {
        **os.environ,
        "DATABASE_URL": system.services["identity"].database_url,
        "PYTHONPATH": f"{ROOT}:{ROOT / 'services' / 'identity'}",
    }

    async def run(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "identity.republish",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, out, err = await run("--school", str(school.school_id))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["published"]["identity.group_changed"] == 1
    assert summary["total"] == sum(summary["published"].values())

    async def dated() -> bool:
        row = await pool(system, "posts").fetchrow(
            "SELECT year_starts_on, year_ends_on FROM groups WHERE group_id = $1", group
        )
        return row is not None and row["year_starts_on"] is not None

    # The copy's row holds this revision already, without the dates: the same revision with them fills it.
    await eventually(dated, what="the group's school-year dates filled in posts' copy")

    code, out, err = await run("--school", str(uuid.uuid4()))
    assert code == 2
    assert "no school" in err
