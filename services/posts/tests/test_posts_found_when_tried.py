"""Posts, found when tried as a new user would (issue 6): what broke, held to the fix.

- A feed cursor edited to a time no instant can hold (year 1 east of UTC, year 9999 west of it) was a
  500 in the parent's feed and the teacher's view; it is a 422 like any cursor the feed did not hand out.
- The posting report's "most posts on one day" counted sign-up posts (a helper-parent list, a
  conference schedule), which seed rule 5's posts per day leave out: a week that kept the rule read
  as one that broke it.
- A parent's like sent twice at once (a double tap) could answer ``liked: true`` with a count of 0: the
  like that waited for the other read the count from before it; likewise an unlike answered a count
  that still held the like it waited to see removed.
"""

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.harness.school import make_class
from tests.harness.system import System


def forged_cursor(published_at: str) -> str:
    raw = f'{{"published_at":"{published_at}","post_id":"{uuid.uuid4()}"}}'
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("published_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_a_cursor_at_a_time_no_instant_can_hold_is_refused_not_a_500(
    system: System, published_at: str
) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 1")
    cursor = forged_cursor(published_at)
    for path, person in (
        (f"/feed?cursor={cursor}", parent),
        (f"/groups/{group}/posts?cursor={cursor}", teacher),
    ):
        status, body = await system.call("GET", "posts", path, person.token)
        assert status == 422, (path, body)
        assert body["error"]["details"][0]["field"] == "cursor"


def a_helper_list() -> dict[str, Any]:
    return {
        "title": "Excursie",
        "description": "We zoeken ouders die rijden.",
        "deadline": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "items": [{"title": "Rijden", "capacity": 2}],
    }


async def test_the_reports_most_posts_on_one_day_counts_as_the_posts_per_day_do(system: System) -> None:
    school, group, teacher, _parent = await make_class(system, "Groep 2")
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/posts", teacher.token, json={"title": "Gym", "body": "Morgen gym."}
    )
    assert status == 201, body
    # A helper-parent list the same day is allowed (it does not count against the posts per day) ...
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/helper-lists", teacher.token, json=a_helper_list()
    )
    assert status == 201, body

    status, report = await system.call(
        "GET",
        "posts",
        f"/schools/{school.school_id}/posting-report?school_year=2026-2027",
        school.admin.token,
    )
    assert status == 200, report
    this_week = [w for w in report["weeks"] if w["posts"]]
    assert len(this_week) == 1, this_week
    # ... so the report does not show the day as one over the school's maximum.
    assert this_week[0]["most_posts_on_one_day"] == 1 == report["max_posts_per_day"]


async def test_a_like_or_unlike_sent_many_times_at_once_answers_the_count_with_it(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 3")
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/posts", teacher.token, json={"title": "Gym", "body": "Morgen gym."}
    )
    assert status == 201, body
    path = f"/posts/{body['post_id']}/like"
    for method, liked, count in (("PUT", True, 1), ("DELETE", False, 0), ("PUT", True, 1)):
        answers = await asyncio.gather(*(system.call(method, "posts", path, parent.token) for _ in range(12)))
        for status, state in answers:
            assert status == 200, state
            assert (state["liked"], state["like_count"]) == (liked, count), (method, answers)
