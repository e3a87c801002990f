"""HTTP routes described once: the handler, what it takes and what it returns. The same list
registers the routes and generates ``/openapi.json``, so the document cannot drift from the code."""

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from shared.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    # How the caller proves who they are: an access token, the operator key, or not at all.
    auth: Literal["bearer", "operator", "none"] = "bearer"
    # A raw (non-JSON) request body, e.g. a photo upload: its accepted content types.
    raw_body: tuple[str, ...] = ()
    query: type[BaseModel] | None = None


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request body validated against ``model``: 415, 413, 400 (malformed) or 422 (naming the fields)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge("the body is too large for this endpoint") from exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the body is not valid JSON", {"position": getattr(exc, "pos", None)}) from exc
    except RecursionError as exc:
        raise BadRequest("the body is nested too deeply") from exc
    nul = _path_of_nul(data)
    if nul is not None:
        # PostgreSQL text cannot hold U+0000, and no person types it: refuse it here, for every field.
        raise ValidationFailed(
            "some fields are missing or invalid", [{"field": nul, "problem": "contains a NUL character"}]
        )
    return validate(model, data)


def _path_of_nul(data: Any, path: str = "") -> str | None:
    if isinstance(data, str):
        return (path or "(body)") if "\x00" in data else None
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if isinstance(key, str) and "\x00" in key:
            return f"{path}.{key}".lstrip(".")
        found = _path_of_nul(value, f"{path}.{key}".lstrip("."))
        if found is not None:
            return found
    return None


def path_id(request: web.Request, name: str) -> uuid.UUID:
    """A UUID from the path; anything else is an id that cannot exist, so 404 like an unknown one."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {name.removesuffix('_id')}") from None


def read_query(request: web.Request, model: type[M]) -> M:
    return validate(model, dict(request.query))


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "some fields are missing or invalid",
            [
                {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "problem": err["msg"]}
                for err in exc.errors(include_url=False, include_input=False)
            ],
        ) from exc


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json", headers=headers
    )


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}


def openapi_document(title: str, version: str, routes: list[Route]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    for route in routes:
        op: dict[str, Any] = {"summary": route.summary, "operationId": route.handler.__name__}
        params = [
            {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for part in route.path.split("/")
            if part.startswith("{")
        ]
        if route.query is not None:
            qschema = route.query.model_json_schema()
            params += [
                {"name": name, "in": "query", "required": name in qschema.get("required", []), "schema": prop}
                for name, prop in qschema["properties"].items()
            ]
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(route.body)}},
            }
        elif route.raw_body:
            op["requestBody"] = {
                "required": True,
                "content": {ct: {"schema": {"type": "string", "format": "binary"}} for ct in route.raw_body},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            ok["content"] = {"application/json": {"schema": ref(route.response)}}
        error = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        op["responses"] = {str(route.status): ok, "4XX": error}
        if route.auth != "none":
            op["security"] = [{route.auth: []}]
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "operator": {"type": "apiKey", "in": "header", "name": "X-Operator-Key"},
            },
        },
    }
