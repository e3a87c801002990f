"""One account, several roles: a teacher who is also a parent at the same school, a parent with
children at two schools, two co-parents of one child. Each sees exactly what they should, in every
service (identity's /me, the posts feed, media's photos, the notifier's mails)."""

import uuid

from shared.testing.images import png_bytes
from tests.harness.school import (
    Person,
    School,
    add_child,
    add_group,
    add_person,
    make_school,
    new_email,
    redeem_from_mail,
    upload_photo,
    wait_until_linked,
)
from tests.harness.system import System, eventually


async def post(system: System, teacher: Person, group: uuid.UUID, body: str, photo: bool = False) -> str:
    photo_ids = []
    if photo:
        photo_ids = [(await upload_photo(system, teacher, png_bytes(32, 24), "image/png", group))["photo_id"]]
    status, created = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": body, "photo_ids": photo_ids},
    )
    assert status == 201, created
    return str(created["post_id"])


async def feed_groups(system: System, person: Person) -> set[str]:
    status, feed = await system.call("GET", "posts", "/feed", person.token)
    assert status == 200, feed
    return {p["group_name"] for p in feed["posts"]}


async def mails_to(system: System, person: Person, after: int) -> list[str]:
    return [
        str(m.message["Subject"])
        for m in system.smtp.messages[after:]
        if person.email.lower() in (r.lower() for r in m.rcpt_tos)
    ]


async def test_a_teacher_who_is_also_a_parent_at_the_same_school_teaches_one_group_and_follows_another(
    system: System,
) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 3")
    await add_group(system, school, "Groep 6")
    colleague = await add_person(system, school, "meester", "teacher", "Groep 3")
    juf = await add_person(system, school, "juf", "teacher", "Groep 6")
    # Juf's own child is in groep 3: she redeems its code while logged in as herself.
    before = len(system.smtp.messages)
    await add_child(system, school, "eigen-kind", "Groep 3", [juf.email])
    as_parent = await redeem_from_mail(system, juf.email, juf.token, before)
    assert as_parent.person_id == juf.person_id
    await wait_until_linked(system, juf, school.groups["Groep 3"])
    await wait_until_linked(system, juf, school.groups["Groep 6"])

    status, me = await system.call("GET", "identity", "/me", juf.token)
    assert status == 200, me
    assert [s["roles"] for s in me["staff"]] == [["teacher"]]
    assert [c["group_name"] for c in me["children"]] == ["Groep 3"]
    assert [g["group_name"] for g in me["teaches"]] == ["Groep 6"]

    # As a teacher she posts to groep 6, not to groep 3 (there she is a parent).
    await post(system, juf, school.groups["Groep 6"], "Groep 6 gaat naar het museum.")
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{school.groups['Groep 3']}/posts",
        juf.token,
        json={"title": "Nieuws", "body": "Niet mijn groep"},
    )
    assert status == 403, body
    # As a parent she reads groep 3's posts and is told of them.
    mails_before = len(system.smtp.messages)
    await post(system, colleague, school.groups["Groep 3"], "Groep 3 heeft gym.", photo=True)
    await eventually(lambda: _has_mail(system, juf, mails_before), what="juf told as a parent")
    assert await feed_groups(system, juf) == {"Groep 3", "Groep 6"}


async def _has_mail(system: System, person: Person, after: int) -> bool:
    return bool(await mails_to(system, person, after))


async def test_a_parent_with_children_at_two_schools_sees_both_and_nothing_else(system: System) -> None:
    lichtstraat, boog = await make_school(system), await make_school(system, "Montessorischool De Boog")
    for school, group in ((lichtstraat, "Groep 2"), (boog, "Bovenbouw A")):
        await add_group(system, school, group)
        await add_group(system, school, "Andere groep")
        await add_person(system, school, "juf", "teacher", group, "Andere groep")
    email = new_email("ouder")
    before = len(system.smtp.messages)
    await add_child(system, lichtstraat, "sam", "Groep 2", [email])
    parent = await redeem_from_mail(system, email, None, before)
    before = len(system.smtp.messages)
    await add_child(system, boog, "noor", "Bovenbouw A", [email])
    again = await redeem_from_mail(system, email, parent.token, before)
    assert again.person_id == parent.person_id
    await wait_until_linked(system, parent, lichtstraat.groups["Groep 2"])
    await wait_until_linked(system, parent, boog.groups["Bovenbouw A"])

    for school, group in ((lichtstraat, "Groep 2"), (boog, "Bovenbouw A")):
        await post(system, school.people["juf"], school.groups[group], f"Nieuws uit {group}")
        await post(system, school.people["juf"], school.groups["Andere groep"], "Niet voor deze ouder")
    assert await feed_groups(system, parent) == {"Groep 2", "Bovenbouw A"}
    status, me = await system.call("GET", "identity", "/me", parent.token)
    assert status == 200, me
    assert sorted(c["school_name"] for c in me["children"]) == [
        "Montessorischool De Boog",
        "OJBS De Lichtstraat",
    ]
    assert me["staff"] == []
    # An admin of one school sees nothing of the child at the other school.
    status, body = await system.call(
        "GET", "identity", f"/children/{boog.children['noor']}", lichtstraat.admin.token
    )
    assert status == 404, body


async def test_two_co_parents_each_link_their_own_account_and_each_hear_once(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 5")
    teacher = await add_person(system, school, "juf", "teacher", "Groep 5")
    mama, papa = new_email("mama"), new_email("papa")
    before = len(system.smtp.messages)
    await add_child(system, school, "lotte", "Groep 5", [mama, papa])
    first = await redeem_from_mail(system, mama, None, before)
    second = await redeem_from_mail(system, papa, None, before)
    assert first.person_id != second.person_id
    for parent in (first, second):
        await wait_until_linked(system, parent, school.groups["Groep 5"])

    mails_before = len(system.smtp.messages)
    await post(system, teacher, school.groups["Groep 5"], "Lotte's groep bakt koekjes.")

    async def both_told() -> bool:
        return all([bool(await mails_to(system, p, mails_before)) for p in (first, second)])

    await eventually(both_told, what="both co-parents told")
    for parent in (first, second):
        assert len(await mails_to(system, parent, mails_before)) == 1
        assert await feed_groups(system, parent) == {"Groep 5"}
    status, child = await system.call(
        "GET", "identity", f"/children/{school.children['lotte']}", school.admin.token
    )
    assert status == 200, child
    assert sorted(g["status"] for g in child["guardians"]) == ["linked", "linked"]


async def test_removing_one_co_parent_leaves_the_other_in(system: System) -> None:
    school: School = await make_school(system)
    await add_group(system, school, "Groep 7")
    await add_person(system, school, "juf", "teacher", "Groep 7")
    mama, papa = new_email("mama"), new_email("papa")
    before = len(system.smtp.messages)
    await add_child(system, school, "daan", "Groep 7", [mama, papa])
    first = await redeem_from_mail(system, mama, None, before)
    second = await redeem_from_mail(system, papa, None, before)
    group = school.groups["Groep 7"]
    for parent in (first, second):
        await wait_until_linked(system, parent, group)
    status, child = await system.call(
        "GET", "identity", f"/children/{school.children['daan']}", school.admin.token
    )
    assert status == 200, child
    papa_link = next(g for g in child["guardians"] if g["email"].lower() == papa.lower())
    status, body = await system.call(
        "DELETE", "identity", f"/guardianships/{papa_link['guardianship_id']}", school.admin.token
    )
    assert status == 204, body
    await wait_until_linked(system, second, group, linked=False)
    await wait_until_linked(system, first, group)
