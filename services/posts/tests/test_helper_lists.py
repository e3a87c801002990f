"""Helper-parent lists (hulpouders, seed rule 7, issue 7) through the running system: a full item puts
the next parent on the waiting list, a withdrawal promotes them with exactly one SignupPromoted (and
one notification), concurrent sign-ups never exceed a capacity, the deadline and an early close stop
parents' changes, only the group's members see a list (404 for everyone else), and bad input is
refused whole."""

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from identity.settings import Settings as IdentitySettings
from identity.tokens import TokenSigner
from posts.helper_lists.domain import day_start, deadline_problem
from shared import membership_copy
from shared.app import POOL, SETTINGS
from shared.tokens import Caller
from tests.harness.school import (
    Person,
    School,
    add_group,
    add_person,
    mail_text,
    make_class,
    wait_until_linked,
)
from tests.harness.system import System, eventually

AMS = "Europe/Amsterdam"


def pool(system: System, service: str = "posts") -> asyncpg.Pool:
    return system.services[service].app[POOL]


def ahead(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def a_list(**fields: Any) -> dict[str, Any]:
    return {
        "title": "Excursie naar het Rijksmuseum",
        "description": "We zoeken ouders die rijden en begeleiden.",
        "deadline": ahead(3),
        "items": [{"title": "Rijden", "capacity": 1}, {"title": "Begeleiden", "capacity": 2}],
        **fields,
    }


async def create(system: System, teacher: Person, group: uuid.UUID, **fields: Any) -> dict[str, Any]:
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/helper-lists", teacher.token, json=a_list(**fields)
    )
    assert status == 201, body
    return dict(body)


async def sign_up(system: System, parent: Person, lst: dict[str, Any], item: int = 0) -> tuple[int, Any]:
    item_id = lst["items"][item]["item_id"]
    path = f"/helper-lists/{lst['list_id']}/items/{item_id}/signup"
    return await system.call("PUT", "posts", path, parent.token)


async def withdraw(system: System, parent: Person, lst: dict[str, Any], item: int = 0) -> tuple[int, Any]:
    item_id = lst["items"][item]["item_id"]
    path = f"/helper-lists/{lst['list_id']}/items/{item_id}/signup"
    return await system.call("DELETE", "posts", path, parent.token)


def item_of(view: dict[str, Any], item: int = 0) -> dict[str, Any]:
    return dict(view["items"][item])


async def promotions(system: System, list_id: str) -> list[dict[str, Any]]:
    rows = await pool(system).fetch(
        "SELECT envelope FROM outbox WHERE routing_key = 'posts.signup_promoted' "
        "AND envelope->'payload'->>'list_id' = $1",
        list_id,
    )
    return [dict(r["envelope"]["payload"]) for r in rows]


async def names_known(system: System, *people: Person) -> None:
    async def known() -> bool:
        found = await pool(system).fetchval(
            "SELECT count(*) FROM account_names WHERE person_id = ANY($1::uuid[])",
            [p.person_id for p in people],
        )
        return bool(found == len(people))

    await eventually(known, what="the parents' names copied to posts (AccountChanged)")


async def children_known(system: System, school: School) -> None:
    async def known() -> bool:
        found = await pool(system).fetchval(
            "SELECT count(*) FROM children WHERE child_id = ANY($1::uuid[])", list(school.children.values())
        )
        return bool(found == len(school.children))

    await eventually(known, what="the children's names copied to posts (ChildChanged)")


async def test_a_full_item_puts_the_next_parent_on_the_waiting_list_and_a_withdrawal_promotes_them_once(
    system: System,
) -> None:
    school, group, teacher, first = await make_class(system, "Groep 5")
    second = await add_person(system, school, "tweede", "guardian", "Groep 5")
    third = await add_person(system, school, "derde", "guardian", "Groep 5")
    for parent in (second, third):
        await wait_until_linked(system, parent, group)
    lst = await create(system, teacher, group)
    assert [(i["title"], i["capacity"], i["signed_up"], i["waiting"]) for i in lst["items"]] == [
        ("Rijden", 1, 0, 0),
        ("Begeleiden", 2, 0, 0),
    ]
    assert lst["status"] == "open"
    assert lst["time_zone"] == AMS

    status, view = await sign_up(system, first, lst)
    assert status == 200, view
    assert (item_of(view)["mine"], item_of(view)["signed_up"], item_of(view)["place_in_line"]) == (
        "signed_up",
        1,
        None,
    )
    # Signing up again changes nothing: at most once per parent per item.
    status, again = await sign_up(system, first, lst)
    assert status == 200, again
    assert item_of(again)["signed_up"] == 1

    # The item is full: the next parents wait, in order.
    status, view = await sign_up(system, second, lst)
    assert status == 200, view
    assert (item_of(view)["mine"], item_of(view)["place_in_line"]) == ("waiting", 1)
    status, view = await sign_up(system, third, lst)
    assert (item_of(view)["mine"], item_of(view)["place_in_line"], item_of(view)["waiting"]) == (
        "waiting",
        2,
        2,
    )

    # A parent sees figures and their own state, never who the others are.
    status, seen = await system.call("GET", "posts", f"/helper-lists/{lst['list_id']}", third.token)
    assert status == 200, seen
    text = json.dumps(seen)
    assert str(first.person_id) not in text
    assert str(second.person_id) not in text
    status, body = await system.call("GET", "posts", f"/helper-lists/{lst['list_id']}/signups", third.token)
    assert status == 403, body

    # The teacher sees who signed up and who waits, by name.
    await names_known(system, first, second, third)
    await children_known(system, school)
    status, signups = await system.call(
        "GET", "posts", f"/helper-lists/{lst['list_id']}/signups", teacher.token
    )
    assert status == 200, signups
    driving = signups["items"][0]
    assert [h["person_id"] for h in driving["signed_up"]] == [str(first.person_id)]
    assert [h["person_id"] for h in driving["waiting"]] == [str(second.person_id), str(third.person_id)]
    assert driving["signed_up"][0]["display_name"] == "Ouder"
    assert driving["signed_up"][0]["children"] == ["Ouder-Kind0 de Vries"]

    assert await promotions(system, lst["list_id"]) == []
    mails_before = len(system.smtp.messages)
    status, view = await withdraw(system, first, lst)
    assert status == 200, view
    assert (item_of(view)["mine"], item_of(view)["signed_up"], item_of(view)["waiting"]) == (None, 1, 1)
    status, view = await system.call("GET", "posts", f"/helper-lists/{lst['list_id']}", second.token)
    assert (item_of(view)["mine"], item_of(view)["place_in_line"]) == ("signed_up", None)
    status, view = await system.call("GET", "posts", f"/helper-lists/{lst['list_id']}", third.token)
    assert (item_of(view)["mine"], item_of(view)["place_in_line"]) == ("waiting", 1)
    # Withdrawing again changes nothing and promotes nobody.
    status, view = await withdraw(system, first, lst)
    assert status == 200, view

    promoted = await promotions(system, lst["list_id"])
    assert len(promoted) == 1, promoted
    assert promoted[0]["person_id"] == str(second.person_id)
    assert promoted[0]["item_title"] == "Rijden"
    assert promoted[0]["list_title"] == "Excursie naar het Rijksmuseum"
    assert promoted[0]["group_id"] == str(group)

    await told_once(system, second, mails_before)


async def told_once(system: System, parent: Person, after: int) -> None:
    """The notifier turns the promotion into exactly one message to the parent."""

    def mails() -> list[Any]:
        return [
            m
            for m in system.smtp.messages[after:]
            if parent.email.lower() in (r.lower() for r in m.rcpt_tos)
            and "Rijden" in f"{m.message['Subject']} {mail_text(m)}"
        ]

    async def arrived() -> bool:
        return bool(mails())

    await eventually(arrived, what="the promoted parent's mail")
    await asyncio.sleep(2)  # a second message would come within the retry delays
    assert len(mails()) == 1


async def test_the_list_appears_in_the_group_feed_without_counting_as_the_days_post(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 6")
    lst = await create(system, teacher, group)
    status, feed = await system.call("GET", "posts", "/feed", parent.token)
    assert status == 200, feed
    (post,) = [p for p in feed["posts"] if p["signup"] is not None]
    assert post["signup"] == {"kind": "helper_list", "id": lst["list_id"]}
    assert post["title"] == lst["title"]
    # The teacher's post of the day is still possible (seed rule 5 counts teachers' messages).
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/posts", teacher.token, json={"title": "Nieuws", "body": "Hallo"}
    )
    assert status == 201, body
    status, lists = await system.call("GET", "posts", f"/groups/{group}/helper-lists", parent.token)
    assert status == 200, lists
    assert [x["list_id"] for x in lists["lists"]] == [lst["list_id"]]


async def test_the_deadline_is_shown_in_the_schools_time_zone(system: System) -> None:
    _school, group, teacher, _parent = await make_class(system, "Groep 2")
    deadline = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    lst = await create(system, teacher, group, deadline=deadline.isoformat())
    shown = datetime.fromisoformat(lst["deadline"])
    assert shown == deadline
    assert shown.utcoffset() == deadline.astimezone(ZoneInfo(AMS)).utcoffset()


async def test_one_parent_signing_up_many_times_at_once_holds_one_place(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 4")
    lst = await create(system, teacher, group, items=[{"title": "Rijden", "capacity": 2}])
    answers = await asyncio.gather(*(sign_up(system, parent, lst) for _ in range(10)))
    assert [status for status, _ in answers] == [200] * 10
    assert {(item_of(v)["mine"], item_of(v)["signed_up"]) for _, v in answers} == {("signed_up", 1)}
    answers = await asyncio.gather(*(withdraw(system, parent, lst) for _ in range(10)))
    assert [status for status, _ in answers] == [200] * 10
    rows = await pool(system).fetchval(
        "SELECT count(*) FROM helper_signups WHERE list_id = $1", uuid.UUID(lst["list_id"])
    )
    assert rows == 0
    assert await promotions(system, lst["list_id"]) == []


async def test_a_teacher_edits_the_list_and_its_feed_post_follows(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 2")
    lst = await create(system, teacher, group, activity_on=None)
    path = f"/helper-lists/{lst['list_id']}"
    await pool(system).execute(
        "UPDATE helper_lists SET deadline = now() - interval '1 minute' WHERE list_id = $1",
        uuid.UUID(lst["list_id"]),
    )
    status, body = await sign_up(system, parent, lst)
    assert status == 409, body

    # A later deadline opens the list again; the new title and text reach the feed's post.
    changes = {"title": "Excursie naar Artis", "description": "Nieuwe bestemming.", "deadline": ahead(2)}
    status, edited = await system.call("PATCH", "posts", path, teacher.token, json=changes)
    assert status == 200, edited
    assert (edited["title"], edited["description"], edited["status"]) == (
        "Excursie naar Artis",
        "Nieuwe bestemming.",
        "open",
    )
    status, view = await sign_up(system, parent, lst)
    assert status == 200, view
    status, feed = await system.call("GET", "posts", "/feed", parent.token)
    (post,) = [p for p in feed["posts"] if p["signup"] == {"kind": "helper_list", "id": lst["list_id"]}]
    assert (post["title"], post["body"]) == ("Excursie naar Artis", "Nieuwe bestemming.")
    updates = await pool(system).fetch(
        "SELECT envelope FROM outbox WHERE routing_key = 'posts.post_updated' "
        "AND envelope->'payload'->>'post_id' = $1",
        post["post_id"],
    )
    assert [u["envelope"]["payload"]["title"] for u in updates] == ["Excursie naar Artis"]

    # Refused whole: a deadline that has passed, an activity day before the deadline, by a parent.
    day_after = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    for change, field in [
        ({"deadline": ahead(-1), "title": "Weg"}, "deadline"),
        ({"activity_on": day_after, "title": "Weg"}, "activity_on"),
        ({"activity_on": "2027-13-01"}, "activity_on"),
        ({"title": ""}, "title"),
    ]:
        status, body = await system.call("PATCH", "posts", path, teacher.token, json=change)
        assert status == 422, (change, body)
        assert field in [d["field"] for d in body["error"]["details"]], body
    status, body = await system.call("PATCH", "posts", path, parent.token, json={"title": "Weg"})
    assert status == 403, body
    status, view = await system.call("GET", "posts", path, parent.token)
    assert view["title"] == "Excursie naar Artis"


class Crowd:
    """Parents of a group in posts' membership copy, written as its MembershipGranted handler writes
    them, with access tokens signed by identity's real key: many parents without many mailboxes."""

    def __init__(self, system: System) -> None:
        settings = system.services["identity"].app[SETTINGS]
        assert isinstance(settings, IdentitySettings)
        self.signer = TokenSigner.from_settings(settings)

    async def parents(self, system: System, group: uuid.UUID, count: int) -> list[Person]:
        people = [uuid.uuid4() for _ in range(count)]
        async with pool(system).acquire() as conn, conn.transaction():
            for person_id in people:
                await membership_copy.apply(conn, group, person_id, "guardian", True, 1, [uuid.uuid4()])
        return [Person(p, f"{p}@ouders.example.nl", self.signer.issue(Caller(p))) for p in people]


async def test_concurrent_sign_ups_never_exceed_the_capacity_and_promotions_follow_the_line(
    system: System,
) -> None:
    _school, group, teacher, _parent = await make_class(system, "Groep 7")
    crowd = await Crowd(system).parents(system, group, 40)
    lst = await create(system, teacher, group, items=[{"title": "Rijden", "capacity": 5}])

    answers = await asyncio.gather(*(sign_up(system, p, lst) for p in crowd))
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    rows = await pool(system).fetch(
        "SELECT person_id, status, queued FROM helper_signups WHERE list_id = $1 ORDER BY queued",
        uuid.UUID(lst["list_id"]),
    )
    assert len(rows) == 40
    assert [r["status"] for r in rows] == ["signed_up"] * 5 + ["waiting"] * 35
    places = sorted(
        item_of(view)["place_in_line"] for _, view in answers if item_of(view)["mine"] == "waiting"
    )
    assert places == list(range(1, 36))

    # Five withdraw at once, and the teacher raises the capacity by two at the same time: seven
    # promotions, the first seven in line, one event each.
    holders = {r["person_id"] for r in rows[:5]}
    line = [r["person_id"] for r in rows[5:]]
    by_id = {p.person_id: p for p in crowd}
    item_id = lst["items"][0]["item_id"]
    raise_capacity = system.call(
        "PATCH",
        "posts",
        f"/helper-lists/{lst['list_id']}/items/{item_id}",
        teacher.token,
        json={"capacity": 7},
    )
    answers = await asyncio.gather(raise_capacity, *(withdraw(system, by_id[p], lst) for p in holders))
    assert all(status == 200 for status, _ in answers), answers
    promoted = await promotions(system, lst["list_id"])
    assert sorted(p["person_id"] for p in promoted) == sorted(str(p) for p in line[:7])
    taken = await pool(system).fetchval(
        "SELECT count(*) FROM helper_signups WHERE list_id = $1 AND status = 'signed_up'",
        uuid.UUID(lst["list_id"]),
    )
    assert taken == 7

    # Below the parents signed up: refused, nothing changed.
    status, body = await system.call(
        "PATCH",
        "posts",
        f"/helper-lists/{lst['list_id']}/items/{item_id}",
        teacher.token,
        json={"capacity": 6},
    )
    assert status == 409, body
    assert body["error"]["details"] == {"signed_up": 7, "capacity": 6}


async def test_after_the_deadline_or_an_early_close_parents_are_refused_clearly(system: System) -> None:
    _school, group, teacher, parent = await make_class(system, "Groep 8")
    lst = await create(system, teacher, group)
    status, view = await sign_up(system, parent, lst, item=1)
    assert status == 200, view

    status, closed = await system.call(
        "POST", "posts", f"/helper-lists/{lst['list_id']}/close", teacher.token
    )
    assert status == 200, closed
    assert closed["status"] == "closed"
    assert closed["closed_at"] is not None
    for change in (sign_up(system, parent, lst), withdraw(system, parent, lst, item=1)):
        status, body = await change
        assert status == 409, body
        assert body["error"]["code"] == "conflict"
        assert "closed" in body["error"]["message"]
    status, body = await system.call("POST", "posts", f"/helper-lists/{lst['list_id']}/close", parent.token)
    assert status == 403, body

    other = await create(system, teacher, group, title="Bibliotheek op vrijdag")
    status, view = await sign_up(system, parent, other)
    assert status == 200, view
    (waiting,) = await Crowd(system).parents(system, group, 1)
    status, view = await sign_up(system, waiting, other)
    assert item_of(view)["mine"] == "waiting"
    await pool(system).execute(
        "UPDATE helper_lists SET deadline = now() - interval '1 minute' WHERE list_id = $1",
        uuid.UUID(other["list_id"]),
    )
    for change in (sign_up(system, parent, other, item=1), withdraw(system, parent, other)):
        status, body = await change
        assert status == 409, body
        assert "deadline" in body["error"]["message"]
        assert body["error"]["details"]["status"] == "deadline_passed"
    status, view = await system.call("GET", "posts", f"/helper-lists/{other['list_id']}", parent.token)
    assert view["status"] == "deadline_passed"
    assert item_of(view)["mine"] == "signed_up"

    # The teacher still changes sign-ups on a parent's behalf: the place goes to the first waiting.
    item_path = f"/helper-lists/{other['list_id']}/items/{{}}/signups/{{}}"
    first_item, second_item = (i["item_id"] for i in other["items"])
    status, signups = await system.call(
        "DELETE", "posts", item_path.format(first_item, parent.person_id), teacher.token
    )
    assert status == 200, signups
    assert [h["person_id"] for h in signups["items"][0]["signed_up"]] == [str(waiting.person_id)]
    assert [p["person_id"] for p in await promotions(system, other["list_id"])] == [str(waiting.person_id)]
    status, signups = await system.call(
        "PUT", "posts", item_path.format(second_item, parent.person_id), teacher.token
    )
    assert status == 200, signups
    assert [h["person_id"] for h in signups["items"][1]["signed_up"]] == [str(parent.person_id)]
    status, body = await system.call(
        "PUT", "posts", item_path.format(second_item, teacher.person_id), teacher.token
    )
    assert status == 404, body
    status, body = await system.call(
        "PUT", "posts", item_path.format(second_item, uuid.uuid4()), teacher.token
    )
    assert status == 404, body
    status, body = await system.call(
        "DELETE", "posts", item_path.format(first_item, waiting.person_id), parent.token
    )
    assert status == 403, body


async def test_only_the_groups_members_see_a_list_and_only_parents_sign_up(system: System) -> None:
    school, group, teacher, parent = await make_class(system, "Groep 3")
    await add_group(system, school, "Groep 4")
    neighbour = await add_person(system, school, "buur", "guardian", "Groep 4")
    await wait_until_linked(system, neighbour, school.groups["Groep 4"])
    _other_school, _other_group, stranger_teacher, stranger = await make_class(system, "Groep 3")
    lst = await create(system, teacher, group)
    list_path = f"/helper-lists/{lst['list_id']}"
    item_path = f"{list_path}/items/{lst['items'][0]['item_id']}"

    for outsider in (neighbour, stranger, stranger_teacher, school.admin):
        for method, path, body in [
            ("GET", list_path, None),
            ("GET", f"{list_path}/signups", None),
            ("POST", f"{list_path}/close", None),
            ("PATCH", item_path, {"capacity": 3}),
            ("PUT", f"{item_path}/signup", None),
            ("DELETE", f"{item_path}/signup", None),
            ("PUT", f"{item_path}/signups/{parent.person_id}", None),
            ("DELETE", f"{item_path}/signups/{parent.person_id}", None),
            ("GET", f"/groups/{group}/helper-lists", None),
            ("POST", f"/groups/{group}/helper-lists", a_list()),
        ]:
            status, answer = await system.call(method, "posts", path, outsider.token, json=body)
            assert status == 404, (method, path, answer)
            assert answer["error"]["code"] == "not_found"

    # The teacher does not sign up; a parent neither writes lists nor edits them.
    status, body = await system.call("PUT", "posts", f"{item_path}/signup", teacher.token)
    assert status == 403, body
    status, body = await system.call("PATCH", "posts", item_path, parent.token, json={"capacity": 3})
    assert status == 403, body
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/helper-lists", parent.token, json=a_list()
    )
    assert status == 403, body
    # An item of another list is no item of this one.
    other = await create(system, teacher, group, title="Bibliotheek")
    status, body = await system.call(
        "PUT", "posts", f"{list_path}/items/{other['items'][0]['item_id']}/signup", parent.token
    )
    assert status == 404, body


@pytest.fixture(scope="module")
async def bad_input_class(system: System) -> tuple[School, uuid.UUID, Person, Person]:
    return await make_class(system, "Groep 1")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [{"title": "Rijden", "capacity": 0}]}, "items.0.capacity"),
        ({"items": [{"title": "Rijden", "capacity": 101}]}, "items.0.capacity"),
        ({"items": [{"title": "Rijden", "capacity": "4"}]}, "items.0.capacity"),
        ({"items": [{"title": "  ", "capacity": 2}]}, "items.0.title"),
        ({"items": [{"title": f"Taak {i}", "capacity": 1} for i in range(31)]}, "items"),
        ({"items": [{"title": "Rijden", "capacity": 1}, {"title": "rijden", "capacity": 2}]}, "items"),
        ({"title": "x" * 121}, "title"),
        ({"description": "x" * 2001}, "description"),
        ({"deadline": ahead(-0.01)}, "deadline"),
        ({"deadline": ahead(2), "activity_on": (date.today() + timedelta(days=1)).isoformat()}, "deadline"),
        ({"deadline": "2026-12-10T18:00:00"}, "deadline"),
        ({"deadline": "2027-08-02T12:00:00+02:00"}, "deadline"),
        ({"deadline": ahead(400)}, "deadline"),
        ({"deadline": "morgen"}, "deadline"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_bad_lists_are_refused_whole_in_the_common_shape(
    system: System,
    bad_input_class: tuple[School, uuid.UUID, Person, Person],
    change: dict[str, Any],
    field: str,
) -> None:
    _school, group, teacher, _parent = bad_input_class
    status, body = await system.call(
        "POST", "posts", f"/groups/{group}/helper-lists", teacher.token, json=a_list(**change)
    )
    assert status == 422, body
    assert body["error"]["code"] == "validation_failed"
    assert field in [d["field"] for d in body["error"]["details"]], body
    written = await pool(system).fetchval(
        "SELECT (SELECT count(*) FROM helper_lists WHERE group_id = $1) + "
        "(SELECT count(*) FROM posts WHERE group_id = $1)",
        group,
    )
    assert written == 0


def test_the_deadline_is_checked_against_the_schools_local_days() -> None:
    now = datetime(2027, 3, 20, 12, tzinfo=UTC)
    # 28 March 2027 begins at 23:00 UTC the day before (UTC+1); clocks go forward at 02:00 that night.
    assert day_start(date(2027, 3, 28), AMS) == datetime(2027, 3, 27, 23, tzinfo=UTC)
    assert deadline_problem(datetime(2027, 3, 27, 23, tzinfo=UTC), date(2027, 3, 28), now, AMS, None) is None
    assert deadline_problem(datetime(2027, 3, 27, 23, 1, tzinfo=UTC), date(2027, 3, 28), now, AMS, None)
    # 31 October 2027 begins at 22:00 UTC (UTC+2 until 03:00 local).
    late = datetime(2027, 10, 30, 22, 30, tzinfo=UTC)
    assert deadline_problem(late, date(2027, 10, 31), now, AMS, None)
    # The school year's last day ends at local midnight.
    assert (
        deadline_problem(datetime(2027, 7, 31, 21, 59, tzinfo=UTC), None, now, AMS, date(2027, 7, 31)) is None
    )
    assert deadline_problem(datetime(2027, 7, 31, 22, tzinfo=UTC), None, now, AMS, date(2027, 7, 31))


async def test_a_parent_whose_child_left_the_group_is_passed_over_on_the_waiting_list(system: System) -> None:
    _school, group, teacher, _parent = await make_class(system, "Groep 6")
    holder, left, next_in_line = await Crowd(system).parents(system, group, 3)
    lst = await create(system, teacher, group, items=[{"title": "Rijden", "capacity": 1}])
    for parent in (holder, left, next_in_line):
        status, view = await sign_up(system, parent, lst)
        assert status == 200, view
    # As the MembershipRevoked handler writes it: the child moved to another group.
    async with pool(system).acquire() as conn:
        await membership_copy.apply(conn, group, left.person_id, "guardian", False, 2, [])

    status, view = await withdraw(system, holder, lst)
    assert status == 200, view
    assert [p["person_id"] for p in await promotions(system, lst["list_id"])] == [str(next_in_line.person_id)]
    status, signups = await system.call(
        "GET", "posts", f"/helper-lists/{lst['list_id']}/signups", teacher.token
    )
    assert [h["person_id"] for h in signups["items"][0]["waiting"]] == [str(left.person_id)]


async def test_sign_ups_racing_an_early_close_are_either_in_before_it_or_refused(system: System) -> None:
    _school, group, teacher, _parent = await make_class(system, "Groep 8")
    crowd = await Crowd(system).parents(system, group, 20)
    lst = await create(system, teacher, group, items=[{"title": "Rijden", "capacity": 10}])
    close = system.call("POST", "posts", f"/helper-lists/{lst['list_id']}/close", teacher.token)
    closed, *answers = await asyncio.gather(close, *(sign_up(system, p, lst) for p in crowd))
    assert closed[0] == 200, closed
    assert {status for status, _ in answers} <= {200, 409}
    accepted = sum(status == 200 for status, _ in answers)
    rows = await pool(system).fetch(
        "SELECT status FROM helper_signups WHERE list_id = $1", uuid.UUID(lst["list_id"])
    )
    assert len(rows) == accepted
    assert sum(r["status"] == "signed_up" for r in rows) == min(accepted, 10)
    # After the close, nobody gets in.
    status, body = await sign_up(system, crowd[0], lst)
    assert status == 409, body
    assert (
        await pool(system).fetchval(
            "SELECT count(*) FROM helper_signups WHERE list_id = $1", uuid.UUID(lst["list_id"])
        )
        == accepted
    )
