"""A school made through the real identity API the way a school makes one: the operator creates the
school and its admin, the admin adds a school year, groups, teachers (who set their password from
the welcome mail) and children with their guardians' addresses; guardians redeem the access code
from their invitation mail. Mails are read back from the real SMTP server the notifier sends to."""

import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.app import POOL
from tests.harness.system import OPERATOR_KEY, System, eventually

PASSWORD = "correct horse battery staple"
SCHOOL_YEAR = "2026-2027"
ACCESS_CODE = re.compile(r"\b([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})\b")
RESET_TOKEN = re.compile(r"#token=([A-Za-z0-9_-]{20,})")


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
    children: dict[str, uuid.UUID] = field(default_factory=dict)
    years: set[str] = field(default_factory=set)


async def login(system: System, email: str, password: str = PASSWORD) -> str:
    status, body = await system.call(
        "POST", "identity", "/auth/login", json={"email": email, "password": password}
    )
    assert status == 200, body
    return str(body["access_token"])


def new_email(name: str) -> str:
    return f"{name}.{secrets.token_hex(4)}@ouders.example.nl"


def mail_text(mail: Any) -> str:
    part = mail.message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


async def secret_from_mail(system: System, address: str, pattern: re.Pattern[str], after: int = 0) -> str:
    """The secret (access code, reset token) in the newest mail to ``address`` that has one, waiting
    for it; ``after`` skips the mails that had arrived before (their count)."""
    found: list[str] = []

    async def arrived() -> bool:
        for mail in system.smtp.messages[after:]:
            if address.lower() in (r.lower() for r in mail.rcpt_tos):
                match = pattern.search(mail_text(mail))
                if match:
                    found.append(match.group(1))
        return bool(found)

    await eventually(arrived, within=15, what=f"a mail to {address}")
    return found[-1]


async def make_school(system: System, name: str = "OJBS De Lichtstraat") -> School:
    """A school with its admin logged in, its current school year, and invitations started."""
    admin_email = new_email("admin")
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
    school = School(uuid.UUID(body["school_id"]), admin)
    await add_school_year(system, school, SCHOOL_YEAR)
    status, body = await system.call(
        "POST", "identity", f"/schools/{school.school_id}/invitations", admin.token
    )
    assert status == 202, body
    return school


async def add_school_year(system: System, school: School, name: str, **dates: str) -> dict[str, Any]:
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/school-years",
        school.admin.token,
        json={"name": name, **dates},
    )
    assert status == 201, body
    school.years.add(name)
    return dict(body)


async def add_group(system: System, school: School, name: str, year: str = SCHOOL_YEAR) -> uuid.UUID:
    if year not in school.years:
        await add_school_year(system, school, year)
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


async def add_staff(
    system: System, school: School, key: str, role: str = "teacher", email: str | None = None
) -> Person:
    """A staff member; a new account sets its password from the welcome mail."""
    email = email or new_email(key)
    before = len(system.smtp.messages)
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/staff",
        token=school.admin.token,
        json={"email": email, "display_name": key.title(), "role": role},
    )
    assert status == 201, body
    person_id = uuid.UUID(body["person_id"])
    existing = next((p for p in school.people.values() if p.person_id == person_id), None)
    if existing is not None:
        return existing
    token = await set_password_from_mail(system, email, before)
    return Person(person_id, email, token)


async def set_password_from_mail(system: System, email: str, after: int = 0) -> str:
    reset = await secret_from_mail(system, email, RESET_TOKEN, after)
    status, body = await system.call(
        "POST", "identity", "/auth/password", json={"token": reset, "password": PASSWORD}
    )
    assert status == 200, body
    return str(body["access_token"])


async def teach(system: System, school: School, teacher: Person, group: str) -> None:
    status, body = await system.call(
        "PUT", "identity", f"/groups/{school.groups[group]}/teachers/{teacher.person_id}", school.admin.token
    )
    assert status == 200, body


async def add_child(
    system: System, school: School, key: str, group: str | None, guardians: list[str], **fields: Any
) -> uuid.UUID:
    """A child placed in ``group`` with guardians by email; they are invited at once."""
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{school.school_id}/children",
        school.admin.token,
        json={
            "given_name": key.title(),
            "family_name": "de Vries",
            "group_id": str(school.groups[group]) if group else None,
            "guardians": [{"email": g} for g in guardians],
            **fields,
        },
    )
    assert status == 201, body
    school.children[key] = uuid.UUID(body["child_id"])
    return school.children[key]


async def redeem_from_mail(system: System, email: str, token: str | None = None, after: int = 0) -> Person:
    """Redeem the newest access code mailed to ``email``: a new account, or the logged-in one."""
    code = await secret_from_mail(system, email, ACCESS_CODE, after)
    body_json: dict[str, Any] = {"code": code}
    if token is None:
        body_json |= {"display_name": email.split(".")[0].title(), "password": PASSWORD}
    status, body = await system.call("POST", "identity", "/access-codes/redeem", token, json=body_json)
    assert status == 201, body
    return Person(uuid.UUID(body["person_id"]), email, token or str(body["access_token"]))


async def add_person(system: System, school: School, key: str, role: str, *groups: str) -> Person:
    """A teacher teaching ``groups``, or a guardian with one child in each of ``groups``."""
    if role in ("teacher", "admin"):
        person = await add_staff(system, school, key, role)
        for group in groups:
            await teach(system, school, person, group)
    else:
        email = new_email(key)
        linked: Person | None = None
        for i, group in enumerate(groups):
            before = len(system.smtp.messages)
            await add_child(system, school, f"{key}-kind{i}", group, [email])
            linked = await redeem_from_mail(system, email, linked.token if linked else None, before)
        assert linked is not None, "a guardian needs a child in at least one group"
        person = linked
    school.people[key] = person
    return person


async def wait_until_linked(system: System, person: Person, group_id: uuid.UUID, linked: bool = True) -> None:
    """Until posts, media and the notifier have (or, with linked=False, no longer have) the
    membership in their local copies."""

    async def agreed() -> bool:
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
            if (row is not None) != linked:
                return False
        return True

    await eventually(agreed, what="membership copied to every service")


async def make_class(system: System, group_name: str) -> tuple[School, uuid.UUID, Person, Person]:
    """A new school with one group, its teacher and one parent, linked in every service's copy."""
    school = await make_school(system)
    group = await add_group(system, school, group_name)
    teacher = await add_person(system, school, "juf", "teacher", group_name)
    parent = await add_person(system, school, "ouder", "guardian", group_name)
    for person in (teacher, parent):
        await wait_until_linked(system, person, group)
    return school, group, teacher, parent


async def upload_photo(
    system: System, teacher: Person, data: bytes, content_type: str, group_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """Upload for ``group_id``, by default the first group the teacher teaches (from identity)."""
    if group_id is None:
        status, me = await system.call("GET", "identity", "/me", teacher.token)
        assert status == 200, me
        group_id = uuid.UUID(me["teaches"][0]["group_id"])
    status, body = await system.call(
        "POST",
        "media",
        f"/groups/{group_id}/photos",
        teacher.token,
        data=data,
        headers={"Content-Type": content_type},
    )
    assert status == 201, body
    return dict(body)


async def choose(
    system: System, person: Person, channel: str = "both", timing: str = "immediate"
) -> dict[str, Any]:
    """Set the person's notifier preferences: every category by ``channel`` and ``timing`` (the
    default with a device is push only)."""
    choice = {"channel": channel, "timing": timing}
    body = {"posts": choice, "signups": choice, "reminders": choice}
    status, answer = await system.call("PUT", "notifier", "/preferences", person.token, json=body)
    assert status == 200, answer
    return dict(answer)


async def register_push(system: System, person: Person) -> dict[str, Any]:
    """Subscribe a browser at the local push service and register it with the notifier."""
    status, body = await system.call("GET", "notifier", "/push/vapid-public-key")
    assert status == 200, body
    subscription = system.push.subscribe(body["application_server_key"])
    status, body = await system.call(
        "POST", "notifier", "/devices", person.token, json={"subscription": subscription}
    )
    assert status == 201, body
    return subscription
