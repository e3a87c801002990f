"""A school made through the real identity API: admin, groups, a teacher and parents, logged in."""

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.app import POOL
from tests.harness.system import OPERATOR_KEY, System, eventually

PASSWORD = "correct horse battery staple"


@dataclass
class Person:
    person_id: uuid.UUID
    email: str
    token: str


@dataclass
class School:
    school_id: uuid.UUID
    admin: Person
    groups: dict[str, uuid.UUID] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)


async def login(system: System, email: str) -> str:
    status, body = await system.call(
        "POST", "identity", "/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert status == 200, body
    return str(body["access_token"])


def _email(name: str) -> str:
    return f"{name}.{secrets.token_hex(4)}@ouders.example.nl"


async def make_school(system: System, name: str = "OJBS De Lichtstraat") -> School:
    admin_email = _email("admin")
    status, body = await system.call(
        "POST",
        "identity",
        "/schools",
        headers={"X-Operator-Key": OPERATOR_KEY},
        json={
            "name": name,
            "admin": {"email": admin_email, "display_name": "Directie", "password": PASSWORD},
        },
    )
    assert status == 201, body
    admin = Person(uuid.UUID(body["admin_id"]), admin_email, await login(system, admin_email))
    return School(uuid.UUID(body["school_id"]), admin)


async def add_group(system: System, school: School, name: str, year: str = "2026-2027") -> uuid.UUID:
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/groups",
        token=school.admin.token,
        json={"name": name, "school_year": year},
    )
    assert status == 201, body
    school.groups[name] = uuid.UUID(body["group_id"])
    return school.groups[name]


async def add_person(system: System, school: School, key: str, role: str, *groups: str) -> Person:
    email = _email(key)
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/people",
        token=school.admin.token,
        json={"email": email, "display_name": key.title(), "role": role, "password": PASSWORD},
    )
    assert status == 201, body
    person = Person(uuid.UUID(body["person_id"]), email, await login(system, email))
    for group in groups:
        status, body = await system.call(
            "PUT",
            "identity",
            f"/groups/{school.groups[group]}/members/{person.person_id}",
            token=school.admin.token,
        )
        assert status == 200, body
    school.people[key] = person
    return person


async def wait_until_linked(system: System, person: Person, group_id: uuid.UUID) -> None:
    """Until posts, media and the notifier have the membership in their local copies."""

    async def linked() -> bool:
        for service in ("posts", "media", "notifier"):
            row = (
                await system.services[service]
                .app[POOL]
                .fetchval(
                    "SELECT 1 FROM memberships WHERE group_id = $1 AND person_id = $2 AND active",
                    group_id,
                    person.person_id,
                )
            )
            if row is None:
                return False
        return True

    await eventually(linked, what="membership copied to every service")


async def make_class(system: System, group_name: str) -> tuple[School, uuid.UUID, Person, Person]:
    """A new school with one group, its teacher and one parent, linked in every service's copy."""
    school = await make_school(system)
    group = await add_group(system, school, group_name)
    teacher = await add_person(system, school, "juf", "teacher", group_name)
    parent = await add_person(system, school, "ouder", "guardian", group_name)
    for person in (teacher, parent):
        await wait_until_linked(system, person, group)
    return school, group, teacher, parent


async def upload_photo(system: System, teacher: Person, data: bytes, content_type: str) -> dict[str, Any]:
    status, body = await system.call(
        "POST", "media", "/photos", teacher.token, data=data, headers={"Content-Type": content_type}
    )
    assert status == 201, body
    return dict(body)
