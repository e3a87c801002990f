"""HTTP handlers of the class-list import: upload a CSV (dry run or apply), then follow the job."""

import uuid

import asyncpg
from aiohttp import web

from identity.access import require_admin, require_admin_of
from identity.imports import runner, store
from identity.imports.domain import MAX_BYTES, MAX_ROWS, ImportQuery, ImportView
from identity.imports.parsing import read_table
from shared.app import POOL
from shared.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.http import json_response, path_id, read_query
from shared.tokens import require_caller

# Browsers on Windows send a .csv as application/vnd.ms-excel; the bytes decide what it is anyway.
ACCEPTED_TYPES = ("text/csv", "application/csv", "text/plain", "application/vnd.ms-excel")
_CHUNK = 256 * 1024


async def _read_file(request: web.Request) -> bytes:
    """The body, at most MAX_BYTES (413 beyond, before reading it all when the length is announced)."""
    too_large = PayloadTooLarge(f"a class list may be at most {MAX_BYTES // (1024 * 1024)} MB")
    if request.content_length is not None and request.content_length > MAX_BYTES:
        raise too_large
    data = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        data += chunk
        if len(data) > MAX_BYTES:
            raise too_large
    return bytes(data)


async def start_import(request: web.Request) -> web.Response:
    """Take the file, check it can be read at all (422 otherwise), and start the import job (202).

    An apply (dry_run=false) of a file with bad rows is refused at once with 422 listing every row,
    unless skip_invalid=true; the job then plans again under the school's import lock and writes.
    """
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    query = read_query(request, ImportQuery)
    if request.content_type not in ACCEPTED_TYPES:
        raise UnsupportedMediaType("send the class list as CSV with Content-Type: text/csv")
    async with request.app[POOL].acquire() as conn:
        await require_admin(conn, caller, school_id)
        year = await store.school_year(conn, school_id, query.school_year)
    if year is None:
        problem = (
            "no such school year" if query.school_year else "the school has no current school year; name one"
        )
        raise ValidationFailed(
            "some fields are missing or invalid", [{"field": "school_year", "problem": problem}]
        )
    table = read_table(await _read_file(request), query.mapping_dict(), MAX_ROWS)
    import_id = uuid.uuid4()
    # An apply that would refuse is told so now; its rows, checked here, are not checked again.
    rows = await runner.check(table) if not query.dry_run and not query.skip_invalid else None
    async with request.app[POOL].acquire() as conn:
        if rows is not None:
            plan = await runner.make_plan(
                conn, school_id, year["school_year_id"], table, query.create_groups, rows
            )
            if plan.errors:
                raise ValidationFailed(
                    f"{len(plan.invalid_lines)} rows have problems: fix them, or apply with skip_invalid=true",
                    [
                        {"field": f"line {e.line}" + (f": {e.column}" if e.column else ""), **e.model_dump()}
                        for e in plan.errors
                    ],
                )
        await store.insert_import(
            conn,
            {
                "import_id": import_id,
                "school_id": school_id,
                "school_year_id": year["school_year_id"],
                "created_by": caller.person_id,
                "dry_run": query.dry_run,
                "skip_invalid": query.skip_invalid,
                "create_groups": query.create_groups,
                "encoding": table.encoding,
                "delimiter": table.delimiter,
                "columns": table.columns,
                "rows_total": len(table.rows),
            },
        )
        view = await _view(conn, import_id)
    runner.start(
        request.app,
        runner.Job(
            import_id=import_id,
            school_id=school_id,
            school_year_id=year["school_year_id"],
            table=table,
            rows=rows,
            dry_run=query.dry_run,
            skip_invalid=query.skip_invalid,
            create_groups=query.create_groups,
        ),
    )
    return json_response(view, status=202, headers={"Location": f"/imports/{import_id}"})


async def get_import(request: web.Request) -> web.Response:
    """The import's progress and outcome, for admins of its school (404 for anyone else)."""
    caller = require_caller(request)
    import_id = path_id(request, "import_id")
    async with request.app[POOL].acquire() as conn:
        await require_admin_of(conn, caller, "imports", "import_id", import_id, "import")
        view = await _view(conn, import_id)
    return json_response(view)


async def _view(conn: asyncpg.Connection, import_id: uuid.UUID) -> ImportView:
    row = await store.import_view(conn, import_id)
    assert row is not None
    return ImportView.model_validate(dict(row))
