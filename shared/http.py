"""HTTP routes described once: the handler, what it takes and what it returns. The same list
registers the routes and generates ``/openapi.json``, so the document cannot drift from the code."""

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from shared.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.fields import is_uuid_text

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
    # How the caller proves who they are: an access token, the operator key, not at all, or an
    # access token when they have one ("optional": the handler acts on the caller if there is one).
    auth: Literal["bearer", "operator", "none", "optional"] = "bearer"
    # A raw (non-JSON) request body, e.g. a photo upload: its accepted content types.
    raw_body: tuple[str, ...] = ()
    query: type[BaseModel] | None = None
    # Error statuses beyond those that follow from the route's shape (see `error_statuses`):
    # 403 for a role check, 409, 422 for a raw body, 429 where attempts are counted, 503.
    errors: tuple[int, ...] = ()
    # Defaults to the handler's name; the document refuses two operations with one id.
    operation_id: str | None = None
    # Media types the success response also comes in besides JSON (chosen by Accept or a query
    # parameter), e.g. ("text/csv",); documented as text.
    also_as: tuple[str, ...] = ()


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
    try:
        # As JSON and strictly, as the schema reads: "1" is no integer, "true" no boolean, 1 no string.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _failed(exc) from exc


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
    """A UUID (8-4-4-4-12, as the documents' format "uuid") from the path; anything else is an id
    that cannot exist, so NotFound (404) like an unknown one."""
    text = request.match_info[name]
    if not is_uuid_text(text):
        raise NotFound(f"no such {name.removesuffix('_id')}")
    return uuid.UUID(text)


def read_query(request: web.Request, model: type[M]) -> M:
    return validate(model, dict(request.query))


def validate(model: type[M], data: Any) -> M:
    """``data`` (Python values, e.g. query strings) validated against ``model``, or ValidationFailed (422)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _failed(exc) from exc


def _failed(exc: ValidationError) -> ValidationFailed:
    return ValidationFailed(
        "some fields are missing or invalid",
        [
            {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ],
    )


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
            "properties": {
                "code": {"type": "string", "description": "Stable, e.g. not_found or validation_failed."},
                "message": {"type": "string", "description": "For people; may change."},
                "details": {
                    "description": "For 422 a list of {field, problem}; otherwise null or specific to the error."
                },
            },
        }
    },
}

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "operator": {"type": "apiKey", "in": "header", "name": "X-Operator-Key"},
}

_SUCCESS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content"}
_ERRORS = {
    400: "The body is not well-formed JSON",
    401: "No valid credentials: missing, malformed, expired or not for this service",
    403: "The caller's role does not allow this",
    404: "No such resource, or none the caller may see (ids cannot be probed)",
    409: "Conflicts with what exists",
    413: "The body is larger than this endpoint takes",
    415: "The body is not of a content type this endpoint takes",
    422: "Some fields or parameters are missing or invalid; details name each one",
    429: "Too many attempts; wait before trying again",
    503: "Something this service depends on is unavailable; try again later",
}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again, when the server knows.",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}


# What pydantic takes for a time of day from JSON and gives back: HH:MM[:SS[.fraction]][offset].
TIME_PATTERN = (
    r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?$"
)


class _JsonSchemas(GenerateJsonSchema):
    """pydantic's JSON Schema, except where OpenAPI 3.1 validators would read it otherwise."""

    def time_schema(self, schema: core_schema.TimeSchema) -> JsonSchemaValue:
        # Format "time" is RFC 3339 full-time, which needs an offset; pydantic's times have none.
        return {"type": "string", "pattern": TIME_PATTERN}


def path_parameters(path: str) -> list[str]:
    """The names of a path's ``{templated}`` segments, in order."""
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def error_statuses(route: Route) -> list[int]:
    """Every error status the route can answer with (500 aside), from its shape and ``route.errors``.

    A JSON body can be malformed (400), too large (413), of another type (415) or invalid (422); a raw
    body can be too large or of another type; query parameters can be invalid (422); a path id can
    name nothing the caller may see (404, see `path_id`); a token can be missing or bad (401), and the
    keys to check it with unreachable (503, see shared.tokens).
    """
    found = set(route.errors)
    if route.body is not None:
        found |= {400, 413, 415, 422}
    if route.raw_body:
        found |= {413, 415}
    if route.query is not None:
        found.add(422)
    if path_parameters(route.path):
        found.add(404)
    if route.auth != "none":
        found.add(401)
    if route.auth in ("bearer", "optional"):
        found.add(503)
    unknown = found - set(_ERRORS)
    if unknown:
        raise ValueError(f"{route.method} {route.path}: no description for error statuses {sorted(unknown)}")
    return sorted(found)


def openapi_document(title: str, version: str, routes: list[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``: every status each route answers with, schemas as the
    models validate (bodies, query) and serialise (responses), and only the security schemes in use.

    Raises ValueError when two routes share an operationId or a route names an undescribed status.
    """
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for route in routes:
        if route.body is not None:
            models.append((route.body, "validation"))
        if route.response is not None:
            models.append((route.response, "serialization"))
    refs, definitions = models_json_schema(
        models, ref_template="#/components/schemas/{model}", schema_generator=_JsonSchemas
    )
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, **definitions.get("$defs", {})}
    paths: dict[str, Any] = {}
    operation_ids: set[str] = set()
    schemes: set[str] = set()

    for route in routes:
        operation_id = route.operation_id or route.handler.__name__
        if operation_id in operation_ids:
            raise ValueError(f"two operations are called {operation_id!r}: set Route.operation_id")
        operation_ids.add(operation_id)
        op: dict[str, Any] = {"summary": route.summary, "operationId": operation_id}
        params = [_path_parameter(name) for name in path_parameters(route.path)]
        if route.query is not None:
            params += _query_parameters(route.query, schemas)
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
            }
        elif route.raw_body:
            op["requestBody"] = {
                "required": True,
                "content": {ct: {"schema": {"type": "string", "format": "binary"}} for ct in route.raw_body},
            }
        ok: dict[str, Any] = {"description": _SUCCESS.get(route.status, "Success")}
        if route.response is not None:
            ok["content"] = {"application/json": {"schema": refs[(route.response, "serialization")]}}
        for media_type in route.also_as:
            ok.setdefault("content", {})[media_type] = {"schema": {"type": "string"}}
        op["responses"] = {str(route.status): ok} | {
            str(status): _error_response(status) for status in error_statuses(route)
        }
        if route.auth == "optional":
            op["security"] = [{"bearer": []}, {}]
            schemes.add("bearer")
        elif route.auth != "none":
            op["security"] = [{route.auth: []}]
            schemes.add(route.auth)
        paths.setdefault(route.path, {})[route.method.lower()] = op
    components: dict[str, Any] = {"schemas": schemas}
    if schemes:
        components["securitySchemes"] = {name: SECURITY_SCHEMES[name] for name in sorted(schemes)}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": components,
    }


def _path_parameter(name: str) -> dict[str, Any]:
    # Every `..._id` is a UUID: `path_id` answers 404 for anything else.
    schema = {"type": "string", "format": "uuid"} if name.endswith("_id") else {"type": "string"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_parameters(model: type[BaseModel], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="validation", schema_generator=_JsonSchemas
    )
    schemas.update(schema.pop("$defs", {}))
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        prop.pop("title", None)
        param["schema"] = prop
        params.append(param)
    return params


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter is left out, never null: ``anyOf [X, null]`` becomes X."""
    options = prop.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        (kept,) = (option for option in options if option != {"type": "null"})
        prop = {k: v for k, v in prop.items() if k != "anyOf"} | cast(dict[str, Any], kept)
    if prop.get("default", "") is None:
        prop = {k: v for k, v in prop.items() if k != "default"}
    return prop


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _ERRORS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response
