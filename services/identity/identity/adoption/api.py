"""GET /schools/{id}/adoption: families reached per group and for the school, as JSON or CSV."""

import csv
import io

from aiohttp import web

from identity.access import require_admin
from identity.adoption import store
from identity.adoption.domain import Adoption, AdoptionQuery, Figures, GroupAdoption, figures
from shared.app import POOL
from shared.errors import NotFound
from shared.http import json_response, path_id, read_query
from shared.tokens import require_caller

HEADERS = {
    "nl": ["groep", "geplaatst", "uitgenodigd", "gekoppeld", "openstaand", "bereikt_procent"],
    "en": ["group", "placed", "invited", "linked", "pending", "reached_percent"],
}
WHOLE_SCHOOL = {"nl": "Hele school", "en": "Whole school"}


async def adoption(request: web.Request) -> web.Response:
    """Placed, invited, linked and pending families (children) per group of the school year (default
    the current one) and for the school, with the share reached (seed rule 10). 404 for an unknown
    year, or when the school has no current year and none is named."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    query = read_query(request, AdoptionQuery)
    async with request.app[POOL].acquire() as conn:
        await require_admin(conn, caller, school_id)
        year = await store.year_of(conn, school_id, query.school_year)
        if year is None:
            raise NotFound(
                "no such school year" if query.school_year else "the school has no current school year"
            )
        rows = await store.per_group(conn, year["school_year_id"])
        locale = await conn.fetchval("SELECT locale FROM schools WHERE school_id = $1", school_id)
    groups = [
        GroupAdoption(
            group_id=r["group_id"],
            name=r["name"],
            **figures(r["placed"], r["invited"], r["linked"]).model_dump(),
        )
        for r in rows
    ]
    whole = figures(*(sum(getattr(g, k) for g in groups) for k in ("placed", "invited", "linked")))
    result = Adoption(school_id=school_id, school_year=year["name"], groups=groups, school=whole)
    if query.format == "csv" or (query.format is None and "text/csv" in request.headers.get("Accept", "")):
        return _csv(result, locale)
    return json_response(result)


def _csv(result: Adoption, locale: str) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS[locale])

    def row(name: str, f: Figures) -> list[object]:
        percent = "" if f.reached_percent is None else f"{f.reached_percent:.1f}"
        return [_cell(name), f.placed, f.invited, f.linked, f.pending, percent]

    writer.writerows(row(g.name, g) for g in result.groups)
    writer.writerow(row(WHOLE_SCHOOL[locale], result.school))
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="adoption-{result.school_year}.csv"'},
    )


def _cell(text: str) -> str:
    # A name a spreadsheet would read as a formula is kept as text (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
