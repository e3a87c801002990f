"""GET /schools/{school_id}/posting-report: seed rule 5 per group per week of a school year, for the
school's admins (posts' staff copy), as JSON or CSV."""

import csv
import io
import uuid

import asyncpg
from aiohttp import web

from posts.weekly import store
from posts.weekly.domain import CSV_COLUMNS, PostingReport, ReportQuery, ReportWeek, csv_row, iso_week
from shared.app import POOL
from shared.errors import NotFound
from shared.http import json_response, path_id, read_query
from shared.staff_copy import is_admin
from shared.tokens import require_caller


class ReportDialect(csv.Dialect):
    """RFC 4180: comma-separated, CRLF line ends, fields quoted when they hold a comma, quote or line
    break, quotes doubled. Spreadsheets in any locale read it with the text-import defaults."""

    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL


async def posting_report(request: web.Request) -> web.Response:
    """Every group of the school year and every week of it that has begun: the group's own posts that
    week, what the school asks, whether that was met, the most on one day, and whether the teachers
    were reminded (seed rule 5). 404 unless the caller administers the school; an unknown year gives
    an empty list (its groups may not have reached this service yet)."""
    caller = require_caller(request)
    school_id = path_id(request, "school_id")
    query = read_query(request, ReportQuery)
    async with request.app[POOL].acquire() as conn:
        if not await is_admin(conn, school_id, caller.person_id):
            raise NotFound("no such school")
        policy = await store.school_policy(conn, school_id)
        rows = await store.report_weeks(conn, school_id, query.school_year, policy["today"])
    report = build_report(school_id, query.school_year, policy, rows)
    if query.format == "csv" or (query.format is None and "text/csv" in request.headers.get("Accept", "")):
        return csv_response(report)
    return json_response(report)


def build_report(
    school_id: uuid.UUID, school_year: str, policy: asyncpg.Record, rows: list[asyncpg.Record]
) -> PostingReport:
    """The report from store.school_policy's and store.report_weeks' rows; met is judged against the
    school's minimum now (the copy keeps no history of the setting)."""
    at_least = policy["min_posts_per_week"]
    return PostingReport(
        school_id=school_id,
        school_year=school_year,
        time_zone=policy["time_zone"],
        max_posts_per_day=policy["max_posts_per_day"],
        min_posts_per_week=at_least,
        weeks=[
            ReportWeek(
                group_id=r["group_id"],
                group_name=r["name"],
                week=iso_week(r["monday"]),
                week_starts_on=r["monday"],
                posts=r["posts"],
                min_posts_per_week=at_least,
                met=r["posts"] >= at_least,
                most_posts_on_one_day=r["most_on_one_day"],
                reminded=r["reminded"],
            )
            for r in rows
        ],
    )


def report_csv(report: PostingReport) -> str:
    """The report as CSV text (ReportDialect), a header row first."""
    out = io.StringIO()
    writer = csv.writer(out, dialect=ReportDialect)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(week) for week in report.weeks)
    return out.getvalue()


def csv_response(report: PostingReport) -> web.Response:
    return web.Response(
        text=report_csv(report),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="posting-report-{report.school_year}.csv"'},
    )
