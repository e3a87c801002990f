"""The middlewares every service runs: correlation ids on requests, one JSON shape for errors."""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from shared.errors import AppError
from shared.logs import correlation_id

log = logging.getLogger(__name__)


# Polled every few seconds by orchestrators: logging each would drown the lines that matter.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
# A request slower than this is logged at INFO whatever it was.
SLOW_REQUEST_MS = 250.0


def _logged_path(request: web.Request) -> str:
    """The path as logged: a route whose path carries a secret (``{token}``: a calendar feed, an
    unsubscribe link) by its template, since logs are kept longer and read more widely than the secret."""
    info = request.match_info
    resource = info.route.resource if "token" in info else None
    return resource.canonical if resource is not None else request.path


def _request_level(method: str, status: int, duration_ms: float) -> int:
    """INFO for what an operator wants to read back: writes, errors (4xx and 5xx) and slow requests.
    A quick successful read is DEBUG: one line for each cost 5 % of a feed request and 44 MB of log in
    three minutes of load, and says nothing the metrics do not."""
    if method in ("GET", "HEAD") and status < 400 and duration_ms < SLOW_REQUEST_MS:
        return logging.DEBUG
    return logging.INFO


@web.middleware
async def correlation_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Take the caller's X-Correlation-Id (or make one); it rides along into every event and log line."""
    incoming = request.headers.get("X-Correlation-Id", "")
    cid = (
        incoming
        if 0 < len(incoming) <= 64 and incoming.isascii() and incoming.isprintable()
        else uuid.uuid4().hex
    )
    token = correlation_id.set(cid)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        response.headers["X-Correlation-Id"] = cid
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        duration_ms = (time.perf_counter() - started) * 1000
        level = _request_level(request.method, status, duration_ms)
        if log.isEnabledFor(level) and request.path not in _PROBES:
            log.log(
                level,
                "request",
                extra={
                    "method": request.method,
                    "path": _logged_path(request),
                    "status": status,
                    "duration_ms": round(duration_ms, 2),
                },
            )
        correlation_id.reset(token)


def error_body(code: str, message: str, details: object = None) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(exc: AppError) -> web.Response:
    """The answer to a domain error, with the headers its status promises in the OpenAPI documents:
    WWW-Authenticate on 401, Retry-After when the error knows how long to wait; never sniffed into another
    type (a photo endpoint promises nosniff on every answer, also a token refused before its handler)."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    headers["X-Content-Type-Options"] = "nosniff"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return web.json_response(
        error_body(exc.code, exc.message, exc.details), status=exc.status, headers=headers
    )


_HTTP_CODES = {
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
    503: "unavailable",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error leaves in one JSON shape; unexpected ones as a 500 without internals."""
    try:
        response = await handler(request)
    except AppError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "error")
        message = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(
            exc.status, exc.reason
        )
        if exc.status == 413:
            message = "the body is too large for this endpoint"
        # Keep what the exception says beyond the body, such as the Allow header of a 405.
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
        }
        return web.json_response(error_body(code, message), status=exc.status, headers=headers)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        log.exception("unhandled error", extra={"path": _logged_path(request)})
        return web.json_response(error_body("internal", "something went wrong on our side"), status=500)
    if response.status == 401 and not response.prepared:
        # Also when a handler rendered its own 401: the documents promise the header (RFC 9110 11.6.1).
        response.headers.setdefault("WWW-Authenticate", "Bearer")
    return response
