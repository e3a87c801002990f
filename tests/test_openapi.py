"""Each service's /openapi.json is a sound OpenAPI 3.1 document that describes exactly the routes the
app serves, with request schemas that accept what the service accepts and refuse what it refuses,
and every answer as documented; the health endpoints tell an orchestrator the truth."""

import asyncio
import json
import re
import uuid
from datetime import date, datetime
from typing import Any

import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from shared.app import POOL, SPEC
from shared.http import Route
from shared.testing.images import png_bytes
from tests.harness.school import PASSWORD, make_class
from tests.harness.system import System

SERVICES = ["identity", "posts", "media", "notifier"]
OPERATIONAL = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
PATH_ITEM_FIELDS = HTTP_METHODS | {"summary", "description", "servers", "parameters", "$ref"}
RESPONSE_KEY = re.compile(r"^[1-5][0-9][0-9]$")
MEDIA_TYPE = re.compile(r"^[a-z]+/[a-z0-9.+*-]+$")
ERROR_REF = {"$ref": "#/components/schemas/Error"}


# A JSON Schema (2020-12) validator for the keywords these documents use; any other keyword fails
# loudly, so the check cannot pass by ignoring what it does not understand.
ANNOTATIONS = {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def _format_ok(value: str, fmt: str) -> bool:
    try:
        if fmt == "uuid":
            uuid.UUID(value)
        elif fmt == "date":
            date.fromisoformat(value)
            return re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value) is not None
        elif fmt == "date-time":
            return datetime.fromisoformat(value).tzinfo is not None
        elif fmt == "email":
            return re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value) is not None
        elif fmt == "uri":
            return re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]*", value) is not None
        elif fmt == "binary":
            return True
        else:
            raise AssertionError(f"unknown format {fmt}")
    except ValueError:
        return False
    return True


def problems(schema: Any, value: Any, document: dict[str, Any], at: str = "$") -> list[str]:
    """Why ``value`` does not match ``schema``; empty when it does."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{at}: nothing is allowed here"]
    found: list[str] = []
    for keyword, rule in schema.items():
        if keyword in ANNOTATIONS:
            continue
        if keyword == "$ref":
            found += problems(resolve(document, rule), value, document, at)
        elif keyword == "type":
            names = rule if isinstance(rule, list) else [rule]
            if not any(_is_type(value, name) for name in names):
                found.append(f"{at}: {value!r} is not of type {rule}")
        elif keyword == "properties":
            if isinstance(value, dict):
                for name, sub in rule.items():
                    if name in value:
                        found += problems(sub, value[name], document, f"{at}.{name}")
        elif keyword == "required":
            if isinstance(value, dict):
                found += [f"{at}.{name}: required" for name in rule if name not in value]
        elif keyword == "additionalProperties":
            if isinstance(value, dict):
                for name in set(value) - set(schema.get("properties", {})):
                    found += problems(rule, value[name], document, f"{at}.{name}")
        elif keyword == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    found += problems(rule, item, document, f"{at}[{i}]")
        elif keyword in ("anyOf", "oneOf"):
            matching = sum(not problems(sub, value, document, at) for sub in rule)
            if matching == 0 or (keyword == "oneOf" and matching > 1):
                found.append(f"{at}: {value!r} does not match {keyword}")
        elif keyword == "allOf":
            for sub in rule:
                found += problems(sub, value, document, at)
        elif keyword == "enum":
            if value not in rule:
                found.append(f"{at}: {value!r} not in {rule}")
        elif keyword == "const":
            if value != rule:
                found.append(f"{at}: {value!r} is not {rule!r}")
        elif keyword in ("minLength", "maxLength", "pattern", "format"):
            if isinstance(value, str):
                if keyword == "minLength" and len(value) < rule:
                    found.append(f"{at}: shorter than {rule}")
                if keyword == "maxLength" and len(value) > rule:
                    found.append(f"{at}: longer than {rule}")
                if keyword == "pattern" and not re.search(rule, value):
                    found.append(f"{at}: does not match {rule}")
                if keyword == "format" and not _format_ok(value, rule):
                    found.append(f"{at}: {value!r} is not a {rule}")
        elif keyword == "uniqueItems":
            if rule and isinstance(value, list) and len({repr(v) for v in value}) != len(value):
                found.append(f"{at}: items are not unique")
        elif keyword in ("minItems", "maxItems"):
            if isinstance(value, list) and (
                len(value) < rule if keyword == "minItems" else len(value) > rule
            ):
                found.append(f"{at}: {keyword} {rule}")
        elif keyword in ("minimum", "maximum"):
            if _is_type(value, "number") and (value < rule if keyword == "minimum" else value > rule):
                found.append(f"{at}: {keyword} {rule}")
        else:
            raise AssertionError(f"{at}: the test's validator does not know the keyword {keyword!r}")
    return found


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def schemas_in(node: Any, at: str = "#") -> list[tuple[str, Any]]:
    """Every JSON Schema in an OpenAPI document: components and each ``schema`` field."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" or (at == "#/components/schemas"):
                found.append((f"{at}/{key}", value))
            else:
                found += schemas_in(value, f"{at}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += schemas_in(value, f"{at}/{i}")
    return found


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs_in(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs_in(value)]
    return []


async def openapi(system: System, service: str) -> dict[str, Any]:
    status, document = await system.call("GET", service, "/openapi.json")
    assert status == 200, document
    assert isinstance(document, dict)
    return document


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def served_routes(system: System, service: str) -> set[tuple[str, str]]:
    served = set()
    for route in system.services[service].app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and path not in OPERATIONAL:
            served.add((route.method, path))
    return served


@pytest.mark.parametrize("service", SERVICES)
async def test_the_document_is_a_well_formed_openapi_3_1_document(system: System, service: str) -> None:
    document = await openapi(system, service)
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"]), document["openapi"]
    assert set(document) <= {
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    }
    assert isinstance(document["info"]["title"], str)
    assert isinstance(document["info"]["version"], str)
    # The official OpenAPI 3.1 schema (as schemathesis ships it), then every JSON Schema in the document.
    OPENAPI_31_VALIDATOR.validate(document)
    for at, schema in schemas_in(document):
        assert jsonschema_rs.meta.is_valid(schema), at
    schemes = document["components"].get("securitySchemes", {})
    used = {name for op in operations(document).values() for req in op.get("security", []) for name in req}
    assert set(schemes) == used, "exactly the security schemes some operation uses are declared"
    for scheme in schemes.values():
        assert scheme["type"] in {"apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"}, scheme
        if scheme["type"] == "http":
            assert isinstance(scheme["scheme"], str), scheme
    for name in document["components"]["schemas"]:
        assert re.fullmatch(r"[a-zA-Z0-9._-]+", name), name
    operation_ids = []
    for path, item in document["paths"].items():
        assert path.startswith("/"), path
        assert set(item) <= PATH_ITEM_FIELDS, (path, set(item))
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            operation_ids.append(op["operationId"])
            assert isinstance(op.get("summary", ""), str), where
            params = op.get("parameters", [])
            for param in params:
                assert param["in"] in {"path", "query", "header", "cookie"}, (where, param)
                assert isinstance(param["name"], str), (where, param)
                assert "schema" in param or "content" in param, (where, param)
                if param["in"] == "path":
                    assert param["required"] is True, (where, param)
                if param["in"] == "path" and param["name"].endswith("_id"):
                    assert param["schema"] == {"type": "string", "format": "uuid"}, (where, param)
            assert {p["name"] for p in params if p["in"] == "path"} == templated, where
            assert len({(p["name"], p["in"]) for p in params}) == len(params), where
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                assert content, where
                assert all(MEDIA_TYPE.match(media) for media in content), (where, content)
            assert op["responses"], where
            for code, response in op["responses"].items():
                assert RESPONSE_KEY.match(code), (where, code)
                assert isinstance(response["description"], str), (where, code)
                for media, body in response.get("content", {}).items():
                    assert MEDIA_TYPE.match(media), (where, media)
                    assert isinstance(body["schema"], dict), (where, media)
            for requirement in op.get("security", []):
                assert set(requirement) <= set(schemes), (where, requirement)
    assert len(operation_ids) == len(set(operation_ids)), "operationIds are unique"
    for ref in refs_in(document):
        resolve(document, ref)


@pytest.mark.parametrize("service", SERVICES)
async def test_the_document_lists_exactly_the_routes_the_app_serves(system: System, service: str) -> None:
    document = await openapi(system, service)
    assert set(operations(document)) == served_routes(system, service)


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_documents_exactly_the_errors_its_shape_and_its_route_give(
    system: System, service: str
) -> None:
    document = await openapi(system, service)
    ops = operations(document)
    for route in system.services[service].app[SPEC].routes:
        responses = ops[(route.method, route.path)]["responses"]
        errors = {int(code) for code in responses if int(code) >= 400}
        assert errors == expected_errors(route), (route.method, route.path)
        for code in errors:
            response = responses[str(code)]
            assert response["content"] == {"application/json": {"schema": ERROR_REF}}, (route.path, code)
            headers = response.get("headers", {})
            if code == 401:
                assert headers["WWW-Authenticate"]["required"] is True
            if code in (429, 503):
                assert headers["Retry-After"]["schema"] == {"type": "string", "pattern": "^[0-9]+$"}
            if code not in (401, 429, 503):
                assert headers == {}, (route.path, code)
    error = resolve(document, ERROR_REF["$ref"])
    shaped = {"error": {"code": "not_found", "message": "no such post", "details": None}}
    assert problems(error, shaped, document) == []
    assert problems(error, {"message": "no such post"}, document)
    assert problems(error, {"error": {"code": 404}}, document)


def expected_errors(route: Route) -> set[int]:
    """What a route can answer with besides success (500 aside), from how shared/http.py and
    shared/tokens.py treat requests, plus what its handler adds (``route.errors``)."""
    expected = set(route.errors)
    if route.body is not None:
        expected |= {400, 413, 415, 422}  # malformed JSON, too large, not JSON, invalid
    if route.raw_body:
        expected |= {413, 415}
    if route.query is not None:
        expected.add(422)
    if "{" in route.path:
        expected.add(404)  # path_id: no such thing, or none the caller may see
    if route.auth != "none":
        expected.add(401)
    if route.auth in ("bearer", "optional"):
        expected.add(503)  # the keys to check a token with are out of reach
    return expected


def example_bodies(subscription: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """A body each JSON-taking endpoint accepts (the same the services accept in tests/test_bad_input.py)."""
    email = "juf.anna@school.example.nl"
    person = {"email": email, "display_name": "Juf Anna", "locale": "nl"}
    token = "Jq8vYl0y3xv4-3mJ8x2c_mQ1bXlV2qjK7yW0fT5sR6A"
    return {
        ("POST", "/schools"): {
            "name": "Basisschool De Regenboog",
            "time_zone": "Europe/Amsterdam",
            "locale": "nl",
            "admin": {**person, "password": PASSWORD},
        },
        ("PATCH", "/schools/{school_id}"): {
            "name": "De Regenboog",
            "time_zone": "Europe/Brussels",
            "locale": "en",
            "max_posts_per_day": 3,
            "min_posts_per_week": 1,
            "digest_time": "18:30",
            "photo_retention_days": 365,
            "share_notice": "Deel geen foto's.",
            "access_code_days": 30,
            "reminder_days": 7,
            "max_reminders": 2,
        },
        ("POST", "/schools/{school_id}/school-years"): {
            "name": "2027-2028",
            "starts_on": "2027-08-01",
            "ends_on": "2028-07-31",
        },
        ("POST", "/school-years/{school_year_id}/promotion"): {
            "from_school_year": "2026-2027",
            "groups": [{"from_group_id": str(uuid.uuid4()), "name": "Groep 4B", "teachers": []}],
            "leave_out": [str(uuid.uuid4())],
            "final_grade": 8,
            "dry_run": True,
        },
        ("POST", "/schools/{school_id}/groups"): {"name": "Groep 3B", "school_year": "2026-2027"},
        ("PATCH", "/groups/{group_id}"): {"name": "Groep 3C"},
        ("POST", "/schools/{school_id}/staff"): {**person, "role": "teacher"},
        ("POST", "/schools/{school_id}/children"): {
            "given_name": "Sem",
            "tussenvoegsel": "de",
            "family_name": "Vries",
            "date_of_birth": "2019-03-14",
            "photo_consent": True,
            "external_id": "10234",
            "group_id": str(uuid.uuid4()),
            "guardians": [{"email": "ouder@example.nl", "display_name": "Mama de Vries"}],
        },
        ("PATCH", "/children/{child_id}"): {
            "given_name": "Semmie",
            "tussenvoegsel": "",
            "family_name": "de Vries",
            "date_of_birth": None,
            "photo_consent": False,
        },
        ("PUT", "/children/{child_id}/placement"): {"group_id": str(uuid.uuid4())},
        ("POST", "/children/{child_id}/leave"): {"left_on": "2027-01-31"},
        ("POST", "/children/{child_id}/guardians"): {"email": "papa@example.nl", "display_name": "Papa"},
        ("POST", "/access-codes/redeem"): {
            "code": "KD7M-3QXZ-PA4R-9TNF",
            "display_name": "Mama de Vries",
            "password": PASSWORD,
            "locale": "nl",
        },
        ("POST", "/auth/login"): {"email": email, "password": PASSWORD},
        ("POST", "/auth/refresh"): {"refresh_token": token},
        ("POST", "/auth/logout"): {"refresh_token": token},
        ("POST", "/auth/password-reset"): {"email": email},
        ("POST", "/auth/password"): {"token": token, "password": PASSWORD},
        ("PATCH", "/me"): {"display_name": "Anna", "locale": "en"},
        ("POST", "/groups/{group_id}/posts"): {
            "title": "Gym",
            "body": "Morgen gym!",
            "photo_ids": [str(uuid.uuid4())],
        },
        ("PATCH", "/posts/{post_id}"): {"title": "Gym gaat niet door"},
        ("POST", "/schools/{school_id}/announcements"): {
            "title": "Studiedag",
            "body": "Vrijdag is er geen school.",
            "group_ids": [str(uuid.uuid4())],
        },
        ("POST", "/devices"): {"subscription": subscription},
        ("PUT", "/photos/{photo_id}/children"): {"child_ids": [str(uuid.uuid4())]},
        ("POST", "/groups/{group_id}/helper-lists"): {
            "title": "Excursie naar het Rijksmuseum",
            "description": "Wie rijdt er mee?",
            "activity_on": "2027-06-12",
            "deadline": "2027-06-05T18:00:00+02:00",
            "items": [{"title": "Rijden", "capacity": 4}],
        },
        ("PATCH", "/helper-lists/{list_id}"): {
            "title": "Excursie naar Artis",
            "description": None,
            "activity_on": "2027-06-19",
            "deadline": "2027-06-12T18:00:00+02:00",
        },
        ("PATCH", "/helper-lists/{list_id}/items/{item_id}"): {"title": "Rijden (heen)", "capacity": 5},
        ("PUT", "/preferences"): {
            "posts": {"channel": "both", "timing": "immediate"},
            "signups": {"channel": "email", "timing": "digest"},
            "reminders": {"channel": "auto"},
            "quiet_hours": {"starts": "21:00", "ends": "07:00"},
        },
        ("POST", "/conferences"): {
            "group_ids": [str(uuid.uuid4())],
            "title": "Tienminutengesprekken",
            "location": "Lokaal 3B",
            "days": [{"date": "2027-03-29", "ranges": [{"start": "15:00", "end": "17:00"}]}],
            "slot_minutes": 10,
            "break_minutes": 0,
            "child_ids": [str(uuid.uuid4())],
            "opens_at": "2027-03-15T08:00:00+01:00",
            "early_opens_at": "2027-03-14T08:00:00+01:00",
            "closes_at": "2027-03-25T18:00:00+01:00",
            "change_deadline": "2027-03-26T12:00:00+01:00",
        },
        ("POST", "/conferences/{schedule_id}/bookings"): {
            "slot_id": str(uuid.uuid4()),
            "child_id": str(uuid.uuid4()),
        },
        ("PUT", "/conference-bookings/{booking_id}/slot"): {"slot_id": str(uuid.uuid4())},
    }


async def test_the_request_schemas_accept_a_valid_body_and_refuse_wrong_ones(system: System) -> None:
    _, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    examples = example_bodies(system.push.subscribe(key["application_server_key"]))
    documented = set()
    for service in SERVICES:
        document = await openapi(system, service)
        for (method, path), op in operations(document).items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            documented.add((method, path))
            schema = content["application/json"]["schema"]
            body = examples[(method, path)]
            assert problems(schema, body, document) == [], (method, path)
            assert problems(schema, {**body, "is_admin": True}, document), (
                f"{method} {path} takes unknown fields"
            )
            for name in body:
                without = {k: v for k, v in body.items() if k != name}
                required = name in resolve(document, schema["$ref"]).get("required", [])
                assert bool(problems(schema, without, document)) == required, (method, path, name)
            assert problems(schema, [body], document), (method, path)
    assert documented == set(examples)


async def test_the_photo_upload_documents_its_raw_image_body(system: System) -> None:
    document = await openapi(system, "media")
    upload = document["paths"]["/groups/{group_id}/photos"]["post"]
    (route,) = [r for r in system.services["media"].app[SPEC].routes if r.path == "/groups/{group_id}/photos"]
    assert set(upload["requestBody"]["content"]) == set(route.raw_body)
    assert {"image/jpeg", "image/png", "image/webp"} <= set(route.raw_body)
    for body in upload["requestBody"]["content"].values():
        assert body["schema"] == {"type": "string", "format": "binary"}


async def test_the_feed_documents_its_query_parameters(system: System) -> None:
    document = await openapi(system, "posts")
    params = {p["name"]: p for p in document["paths"]["/feed"]["get"]["parameters"]}
    assert set(params) == {"limit", "cursor"}
    assert all(p["in"] == "query" and p["required"] is False for p in params.values())
    assert problems(params["limit"]["schema"], 20, document) == []
    assert problems(params["limit"]["schema"], 0, document)
    assert problems(params["limit"]["schema"], 101, document)
    assert (
        problems(params["cursor"]["schema"], "eyJjcmVhdGVkX2F0IjoiMjAyNi0wOS0wMVQwODozMDowMFoifQ", document)
        == []
    )
    for refused in ("", "eyJj cmVh", "eyJj+cmVh/", "x" * 201):
        assert problems(params["cursor"]["schema"], refused, document), refused


class Answers:
    """Calls a service and checks each answer against what its document says for that status: the
    status is documented, the body matches its schema, the required headers are there."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.documents: dict[str, dict[str, Any]] = {}
        self.checked: set[tuple[str, str, str, int]] = set()

    async def call(
        self, method: str, service: str, template: str, token: str | None = None, **kwargs: Any
    ) -> Any:
        if service not in self.documents:
            self.documents[service] = await openapi(self.system, service)
        document = self.documents[service]
        path = template.format(**kwargs.pop("ids", {}))
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        assert self.system.http is not None
        async with self.system.http.request(
            method, self.system.url(service, path), headers=headers, **kwargs
        ) as answer:
            status, raw = answer.status, await answer.read()
            content_type, answer_headers = answer.content_type, answer.headers
        responses = document["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, (method, path, status, raw)
        response = responses[str(status)]
        for name, header in response.get("headers", {}).items():
            assert not header["required"] or name in answer_headers, (method, path, status, name)
        if status == 204:
            assert raw == b"", (method, path)
            body = None
        else:
            assert content_type == "application/json", (method, path, status)
            body = json.loads(raw)
            schema = response["content"]["application/json"]["schema"]
            assert problems(schema, body, document) == [], (method, path, status, body)
        self.checked.add((service, method, template, status))
        return body


async def test_every_answer_matches_its_documented_schema(system: System) -> None:
    _, group, teacher, parent = await make_class(system, "Groep 6")
    answers = Answers(system)
    ids = {"group_id": group}

    photo = await answers.call(
        "POST",
        "media",
        "/groups/{group_id}/photos",
        teacher.token,
        ids=ids,
        data=png_bytes(40, 30),
        headers={"Content-Type": "image/png"},
    )
    await answers.call(
        "POST",
        "media",
        "/groups/{group_id}/photos",
        parent.token,
        ids=ids,
        data=png_bytes(40, 30),
        headers={"Content-Type": "image/png"},
    )
    await answers.call(
        "GET", "media", "/photos/{photo_id}", teacher.token, ids={"photo_id": photo["photo_id"]}
    )
    await answers.call("GET", "media", "/photos/{photo_id}", parent.token, ids={"photo_id": uuid.uuid4()})

    post = await answers.call(
        "POST",
        "posts",
        "/groups/{group_id}/posts",
        teacher.token,
        ids=ids,
        json={"title": "Nieuws", "body": "Kijk eens!", "photo_ids": [photo["photo_id"]]},
    )
    await answers.call("GET", "posts", "/posts/{post_id}", parent.token, ids={"post_id": post["post_id"]})
    await answers.call(
        "POST",
        "posts",
        "/groups/{group_id}/posts",
        parent.token,
        ids=ids,
        json={"title": "Nieuws", "body": "Mag ik?"},
    )
    await answers.call(
        "POST",
        "posts",
        "/groups/{group_id}/posts",
        teacher.token,
        ids=ids,
        json={"title": "Nieuws", "body": "En nog een"},
    )
    page = await answers.call("GET", "posts", "/feed", parent.token, params={"limit": 1})
    await answers.call(
        "GET", "posts", "/feed", parent.token, params={"limit": 1, "cursor": page["next_cursor"]}
    )
    await answers.call("GET", "posts", "/feed", parent.token, params={"limit": 0})
    await answers.call("GET", "posts", "/feed")

    key = await answers.call("GET", "notifier", "/push/vapid-public-key")
    subscription = system.push.subscribe(key["application_server_key"])
    device = await answers.call(
        "POST", "notifier", "/devices", parent.token, json={"subscription": subscription}
    )
    listed = await answers.call("GET", "notifier", "/devices", parent.token)
    assert [d["device_id"] for d in listed["devices"]] == [device["device_id"]]
    await answers.call(
        "DELETE", "notifier", "/devices/{device_id}", parent.token, ids={"device_id": device["device_id"]}
    )
    await answers.call(
        "DELETE", "notifier", "/devices/{device_id}", parent.token, ids={"device_id": device["device_id"]}
    )
    # 16: the teacher's second post of the day is refused (409, seed rule 5).
    assert len(answers.checked) == 16


def schema_takes(document: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    """Whether a JSON Schema validator (jsonschema-rs: ECMA-262 patterns, formats asserted) takes it."""
    rooted = {**schema, "components": document["components"]}
    return bool(jsonschema_rs.validator_for(rooted, validate_formats=True).is_valid(value))


async def test_the_schemas_and_the_servers_agree_on_edge_cases(system: System) -> None:
    """For each value, the document's schema takes it exactly when the server does (201 or 200, not 422)."""
    _, group, teacher, parent = await make_class(system, "Groep 1")
    posts, notifier = await openapi(system, "posts"), await openapi(system, "notifier")
    disagree: list[tuple[str, Any, int]] = []

    post_schema = posts["paths"]["/groups/{group_id}/posts"]["post"]["requestBody"]["content"]
    texts = ["x", " x ", "", "   ", "\u3000", "\x1c", "\ufeff", "a\x00b", "a" + " " * 4998 + "b"]
    texts += ["a" * 5000, "a" * 5001, "a" * 5000 + "\n", "\n" + "a" * 5000 + " \u2028"]
    photo = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    photo_lists = [[photo], [photo.upper()], [photo.replace("-", "")], ["{" + photo + "}"], [photo, photo]]
    photo_lists += [[str(uuid.uuid4()) for _ in range(n)] for n in (20, 21)]
    bodies: list[dict[str, Any]] = [{"title": "Nieuws", "body": text} for text in texts]
    bodies += [{"title": "Foto's", "body": "Foto's", "photo_ids": ids} for ids in photo_lists]
    for body in bodies:
        status, answer = await system.call(
            "POST", "posts", f"/groups/{group}/posts", teacher.token, json=body
        )
        assert status in (201, 422), (body, status, answer)
        # A well-formed photo id that is no photo of the writer's is the business rules' refusal (named
        # photo_ids[i]), not the schema's (photo_ids.i): the schema took it.
        photos_refused = status == 422 and all(
            d["field"].startswith("photo_ids[") for d in answer["error"]["details"]
        )
        if schema_takes(posts, post_schema["application/json"]["schema"], body) != (
            status == 201 or photos_refused
        ):
            disagree.append(("posts", body, status))
        # Schemas, not the posting policy (one post a day), are under test here: free the day again.
        await system.services["posts"].app[POOL].execute("DELETE FROM post_days WHERE group_id = $1", group)

    _, key = await system.call("GET", "notifier", "/push/vapid-public-key")
    subscription = system.push.subscribe(key["application_server_key"])
    own = subscription["endpoint"]
    device_schema = notifier["paths"]["/devices"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    endpoints = [own, own.upper().replace("/PUSH/", "/push/"), own.replace("http://", "https://"), own + "\n"]
    endpoints += [
        own.replace("127.0.0.1", "localhost"),
        own.replace("http://", "http://u@"),
        "ftp://127.0.0.1/x",
    ]
    endpoints += ["https://[7e]/x", "https://127.0.0.1/a b", "https://127.0.0.1/%zz", own + "?a=b#c", ""]
    endpoints += ["https://127.0.0.1/" + "x" * 1010]
    for endpoint in endpoints:
        body = {"subscription": {**subscription, "endpoint": endpoint}}
        status, answer = await system.call("POST", "notifier", "/devices", parent.token, json=body)
        assert status in (201, 422), (endpoint, status, answer)
        # Hosts outside the deployment's allowed push services are refused beyond what a schema can say.
        refused_host = status == 422 and "is not a known push service" in str(answer)
        if not refused_host and schema_takes(notifier, device_schema, body) != (status == 201):
            disagree.append(("notifier", endpoint, status))

    feed = {p["name"]: p["schema"] for p in posts["paths"]["/feed"]["get"]["parameters"]}
    for name, text in [("limit", "5"), ("limit", "5.0"), ("limit", " 5"), ("limit", "+5"), ("limit", "101")]:
        status, _ = await system.call("GET", "posts", "/feed", parent.token, params={name: text})
        takes = re.fullmatch(r"-?[0-9]+", text) is not None and schema_takes(posts, feed[name], int(text))
        if takes != (status == 200):
            disagree.append(("feed", text, status))
    for text in ["", "a b", "x" * 201, "eyJj+cmVh"]:
        status, _ = await system.call("GET", "posts", "/feed", parent.token, params={"cursor": text})
        if schema_takes(posts, feed["cursor"], text) != (status == 200):
            disagree.append(("feed", text, status))
    assert disagree == []


def refused_by_name(status: int, answer: Any, field: str) -> None:
    assert status == 422, answer
    assert [d["field"] for d in answer["error"]["details"]] == [field], answer


async def test_identity_schemas_and_server_agree_on_edge_cases(system: System) -> None:
    """For each identity body, the schema takes it exactly when the server does not answer 422 (a 409
    is a conflict with what exists, not a refusal of the body); PATCH bodies refuse null by name."""
    school, group, _, _ = await make_class(system, "Groep 2")
    identity = await openapi(system, "identity")
    admin = school.admin.token
    disagree: list[tuple[str, Any, int]] = []

    async def check(method: str, template: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        schema = identity["paths"][template][method.lower()]["requestBody"]["content"]["application/json"]
        status, answer = await system.call(method, "identity", path, admin, json=body)
        assert status in (200, 201, 409, 422), (path, body, status, answer)
        if schema_takes(identity, schema["schema"], body) != (status != 422):
            disagree.append((template, body, status))
        return status, answer

    years = f"/schools/{school.school_id}/school-years"
    for name in ["2031-2032", "2033-2035", "1989-1990", "1990-1991", "2099-2100", "2100-2101", " 2041-2042"]:
        await check("POST", "/schools/{school_id}/school-years", years, {"name": name})
    for name in ["2051-2052\n", "20512052", "2O51-2052"]:
        await check("POST", "/schools/{school_id}/school-years", years, {"name": name})

    settings = f"/schools/{school.school_id}"
    zones = ["Europe/Amsterdam", "europe/amsterdam", "localtime", "posix/Europe/Amsterdam", "UTC", " UTC", ""]
    for zone in zones:
        await check("PATCH", "/schools/{school_id}", settings, {"time_zone": zone})
    for field in ["name", "time_zone", "locale", "max_posts_per_day", "digest_time", "share_notice"]:
        status, answer = await check("PATCH", "/schools/{school_id}", settings, {field: None})
        refused_by_name(status, answer, field)
    for text in ["  ", "x" * 500, " " + "x" * 500 + " ", "x" * 501]:
        await check("PATCH", "/schools/{school_id}", settings, {"share_notice": text})

    status, answer = await check("PATCH", "/groups/{group_id}", f"/groups/{group}", {"name": None})
    refused_by_name(status, answer, "name")
    for name in ["  ", "g" * 80, "\t" + "g" * 79 + " ", "g" * 81]:
        await check("PATCH", "/groups/{group_id}", f"/groups/{group}", {"name": name})
    status, answer = await check("PATCH", "/me", "/me", {"display_name": None})
    refused_by_name(status, answer, "display_name")

    status, child = await check(
        "POST",
        "/schools/{school_id}/children",
        f"/schools/{school.school_id}/children",
        {"given_name": " Sem ", "family_name": "Vries", "tussenvoegsel": " de "},
    )
    assert status == 201, child
    assert (child["given_name"], child["tussenvoegsel"]) == ("Sem", "de"), child
    update = f"/children/{child['child_id']}"
    for field in ["given_name", "tussenvoegsel", "family_name", "photo_consent"]:
        status, answer = await check("PATCH", "/children/{child_id}", update, {field: None})
        refused_by_name(status, answer, field)
    days = ["2024-02-29", "2023-02-29", "2000-02-29", "1990-01-01", "1989-12-31", "2099-12-31"]
    for day in [*days, "2100-01-01", "2019-04-31", "2019-4-01", None]:
        await check("PATCH", "/children/{child_id}", update, {"date_of_birth": day})
    for text in ["", "   ", "v" * 20, " " + "v" * 20 + " ", "v" * 21]:
        await check("PATCH", "/children/{child_id}", update, {"tussenvoegsel": text})

    guardians = f"/children/{child['child_id']}/guardians"
    emails = ["ouder@café.nl", "Ouder@Example.NL", "ouder@xn--caf-dma.nl", " ouder@example.nl"]
    emails += ["ouder@example.test", "ouder@EXAMPLE.LOCAL", "o..uder@example.nl", "ouder@ab--c.nl"]
    emails += ["o" * 64 + "@example.nl", "o" * 65 + "@example.nl", "ouder@example", "ouder@example.nl."]
    emails += ['"o"@example.nl', "ou der@example.nl", "ouder@" + "é." * 22 + "nl"]
    for address in emails:
        await check("POST", "/children/{child_id}/guardians", guardians, {"email": address})
    assert disagree == []


async def test_the_operator_endpoint_documents_the_operator_key(system: System) -> None:
    document = await openapi(system, "identity")
    op = document["paths"]["/schools"]["post"]
    schemes = document["components"]["securitySchemes"]
    keyed = [
        name
        for requirement in op.get("security", [])
        for name in requirement
        if schemes[name] == {"type": "apiKey", "in": "header", "name": "X-Operator-Key"}
        or schemes[name].get("name") == "X-Operator-Key"
    ]
    headers = [p for p in op.get("parameters", []) if p["in"] == "header" and p["name"] == "X-Operator-Key"]
    assert keyed or headers
    assert all("bearer" not in requirement for requirement in op.get("security", []))


@pytest.mark.parametrize("service", SERVICES)
async def test_healthz_says_ok(system: System, service: str) -> None:
    status, body = await system.call("GET", service, "/healthz")
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.parametrize("service", SERVICES)
async def test_readyz_reports_database_broker_and_consumer(system: System, service: str) -> None:
    consumes = bool(system.services[service].app[SPEC].handlers.by_type)
    # Identity owns its data and consumes no events; the other three keep copies fed by events.
    assert consumes == (service != "identity")
    expected = {"database": True, "broker": True} | ({"consumer": True} if consumes else {})
    for _ in range(3):
        status, body = await system.call("GET", service, "/readyz")
        assert (status, body) == (200, {"status": "ready", "checks": expected})
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("service", SERVICES)
async def test_metrics_report_the_outbox_backlog(system: System, service: str) -> None:
    status, body = await system.call("GET", service, "/metrics")
    assert status == 200
    text = body.decode()
    assert re.search(rf'^klaspost_outbox_unsent{{service="{service}"}} \d+$', text, re.MULTILINE), text
    assert re.search(
        rf'^klaspost_outbox_oldest_seconds{{service="{service}"}} [\d.]+$', text, re.MULTILINE
    ), text
