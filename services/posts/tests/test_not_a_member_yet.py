"""Posts' copy of the memberships follows identity one event hop behind: a teacher assigned a moment
ago may get a 404 for the group, whose message says to try again shortly; once the grant arrives, the
same request succeeds."""

from shared.membership_copy import NOT_A_MEMBER_YET
from tests.harness.school import add_group, add_staff, make_school, teach
from tests.harness.system import System, eventually


async def test_a_teacher_not_yet_in_the_copy_is_told_to_try_again_and_then_posts(system: System) -> None:
    school = await make_school(system)
    group = await add_group(system, school, "Groep 2")
    teacher = await add_staff(system, school, "juf")
    path = f"/groups/{group}/posts"
    body = {"title": "Welkom", "body": "Welkom in groep 2!"}

    status, answer = await system.call("POST", "posts", path, teacher.token, json=body)
    assert status == 404, answer
    assert answer["error"]["message"] == NOT_A_MEMBER_YET
    assert "(yet)" in answer["error"]["message"]

    await teach(system, school, teacher, "Groep 2")
    statuses: list[int] = []

    async def posted() -> bool:
        status, answer = await system.call("POST", "posts", path, teacher.token, json=body)
        statuses.append(status)
        assert status in (201, 404), answer
        return status == 201

    await eventually(posted, what="the teacher's post accepted once the grant reached posts")
    status, answer = await system.call("GET", "posts", f"/groups/{group}/posts", teacher.token)
    assert status == 200, answer
