"""Bad input against the running system. Every refusal leaves in the one error shape
``{"error": {"code", "message", "details"}}``, is never a 500, and writes nothing: no rows in the
service's tables and no event in its outbox."""

import asyncio
import base64
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest

from identity.settings import Settings as IdentitySettings
from identity.tokens import TokenSigner, generate_signing_key_pem, load_signing_key, private_key_from_pem
from shared.app import POOL, SETTINGS, SPEC
from shared.testing.images import jpeg_with_gps, png_bytes
from shared.testing.infra import s3_client
from shared.tokens import Caller
from tests.harness.school import (
    ACCESS_CODE,
    PASSWORD,
    Person,
    School,
    add_child,
    add_group,
    add_person,
    make_class,
    make_school,
    secret_from_mail,
)
from tests.harness.system import OPERATOR_KEY, System

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
}
MAX_BODY_BYTES = 64 * 1024
PHOTO_MAX_BYTES = 25 * 1024 * 1024


def refused(status: int, body: Any, expected: int, what: str = "") -> dict[str, Any]:
    """The error object of a refusal with status ``expected``, after checking the one error shape."""
    assert status == expected, (what, status, body)
    assert isinstance(body, dict), (what, body)
    assert list(body) == ["error"], (what, body)
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, (what, error)
    assert isinstance(error["message"], str), (what, error)
    assert error["message"], (what, error)
    assert error["code"] == CODES[expected], (what, error)
    return error


def named_fields(error: dict[str, Any]) -> set[str]:
    assert isinstance(error["details"], list), error
    assert error["details"], error
    for detail in error["details"]:
        assert isinstance(detail["field"], str), detail
        assert isinstance(detail["problem"], str), detail
    return {detail["field"] for detail in error["details"]}


def fresh_email(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:12]}@ouders.example.nl"


# What a refused write must leave alone: (service, SQL, arguments). Identity, posts and media rows
# are only ever written by requests, and tests run one at a time, so whole-table counts are stable.
Watch = tuple[tuple[str, str, tuple[Any, ...]], ...]
OUTBOX_OF_SCHOOL = "SELECT count(*) FROM outbox WHERE envelope->>'school_id' = $1"
IDENTITY_ROWS: Watch = (
    ("identity", "SELECT count(*) FROM schools", ()),
    ("identity", "SELECT count(*) FROM accounts", ()),
    ("identity", "SELECT count(*) FROM staff", ()),
    ("identity", "SELECT count(*) FROM groups", ()),
    ("identity", "SELECT count(*) FROM children", ()),
    ("identity", "SELECT count(*) FROM placements", ()),
    ("identity", "SELECT count(*) FROM guardianships", ()),
    ("identity", "SELECT count(*) FROM memberships", ()),
    ("identity", "SELECT count(*) FROM outbox", ()),
)
POSTS_ROWS: Watch = (
    ("posts", "SELECT count(*) FROM posts", ()),
    ("posts", "SELECT count(*) FROM post_photos", ()),
    ("posts", "SELECT count(*) FROM outbox", ()),
)


def media_rows(school_id: uuid.UUID) -> Watch:
    # Photo processing of other tests may still publish: the outbox is counted for this school only.
    return (
        ("media", "SELECT count(*) FROM photos", ()),
        ("media", OUTBOX_OF_SCHOOL, (str(school_id),)),
    )


def notifier_rows(person: Person, school_id: uuid.UUID) -> Watch:
    return (
        ("notifier", "SELECT count(*) FROM devices WHERE person_id = $1", (person.person_id,)),
        ("notifier", OUTBOX_OF_SCHOOL, (str(school_id),)),
    )


LOGIN_FAILURES: Watch = (("identity", "SELECT count(*) FROM login_failures", ()),)


async def snapshot(system: System, watch: Watch) -> list[int]:
    return [
        int(await system.services[service].app[POOL].fetchval(sql, *args)) for service, sql, args in watch
    ]


@dataclass(frozen=True)
class Write:
    """One endpoint that takes a JSON body, with a body it accepts and bodies it must refuse."""

    name: str
    service: str
    path: str
    valid: dict[str, Any]
    required: set[str]
    wrong_types: dict[str, Any]
    wrongly_typed: set[str]
    watch: Watch
    token: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, system: System, **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await system.call("POST", self.service, self.path, self.token, headers=headers, **kwargs)


@dataclass
class Scene:
    school: School
    group: uuid.UUID
    teacher: Person
    parent: Person
    subscription: dict[str, Any]

    def writes(self) -> list[Write]:
        sid = self.school.school_id
        return [
            Write(
                "operator creates a school",
                "identity",
                "/schools",
                {
                    "name": "Basisschool Het Anker",
                    "admin": {
                        "email": fresh_email("directie"),
                        "display_name": "Directie",
                        "password": PASSWORD,
                    },
                },
                required={"name", "admin"},
                wrong_types={"name": 1, "admin": {"email": "geen-adres", "display_name": "", "password": 7}},
                wrongly_typed={"name", "admin.email", "admin.display_name", "admin.password"},
                watch=IDENTITY_ROWS,
                headers={"X-Operator-Key": OPERATOR_KEY},
            ),
            Write(
                "admin adds a staff member",
                "identity",
                f"/schools/{sid}/staff",
                {"email": fresh_email("meester"), "display_name": "Meester Bas", "role": "teacher"},
                required={"email", "display_name", "role"},
                wrong_types={"email": 12, "display_name": ["Bas"], "role": "principal", "locale": "de"},
                wrongly_typed={"email", "display_name", "role", "locale"},
                watch=IDENTITY_ROWS,
                token=self.school.admin.token,
            ),
            Write(
                "admin adds a child with guardians",
                "identity",
                f"/schools/{sid}/children",
                {
                    "given_name": "Sanne",
                    "tussenvoegsel": "van der",
                    "family_name": "Berg",
                    "date_of_birth": "2019-03-14",
                    "group_id": str(self.group),
                    "guardians": [{"email": fresh_email("ouder")}],
                },
                required={"given_name", "family_name"},
                wrong_types={
                    "given_name": 1,
                    "family_name": None,
                    "date_of_birth": "14-03-2019x",
                    "photo_consent": "misschien",
                    "group_id": "groep-4",
                    "guardians": [{"email": "geen-adres"}],
                },
                wrongly_typed={
                    "given_name",
                    "family_name",
                    "date_of_birth",
                    "photo_consent",
                    "group_id",
                    "guardians.0.email",
                },
                watch=IDENTITY_ROWS,
                token=self.school.admin.token,
            ),
            Write(
                "admin creates a group",
                "identity",
                f"/schools/{sid}/groups",
                {"name": f"Groep 8{uuid.uuid4().hex[:4]}", "school_year": "2026-2027"},
                required={"name", "school_year"},
                wrong_types={"name": 8, "school_year": 2026},
                wrongly_typed={"name", "school_year"},
                watch=IDENTITY_ROWS,
                token=self.school.admin.token,
            ),
            Write(
                "someone logs in",
                "identity",
                "/auth/login",
                {"email": self.parent.email, "password": PASSWORD},
                required={"email", "password"},
                wrong_types={"email": ["x"], "password": 1234567890},
                wrongly_typed={"email", "password"},
                watch=LOGIN_FAILURES,
            ),
            Write(
                "teacher posts",
                "posts",
                f"/groups/{self.group}/posts",
                {"title": "Gym", "body": "Morgen hebben we gym.", "photo_ids": []},
                required={"title", "body"},
                wrong_types={"title": 7, "body": 5, "photo_ids": ["not-a-uuid"]},
                wrongly_typed={"title", "body", "photo_ids.0"},
                watch=POSTS_ROWS,
                token=self.teacher.token,
            ),
            Write(
                "parent registers a device",
                "notifier",
                "/devices",
                {"subscription": self.subscription},
                required={"subscription"},
                wrong_types={"subscription": {"endpoint": 5, "keys": {"p256dh": 1, "auth": None}}},
                wrongly_typed={"subscription.endpoint", "subscription.keys.p256dh", "subscription.keys.auth"},
                watch=notifier_rows(self.parent, sid),
                token=self.parent.token,
            ),
        ]


async def make_scene(system: System) -> Scene:
    school, group, teacher, parent = await make_class(system, "Groep 4")
    status, body = await system.call("GET", "notifier", "/push/vapid-public-key")
    assert status == 200, body
    return Scene(school, group, teacher, parent, system.push.subscribe(body["application_server_key"]))


async def refuses_and_writes_nothing(
    system: System, write: Write, expected: int, what: str, **request: Any
) -> dict[str, Any]:
    before = await snapshot(system, write.watch)
    status, body = await write.send(system, **request)
    error = refused(status, body, expected, f"{write.name}: {what}")
    assert await snapshot(system, write.watch) == before, f"{write.name}: {what} wrote something"
    return error


async def test_the_valid_bodies_are_accepted_and_the_watched_rows_see_them(system: System) -> None:
    """The control for the refusals below: the same requests, right, are accepted and do show up."""
    scene = await make_scene(system)
    for write in scene.writes():
        before = await snapshot(system, write.watch)
        status, body = await write.send(system, json=write.valid)
        assert status in (200, 201), (write.name, status, body)
        if write.path != "/auth/login":
            assert await snapshot(system, write.watch) != before, f"{write.name}: the watch misses the write"


async def test_malformed_json_is_refused_with_400_and_writes_nothing(system: System) -> None:
    scene = await make_scene(system)
    malformed = {
        "cut off": b'{"body": "Hallo',
        "single quotes": b"{'body': 'Hallo'}",
        "empty": b"",
        "two documents": b'{"a": 1}{"b": 2}',
        "not UTF-8": b'{"body": "\xff\xfe"}',
    }
    for write in scene.writes():
        for what, data in malformed.items():
            await refuses_and_writes_nothing(
                system, write, 400, what, data=data, headers={"Content-Type": "application/json"}
            )


async def test_a_body_not_sent_as_json_is_refused_with_415_and_writes_nothing(system: System) -> None:
    scene = await make_scene(system)
    for write in scene.writes():
        text = json.dumps(write.valid).encode()
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/octet-stream"):
            await refuses_and_writes_nothing(
                system, write, 415, content_type, data=text, headers={"Content-Type": content_type}
            )
        await refuses_and_writes_nothing(system, write, 415, "form fields", data={"body": "Hallo"})


async def test_missing_fields_are_named_in_a_422_and_nothing_is_written(system: System) -> None:
    scene = await make_scene(system)
    for write in scene.writes():
        error = await refuses_and_writes_nothing(system, write, 422, "empty object", json={})
        assert named_fields(error) == write.required, (write.name, error)


async def test_fields_of_the_wrong_type_are_named_in_a_422_and_nothing_is_written(system: System) -> None:
    scene = await make_scene(system)
    for write in scene.writes():
        error = await refuses_and_writes_nothing(system, write, 422, "wrong types", json=write.wrong_types)
        assert named_fields(error) == write.wrongly_typed, (write.name, error)


async def test_unknown_fields_are_refused_with_422_and_nothing_is_written(system: System) -> None:
    scene = await make_scene(system)
    for write in scene.writes():
        error = await refuses_and_writes_nothing(
            system, write, 422, "extra field", json={**write.valid, "is_admin": True}
        )
        assert named_fields(error) == {"is_admin"}, (write.name, error)
    [create_school] = [w for w in scene.writes() if w.service == "identity" and w.path == "/schools"]
    sneaky = {**create_school.valid, "admin": {**create_school.valid["admin"], "role": "operator"}}
    error = await refuses_and_writes_nothing(system, create_school, 422, "nested extra field", json=sneaky)
    assert named_fields(error) == {"admin.role"}, error


async def test_a_json_body_that_is_not_an_object_is_refused_with_422_and_nothing_is_written(
    system: System,
) -> None:
    scene = await make_scene(system)
    for write in scene.writes():
        values: list[Any] = [[], "Hallo", None, 42]
        for value in values:
            error = await refuses_and_writes_nothing(
                system,
                write,
                422,
                repr(value),
                data=json.dumps(value),
                headers={"Content-Type": "application/json"},
            )
            assert named_fields(error) == {"(body)"}, (write.name, error)


async def slowly(data: bytes, piece: int = 16 * 1024) -> AsyncIterator[bytes]:
    """The body in pieces without a Content-Length (chunked), as a client streaming it would send it."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def test_an_oversize_json_body_is_refused_with_413_and_nothing_is_written(system: System) -> None:
    scene = await make_scene(system)
    for write in scene.writes():
        padded = json.dumps({**write.valid, "padding": "x" * MAX_BODY_BYTES}).encode()
        assert len(padded) > MAX_BODY_BYTES
        await refuses_and_writes_nothing(
            system,
            write,
            413,
            "with Content-Length",
            data=padded,
            headers={"Content-Type": "application/json"},
        )
        await refuses_and_writes_nothing(
            system, write, 413, "chunked", data=slowly(padded), headers={"Content-Type": "application/json"}
        )


async def test_a_json_body_of_exactly_the_limit_is_read_and_validated(system: System) -> None:
    scene = await make_scene(system)
    [post] = [w for w in scene.writes() if w.service == "posts"]
    body = json.dumps({"title": "Nieuws", "body": "x" * 5001}).encode()
    body += b" " * (MAX_BODY_BYTES - len(body))
    error = await refuses_and_writes_nothing(
        system, post, 422, "exactly the limit", data=body, headers={"Content-Type": "application/json"}
    )
    assert named_fields(error) == {"body"}


async def test_deeply_nested_json_is_refused_without_a_500(system: System) -> None:
    scene = await make_scene(system)
    for write in scene.writes():
        for what, data in (
            ("nested arrays", "[" * 5000 + "]" * 5000),
            ("nested objects", '{"a":' * 5000 + "1" + "}" * 5000),
        ):
            before = await snapshot(system, write.watch)
            status, body = await write.send(system, data=data, headers={"Content-Type": "application/json"})
            assert status in (400, 422), (write.name, what, status, body)
            refused(status, body, status, f"{write.name}: {what}")
            assert await snapshot(system, write.watch) == before


async def test_text_with_a_nul_character_is_refused_with_422_naming_the_field(system: System) -> None:
    scene = await make_scene(system)
    nul: dict[str, tuple[dict[str, Any], str]] = {
        "operator creates a school": ({"name": "De\x00School"}, "name"),
        "admin adds a person": ({"display_name": "Meester\x00Bas"}, "display_name"),
        "admin creates a group": ({"name": "Groep\x004"}, "name"),
        "teacher posts": ({"body": "Hallo\x00ouders"}, "body"),
        "parent registers a device": (
            {"subscription": {**scene.subscription, "endpoint": scene.subscription["endpoint"] + "\x00"}},
            "subscription.endpoint",
        ),
    }
    for write in scene.writes():
        if write.name not in nul:
            continue
        change, field_name = nul[write.name]
        before = await snapshot(system, write.watch)
        status, body = await write.send(system, json={**write.valid, **change})
        error = refused(status, body, 422, write.name)
        assert named_fields(error) == {field_name}, (write.name, error)
        assert await snapshot(system, write.watch) == before


# Tokens ------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def assemble(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(b64url(json.dumps(part).encode()) for part in (header, claims)) + "." + b64url(signature)


class Tokens:
    """Access tokens made with identity's real signing key, or deliberately wrong ones."""

    def __init__(self, system: System) -> None:
        settings = system.services["identity"].app[SETTINGS]
        assert isinstance(settings, IdentitySettings)
        self.key = load_signing_key(settings)
        self.issuer = settings.token_issuer
        self.signer = TokenSigner(self.key, issuer=self.issuer, ttl_seconds=900)

    def issue(self, caller: Caller, clock: Callable[[], float] = time.time) -> str:
        return TokenSigner(self.key, issuer=self.issuer, ttl_seconds=900, clock=clock).issue(caller)

    def with_claims(self, caller: Caller, change: Callable[[dict[str, Any]], None]) -> str:
        header, claims = unsigned(self.issue(caller))
        change(claims)
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": header["kid"]})


def _without(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda claims: claims.pop(name)


def _setting(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda claims: claims.__setitem__(name, value)


def bad_authorization(kind: str, tokens: Tokens, caller: Caller) -> str:
    """The Authorization header of one kind of bad credential for ``caller``."""
    other_key = private_key_from_pem(generate_signing_key_pem())
    good = tokens.issue(caller)
    header, claims = unsigned(good)
    if kind == "signed with another key":
        return "Bearer " + TokenSigner(other_key, issuer=tokens.issuer, ttl_seconds=900).issue(caller)
    if kind == "signed with another key under identity's kid":
        return "Bearer " + jwt.encode(claims, other_key, algorithm="EdDSA", headers={"kid": header["kid"]})
    if kind == "expired":
        return "Bearer " + tokens.issue(caller, clock=lambda: time.time() - 3600)
    if kind == "not valid yet":
        return "Bearer " + tokens.issue(caller, clock=lambda: time.time() + 3600)
    if kind == "alg none":
        return "Bearer " + assemble({"alg": "none", "typ": "JWT", "kid": header["kid"]}, claims)
    if kind == "HS256 keyed with the public key":
        public = tokens.signer.jwks()["keys"][0]
        signing_input = ".".join(
            b64url(json.dumps(part).encode()) for part in ({"alg": "HS256", "kid": header["kid"]}, claims)
        )
        mac = hmac.new(json.dumps(public).encode(), signing_input.encode(), hashlib.sha256).digest()
        return "Bearer " + signing_input + "." + b64url(mac)
    if kind == "payload changed after signing":
        forged = b64url(json.dumps({**claims, "sub": str(uuid.uuid4())}).encode())
        head, _payload, signature = good.split(".")
        return f"Bearer {head}.{forged}.{signature}"
    if kind == "garbage":
        return "Bearer not-a-token"
    if kind == "three garbage parts":
        return "Bearer aaa.bbb.ccc"
    if kind == "empty bearer":
        return "Bearer "
    if kind == "basic credentials":
        return "Basic " + base64.b64encode(f"{caller.person_id}:{PASSWORD}".encode()).decode()
    if kind == "token without scheme":
        return good
    if kind == "header that is a JSON list":
        return "Bearer " + assemble([], claims)  # type: ignore[arg-type]
    if kind == "key id that is a number":
        signing_input = ".".join(
            b64url(json.dumps(part).encode()) for part in ({"alg": "EdDSA", "kid": 7}, claims)
        )
        return f"Bearer {signing_input}.{b64url(tokens.key.sign(signing_input.encode()))}"
    changes = {
        "for another audience": _setting("aud", ["klaspost-elsewhere"]),
        "from another issuer": _setting("iss", "someone-else"),
        "not an access token": _setting("typ", "refresh"),
        "without a subject": _without("sub"),
        "without an expiry": _without("exp"),
        "with a subject that is no uuid": _setting("sub", "admin"),
        "with the subject as a list": _setting("sub", [str(caller.person_id)]),
        "with an expiry that is no number": _setting("exp", "never"),
    }
    return "Bearer " + tokens.with_claims(caller, changes[kind])


BAD_CREDENTIALS = [
    "signed with another key",
    "signed with another key under identity's kid",
    "expired",
    "not valid yet",
    "alg none",
    "HS256 keyed with the public key",
    "payload changed after signing",
    "garbage",
    "three garbage parts",
    "empty bearer",
    "basic credentials",
    "token without scheme",
    "for another audience",
    "from another issuer",
    "not an access token",
    "without a subject",
    "without an expiry",
    "with a subject that is no uuid",
    "with the subject as a list",
    "with an expiry that is no number",
    "header that is a JSON list",
    "key id that is a number",
]


def who_am_i() -> list[tuple[str, str]]:
    """One authenticated read per service."""
    return [
        ("identity", "/me"),
        ("posts", "/feed"),
        ("media", f"/photos/{uuid.uuid4()}"),
        ("notifier", "/devices"),
    ]


async def test_a_token_made_like_the_bad_ones_but_right_is_accepted_by_every_service(system: System) -> None:
    """The control for the test below: what makes those tokens fail is only what each kind changes."""
    school = await make_school(system)
    tokens = Tokens(system)
    admin = Caller(person_id=school.admin.person_id)
    for good in (tokens.issue(admin), tokens.with_claims(admin, lambda claims: None)):
        for service, path in who_am_i():
            status, body = await system.call(
                "GET", service, path, headers={"Authorization": f"Bearer {good}"}
            )
            assert status == (404 if service == "media" else 200), (service, status, body)


@pytest.mark.parametrize("kind", BAD_CREDENTIALS)
async def test_a_bad_access_token_is_refused_with_401_by_every_service(system: System, kind: str) -> None:
    school = await make_school(system)
    admin = Caller(person_id=school.admin.person_id)
    authorization = bad_authorization(kind, Tokens(system), admin)
    for service, path in who_am_i():
        assert system.http is not None
        async with system.http.get(
            system.url(service, path), headers={"Authorization": authorization}
        ) as response:
            body = await response.json()
            refused(response.status, body, 401, f"{service} {kind}")
            assert response.headers.get("WWW-Authenticate", "").startswith("Bearer"), (service, kind)


async def test_a_forged_token_writes_nothing(system: System) -> None:
    scene = await make_scene(system)
    other_key = private_key_from_pem(generate_signing_key_pem())
    tokens = Tokens(system)

    def forge(person: Person, _role: str) -> str:
        return TokenSigner(other_key, issuer=tokens.issuer, ttl_seconds=900).issue(
            Caller(person_id=person.person_id)
        )

    before = await snapshot(system, IDENTITY_ROWS + POSTS_ROWS + media_rows(scene.school.school_id))
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{scene.school.school_id}/groups",
        forge(scene.school.admin, "admin"),
        json={"name": "Groep 9", "school_year": "2026-2027"},
    )
    refused(status, body, 401)
    status, body = await system.call(
        "POST",
        "posts",
        f"/groups/{scene.group}/posts",
        forge(scene.teacher, "teacher"),
        json={"title": "Nieuws", "body": "Nep"},
    )
    refused(status, body, 401)
    status, body = await system.call(
        "POST",
        "media",
        f"/groups/{scene.group}/photos",
        forge(scene.teacher, "teacher"),
        data=png_bytes(16, 16),
        headers={"Content-Type": "image/png"},
    )
    refused(status, body, 401)
    assert await snapshot(system, IDENTITY_ROWS + POSTS_ROWS + media_rows(scene.school.school_id)) == before


def authenticated_routes(system: System) -> list[tuple[str, str, str, str]]:
    """Every route that needs credentials, as (service, method, path with made-up ids, how it authenticates)."""
    found: list[tuple[str, str, str, str]] = []
    for name, service in system.services.items():
        for route in service.app[SPEC].routes:
            if route.auth not in ("none", "optional"):
                path = "/".join(str(uuid.uuid4()) if p.startswith("{") else p for p in route.path.split("/"))
                found.append((name, route.method, path, route.auth))
    return found


async def test_every_authenticated_endpoint_refuses_a_request_without_credentials_with_401(
    system: System,
) -> None:
    routes = authenticated_routes(system)
    assert len(routes) >= 12
    watch = IDENTITY_ROWS + POSTS_ROWS + (("media", "SELECT count(*) FROM photos", ()),)
    before = await snapshot(system, watch)
    assert system.http is not None
    for service, method, path, auth in routes:
        # A body that is wrong as well: the missing credentials must be what is reported.
        async with system.http.request(method, system.url(service, path), json={}) as response:
            body = await response.json()
            refused(response.status, body, 401, f"{service} {method} {path}")
            if auth == "bearer":
                assert response.headers.get("WWW-Authenticate") == "Bearer", (service, method, path)
    assert await snapshot(system, watch) == before


# Roles -------------------------------------------------------------------------------------------


async def originals_in_storage(system: System, school_id: uuid.UUID) -> int:
    def count() -> int:
        listing = s3_client().list_objects(Bucket=system.buckets[0], Prefix=f"{school_id}/")
        return len(listing.get("Contents", []))

    return await asyncio.to_thread(count)


async def test_a_guardian_cannot_upload_a_photo(system: System) -> None:
    scene = await make_scene(system)
    watch = media_rows(scene.school.school_id)
    before = await snapshot(system, watch)
    status, body = await system.call(
        "POST",
        "media",
        f"/groups/{scene.group}/photos",
        scene.parent.token,
        data=jpeg_with_gps(64, 48),
        headers={"Content-Type": "image/jpeg"},
    )
    refused(status, body, 403)
    assert await snapshot(system, watch) == before
    assert await originals_in_storage(system, scene.school.school_id) == 0


async def test_only_an_admin_of_the_school_manages_it_and_others_get_404(system: System) -> None:
    """A teacher or parent manages nothing; an admin of another school gets 404 for every object of
    this one: no object of school A can be found, read or changed from school B."""
    scene = await make_scene(system)
    other = await make_school(system, "Montessorischool De Boog")
    sid = scene.school.school_id
    child = scene.school.children[next(iter(scene.school.children))]
    status, child_view = await system.call("GET", "identity", f"/children/{child}", scene.school.admin.token)
    assert status == 200, child_view
    guardianship = child_view["guardians"][0]["guardianship_id"]
    status, years = await system.call(
        "GET", "identity", f"/schools/{sid}/school-years", scene.school.admin.token
    )
    assert status == 200, years
    status, launched = await system.call(
        "POST", "identity", f"/schools/{sid}/invitations", scene.school.admin.token
    )
    assert status == 202, launched
    launch = launched["launch_id"]
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/schools/{sid}", {}),
        ("PATCH", f"/schools/{sid}", {"json": {"max_posts_per_day": 3}}),
        ("POST", f"/schools/{sid}/groups", {"json": {"name": "Groep 7", "school_year": "2026-2027"}}),
        ("GET", f"/schools/{sid}/groups", {}),
        ("POST", f"/schools/{sid}/school-years", {"json": {"name": "2030-2031"}}),
        ("GET", f"/schools/{sid}/school-years", {}),
        (
            "POST",
            f"/schools/{sid}/staff",
            {"json": {"email": fresh_email("x"), "display_name": "X", "role": "admin"}},
        ),
        ("GET", f"/schools/{sid}/staff", {}),
        ("DELETE", f"/schools/{sid}/staff/{scene.teacher.person_id}?role=teacher", {}),
        ("POST", f"/schools/{sid}/children", {"json": {"given_name": "A", "family_name": "B"}}),
        ("GET", f"/schools/{sid}/children", {}),
        ("GET", f"/groups/{scene.group}", {}),
        ("PATCH", f"/groups/{scene.group}", {"json": {"name": "Groep 9"}}),
        ("PUT", f"/groups/{scene.group}/teachers/{scene.teacher.person_id}", {}),
        ("DELETE", f"/groups/{scene.group}/teachers/{scene.teacher.person_id}", {}),
        ("GET", f"/children/{child}", {}),
        ("PATCH", f"/children/{child}", {"json": {"photo_consent": True}}),
        ("PUT", f"/children/{child}/placement", {"json": {"group_id": str(scene.group)}}),
        ("POST", f"/children/{child}/leave", {"json": {}}),
        ("POST", f"/children/{child}/guardians", {"json": {"email": fresh_email("y")}}),
        ("DELETE", f"/guardianships/{guardianship}", {}),
        ("POST", f"/guardianships/{guardianship}/invitation", {}),
        ("DELETE", f"/guardianships/{guardianship}/invitation", {}),
        ("POST", f"/schools/{sid}/invitations", {}),
        ("GET", f"/invitation-launches/{launch}", {}),
        ("GET", f"/schools/{sid}/adoption", {}),
        ("GET", f"/schools/{sid}/adoption?format=csv", {}),
        (
            "POST",
            f"/schools/{sid}/imports",
            {"data": b"roepnaam;achternaam;groep\n", "headers": {"Content-Type": "text/csv"}},
        ),
        ("POST", f"/school-years/{years['items'][0]['school_year_id']}/promotion", {"json": {}}),
    ]
    before = await snapshot(system, IDENTITY_ROWS)
    for token, who in (
        (scene.parent.token, "a parent"),
        (scene.teacher.token, "a teacher"),
        (other.admin.token, "another school's admin"),
    ):
        for method, path, kwargs in requests:
            status, body = await system.call(method, "identity", path, token, **kwargs)
            refused(status, body, 404, f"{method} {path} by {who}")
    assert await snapshot(system, IDENTITY_ROWS) == before


async def test_a_duplicate_group_or_year_is_refused_and_nothing_written(system: System) -> None:
    scene = await make_scene(system)
    sid = scene.school.school_id
    before = await snapshot(system, IDENTITY_ROWS)
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{sid}/groups",
        scene.school.admin.token,
        json={"name": "Groep 4", "school_year": "2026-2027"},
    )
    refused(status, body, 409, "the same group name in the same year")
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{sid}/school-years",
        scene.school.admin.token,
        json={"name": "2026-2027"},
    )
    refused(status, body, 409, "the same school year twice")
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{sid}/school-years",
        scene.school.admin.token,
        json={"name": "2027-2028", "starts_on": "2027-06-01", "ends_on": "2028-05-31"},
    )
    refused(status, body, 409, "overlapping school years")
    status, body = await system.call(
        "POST",
        "identity",
        f"/schools/{sid}/groups",
        scene.school.admin.token,
        json={"name": "Groep 5", "school_year": "2031-2032"},
    )
    assert named_fields(refused(status, body, 422, "a group in a year the school does not have")) == {
        "school_year"
    }
    assert await snapshot(system, IDENTITY_ROWS) == before


async def test_a_teacher_of_another_school_cannot_be_assigned_and_an_admin_cannot_be_taken_away_last(
    system: System,
) -> None:
    scene = await make_scene(system)
    other = await make_school(system, "Montessorischool De Boog")
    outsider = await add_person(system, other, "buiten", "teacher")
    before = await snapshot(system, IDENTITY_ROWS)
    status, body = await system.call(
        "PUT", "identity", f"/groups/{scene.group}/teachers/{outsider.person_id}", scene.school.admin.token
    )
    refused(status, body, 404, "a teacher of another school")
    status, body = await system.call(
        "DELETE",
        "identity",
        f"/schools/{scene.school.school_id}/staff/{scene.school.admin.person_id}?role=admin",
        scene.school.admin.token,
    )
    refused(status, body, 409, "the last admin")
    assert await snapshot(system, IDENTITY_ROWS) == before


# Paths and methods -------------------------------------------------------------------------------


async def test_ids_in_paths_that_are_no_uuid_give_404(system: System) -> None:
    scene = await make_scene(system)
    admin, teacher, parent = scene.school.admin.token, scene.teacher.token, scene.parent.token
    some = uuid.uuid4()
    requests: list[tuple[str, str, str, str, dict[str, Any]]] = [
        (
            "POST",
            "identity",
            "/schools/not-a-uuid/staff",
            admin,
            {"json": {"email": fresh_email("x"), "display_name": "X", "role": "teacher"}},
        ),
        (
            "POST",
            "identity",
            "/schools/123/groups",
            admin,
            {"json": {"name": "Groep 1", "school_year": "2026-2027"}},
        ),
        ("PUT", "identity", f"/groups/groep-4/teachers/{scene.teacher.person_id}", admin, {}),
        ("PUT", "identity", f"/groups/{scene.group}/teachers/juf", admin, {}),
        ("DELETE", "identity", "/groups/x/teachers/y", admin, {}),
        ("GET", "identity", "/children/emma", admin, {}),
        ("POST", "posts", "/groups/groep-4/posts", teacher, {"json": {"title": "Nieuws", "body": "Hallo"}}),
        ("GET", "posts", "/posts/1", parent, {}),
        ("GET", "posts", f"/posts/{some}x", parent, {}),
        ("GET", "media", "/photos/photo.jpg", parent, {}),
        ("DELETE", "notifier", "/devices/telefoon", parent, {}),
    ]
    before = await snapshot(system, IDENTITY_ROWS + POSTS_ROWS)
    for method, service, path, token, kwargs in requests:
        status, body = await system.call(method, service, path, token, **kwargs)
        refused(status, body, 404, f"{service} {method} {path}")
    assert await snapshot(system, IDENTITY_ROWS + POSTS_ROWS) == before


@pytest.mark.parametrize("service", ["identity", "posts", "media", "notifier"])
async def test_an_unknown_endpoint_gives_404_in_the_error_shape(system: System, service: str) -> None:
    for method, path in (
        ("GET", "/does-not-exist"),
        ("POST", "/v2/posts"),
        ("GET", "/feed/"),
        ("GET", "/admin"),
    ):
        status, body = await system.call(method, service, path)
        refused(status, body, 404, f"{service} {method} {path}")


WRONG_METHODS = [
    ("identity", "GET", "/auth/login"),
    ("identity", "PUT", "/me"),
    ("identity", "GET", "/schools"),
    ("posts", "DELETE", "/feed"),
    ("posts", "PUT", f"/posts/{uuid.uuid4()}"),
    ("media", "GET", f"/groups/{uuid.uuid4()}/photos"),
    ("media", "DELETE", f"/photos/{uuid.uuid4()}"),
    ("notifier", "PUT", "/devices"),
    ("notifier", "POST", "/push/vapid-public-key"),
]


async def test_a_wrong_method_gives_405_in_the_error_shape(system: System) -> None:
    for service, method, path in WRONG_METHODS:
        status, body = await system.call(method, service, path)
        refused(status, body, 405, f"{service} {method} {path}")


async def test_a_405_names_the_allowed_methods(system: System) -> None:
    assert system.http is not None
    for service, method, path in WRONG_METHODS:
        async with system.http.request(method, system.url(service, path)) as response:
            assert response.status == 405
            assert response.headers.get("Allow"), (service, method, path)


# Photos ------------------------------------------------------------------------------------------


async def test_an_oversize_photo_is_refused_with_413_and_nothing_is_stored(system: System) -> None:
    scene = await make_scene(system)
    watch = media_rows(scene.school.school_id)
    photo = jpeg_with_gps(64, 48)
    oversize = photo + bytes(PHOTO_MAX_BYTES + 1 - len(photo))
    before = await snapshot(system, watch)
    for what, data in (
        ("with Content-Length", io.BytesIO(oversize)),
        ("chunked", slowly(oversize, 256 * 1024)),
    ):
        status, body = await system.call(
            "POST",
            "media",
            f"/groups/{scene.group}/photos",
            scene.teacher.token,
            data=data,
            headers={"Content-Type": "image/jpeg"},
        )
        refused(status, body, 413, what)
    assert await snapshot(system, watch) == before
    assert await originals_in_storage(system, scene.school.school_id) == 0


async def test_a_file_that_is_not_a_jpeg_png_or_webp_is_refused_with_415_and_nothing_is_stored(
    system: System,
) -> None:
    scene = await make_scene(system)
    watch = media_rows(scene.school.school_id)
    files = {
        "PDF as image/jpeg": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "image/jpeg"),
        "HTML as image/png": (b"<html><script>alert(1)</script></html>", "image/png"),
        "SVG": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml"),
        "GIF": (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),
        "JSON": (b'{"photo": "cat.jpg"}', "application/json"),
        "two bytes of JPEG": (b"\xff\xd8", "image/jpeg"),
    }
    before = await snapshot(system, watch)
    for what, (data, content_type) in files.items():
        status, body = await system.call(
            "POST",
            "media",
            f"/groups/{scene.group}/photos",
            scene.teacher.token,
            data=data,
            headers={"Content-Type": content_type},
        )
        refused(status, body, 415, what)
    # A browser form: the bytes start with the multipart boundary, not with an image.
    form = aiohttp.FormData()
    form.add_field("photo", jpeg_with_gps(64, 48), filename="klas.jpg", content_type="image/jpeg")
    status, body = await system.call(
        "POST", "media", f"/groups/{scene.group}/photos", scene.teacher.token, data=form
    )
    refused(status, body, 415, "multipart form")
    assert await snapshot(system, watch) == before
    assert await originals_in_storage(system, scene.school.school_id) == 0


async def test_an_empty_upload_is_refused_with_422_and_nothing_is_stored(system: System) -> None:
    scene = await make_scene(system)
    watch = media_rows(scene.school.school_id)
    before = await snapshot(system, watch)
    status, body = await system.call(
        "POST",
        "media",
        f"/groups/{scene.group}/photos",
        scene.teacher.token,
        data=b"",
        headers={"Content-Type": "image/jpeg"},
    )
    error = refused(status, body, 422)
    assert named_fields(error) == {"(body)"}
    assert await snapshot(system, watch) == before
    assert await originals_in_storage(system, scene.school.school_id) == 0


# The operator's endpoint and logging in ----------------------------------------------------------


def new_school(email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "name": "Basisschool De Regenboog",
        "admin": {
            "email": email or fresh_email("directie"),
            "display_name": "Directie",
            "password": password,
        },
    }


async def test_creating_a_school_needs_the_operator_key(system: System) -> None:
    before = await snapshot(system, IDENTITY_ROWS)
    for headers in (
        {},
        {"X-Operator-Key": ""},
        {"X-Operator-Key": "operator-test-key"},
        {"X-Operator-Key": OPERATOR_KEY + "0"},
        {"X-Operator-Key": OPERATOR_KEY.upper()},
        {"X-Api-Key": OPERATOR_KEY},
    ):
        status, body = await system.call("POST", "identity", "/schools", json=new_school(), headers=headers)
        refused(status, body, 401, repr(headers))
    status, body = await system.call("POST", "identity", "/schools", OPERATOR_KEY, json=new_school())
    refused(status, body, 401, "the operator key as a bearer token")
    assert await snapshot(system, IDENTITY_ROWS) == before


WEAK_PASSWORDS = ["password123", "Welkom01", "qwertyuiop", "kort"]


async def test_a_weak_admin_password_is_refused_with_422_and_nothing_is_written(system: System) -> None:
    before = await snapshot(system, IDENTITY_ROWS)
    for password in WEAK_PASSWORDS:
        status, body = await system.call(
            "POST",
            "identity",
            "/schools",
            json=new_school(password=password),
            headers={"X-Operator-Key": OPERATOR_KEY},
        )
        error = refused(status, body, 422, password)
        assert len(named_fields(error)) == 1, error
    email = fresh_email("directie")
    status, body = await system.call(
        "POST",
        "identity",
        "/schools",
        json=new_school(email, password=email),
        headers={"X-Operator-Key": OPERATOR_KEY},
    )
    refused(status, body, 422, "the email address as password")
    assert await snapshot(system, IDENTITY_ROWS) == before


async def test_the_refusal_of_a_weak_admin_password_names_admin_password(system: System) -> None:
    status, body = await system.call(
        "POST",
        "identity",
        "/schools",
        json=new_school(password="password123"),
        headers={"X-Operator-Key": OPERATOR_KEY},
    )
    assert named_fields(refused(status, body, 422)) == {"admin.password"}


async def test_a_weak_password_for_a_new_guardian_account_is_refused_naming_password(system: System) -> None:
    school = await make_school(system)
    await add_group(system, school, "Groep 1")
    email = fresh_email("ouder")
    before_mails = len(system.smtp.messages)
    await add_child(system, school, "kind", "Groep 1", [email])
    code = await secret_from_mail(system, email, ACCESS_CODE, before_mails)
    before = await snapshot(system, IDENTITY_ROWS)
    status, body = await system.call(
        "POST",
        "identity",
        "/access-codes/redeem",
        json={"code": code, "display_name": "Ouder", "password": "password123"},
    )
    assert named_fields(refused(status, body, 422)) == {"password"}
    assert await snapshot(system, IDENTITY_ROWS) == before


async def test_adding_an_address_that_has_an_account_elsewhere_looks_like_adding_a_new_one(
    system: System,
) -> None:
    """Found when tried: an admin of school 2 adding a guardian whose address has an account at
    school 1 got 409 "already has an account". Now the answers cannot be told apart."""
    first = await make_school(system)
    second = await make_school(system, "Montessorischool De Boog")
    await add_group(system, second, "Groep 2")
    await add_group(system, first, "Groep 1")
    parent = await add_person(system, first, "ouder", "guardian", "Groep 1")
    teacher = await add_person(system, first, "juf", "teacher", "Groep 1")
    answers = []
    for email in (parent.email, teacher.email, first.admin.email, fresh_email("nieuw")):
        status, child = await system.call(
            "POST",
            "identity",
            f"/schools/{second.school_id}/children",
            second.admin.token,
            json={
                "given_name": "Kind",
                "family_name": "Een",
                "group_id": str(second.groups["Groep 2"]),
                "guardians": [{"email": email}],
            },
        )
        assert status == 201, child
        guardian = child["guardians"][0]
        answers.append((status, guardian["status"], sorted(guardian)))
        status, staff = await system.call(
            "POST",
            "identity",
            f"/schools/{second.school_id}/staff",
            second.admin.token,
            json={"email": email, "display_name": "Nieuwe collega", "role": "teacher"},
        )
        assert status == 201, staff
        answers.append((status, staff["display_name"], sorted(staff)))
    assert len({repr(a) for a in answers[0::2]}) == 1, answers
    assert len({repr(a) for a in answers[1::2]}) == 1, answers
    assert answers[0][1] == "invited"


async def test_a_wrong_password_and_an_unknown_address_are_refused_alike(system: System) -> None:
    school = await make_school(system)
    status, unknown = await system.call(
        "POST",
        "identity",
        "/auth/login",
        json={"email": fresh_email("niemand"), "password": "wrong horse battery"},
    )
    refused(status, unknown, 401, "an unknown address")
    status, body = await system.call(
        "POST",
        "identity",
        "/auth/login",
        json={"email": school.admin.email, "password": "wrong horse battery"},
    )
    refused(status, body, 401, "a wrong password")
    # Nothing in the answer tells whether the address has an account.
    assert body == unknown
