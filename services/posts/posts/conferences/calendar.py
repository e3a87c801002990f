"""Bookings as iCalendar (RFC 5545), made by the ``icalendar`` library: one VEVENT per booking with
its start and end in the school's local time (``DTSTART;TZID=Europe/Amsterdam:...``) and the
school's VTIMEZONE, so that calendar apps show the right time on either side of a daylight-saving
change. A parent's event names the child's given name only; nothing else of the family goes in."""

from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
from icalendar import Calendar, Event, vText

from posts.conferences.domain import in_zone

PRODUCT_ID = "-//Klaspost//Oudergesprekken//NL"
MEDIA_TYPE = "text/calendar"


def calendar(bookings: Iterable[asyncpg.Record], name: str, now: datetime | None = None) -> bytes:
    """The VCALENDAR of ``bookings`` (rows as posts.conferences.store reads a booking: times, title,
    location, the school's time_zone, the child's given_name), with a VTIMEZONE for each zone used."""
    stamp = now or datetime.now(UTC)
    cal = Calendar()
    cal.add("prodid", PRODUCT_ID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    # An X- property is not escaped unless it is given as TEXT: a title with a line break would
    # make icalendar refuse the whole file.
    cal.add("x-wr-calname", vText(name))
    for row in bookings:
        event = Event()
        event.add("uid", f"{row['booking_id']}@klaspost")
        event.add("dtstamp", stamp)
        event.add("dtstart", in_zone(row["starts_at"], row["time_zone"]))
        event.add("dtend", in_zone(row["ends_at"], row["time_zone"]))
        child = row["given_name"]
        event.add("summary", f"{row['title']}: {child}" if child else row["title"])
        if row["location"]:
            event.add("location", row["location"])
        cal.add_component(event)
    cal.add_missing_timezones()
    data: bytes = cal.to_ical()
    return data
