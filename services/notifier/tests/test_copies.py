"""The notifier's copies of identity's accounts, schools and groups: an event is applied only when it
is newer than what the copy holds, so events handled out of order leave the newest state; and a post
reaches a parent known only from those events."""

import uuid

from shared.contracts import (
    AccountChanged,
    GroupChanged,
    MembershipGranted,
    PostPublished,
    SchoolChanged,
)
from shared.envelope import envelope


def a_school(school_id: uuid.UUID, name: str, time_zone: str, revision: int) -> SchoolChanged:
    return SchoolChanged(
        school_id=school_id,
        name=name,
        time_zone=time_zone,
        locale="nl",
        max_posts_per_day=1,
        min_posts_per_week=1,
        digest_time="18:00",
        photo_retention_days=365,
        share_notice="",
        revision=revision,
    )


async def test_an_older_account_change_does_not_overwrite_a_newer_one(notifier) -> None:
    person_id = uuid.uuid4()
    newer = AccountChanged(
        person_id=person_id, email="ada@nieuw.test", display_name="Ada Nieuw", locale="en", revision=7
    )
    older = AccountChanged(
        person_id=person_id, email="ada@oud.test", display_name="Ada Oud", locale="nl", revision=6
    )

    await notifier.handle_directly(envelope(newer, None))
    await notifier.handle_directly(envelope(older, None))

    row = await notifier.pool.fetchrow("SELECT * FROM people WHERE person_id = $1", person_id)
    assert (row["email"], row["display_name"], row["locale"], row["revision"]) == (
        "ada@nieuw.test",
        "Ada Nieuw",
        "en",
        7,
    )
    await notifier.handle_directly(
        envelope(newer.model_copy(update={"display_name": "Ada", "revision": 8}), None)
    )
    assert (
        await notifier.pool.fetchval("SELECT display_name FROM people WHERE person_id = $1", person_id)
        == "Ada"
    )


async def test_an_older_school_change_does_not_overwrite_a_newer_one(notifier) -> None:
    school_id = uuid.uuid4()

    await notifier.handle_directly(
        envelope(a_school(school_id, "De Regenboog", "Europe/Amsterdam", 3), school_id)
    )
    await notifier.handle_directly(envelope(a_school(school_id, "Oude naam", "UTC", 2), school_id))

    row = await notifier.pool.fetchrow("SELECT * FROM schools WHERE school_id = $1", school_id)
    assert (row["name"], row["time_zone"], row["revision"]) == ("De Regenboog", "Europe/Amsterdam", 3)


async def test_an_older_group_change_does_not_rename_a_group_back(notifier) -> None:
    school_id, group_id = uuid.uuid4(), uuid.uuid4()

    def renamed(name: str, revision: int) -> GroupChanged:
        return GroupChanged(
            group_id=group_id, school_id=school_id, name=name, school_year="2026-2027", revision=revision
        )

    await notifier.handle_directly(envelope(renamed("Groep 4B", 2), school_id))
    await notifier.handle_directly(envelope(renamed("Groep 3B", 1), school_id))

    row = await notifier.pool.fetchrow("SELECT * FROM groups WHERE group_id = $1", group_id)
    assert (row["name"], row["school_id"], row["revision"]) == ("Groep 4B", school_id, 2)


async def test_a_post_reaches_a_parent_known_from_the_account_events(notifier) -> None:
    school_id, group_id, parent_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    address = f"ouder-{uuid.uuid4().hex[:8]}@ouders.test"
    await notifier.publish(
        AccountChanged(person_id=parent_id, email=address, display_name="Ada", locale="en", revision=1)
    )
    await notifier.publish(
        GroupChanged(
            group_id=group_id, school_id=school_id, name="Groep 3B", school_year="2026-2027", revision=1
        ),
        school_id,
    )
    await notifier.publish(
        MembershipGranted(group_id=group_id, person_id=parent_id, role="guardian", revision=1), school_id
    )

    async def copied() -> bool:
        return bool(
            await notifier.pool.fetchval(
                """SELECT 1 FROM memberships m JOIN people p USING (person_id) JOIN groups g USING (group_id)
                   WHERE m.person_id = $1 AND m.active""",
                parent_id,
            )
        )

    await notifier.eventually(copied, "the parent, group and membership copied")
    post_id = uuid.uuid4()
    await notifier.publish(
        PostPublished(post_id=post_id, group_id=group_id, author_id=uuid.uuid4(), excerpt="Morgen gym!"),
        school_id,
    )

    mail = await notifier.mail_to(address)
    assert mail.message["Subject"] == "New post in Groep 3B"
    assert f"https://klaspost.test/posts/{post_id}" in mail.text
    assert mail.text.startswith("Dear Ada,")
