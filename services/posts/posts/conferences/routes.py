"""Conferences' routes, added to posts' route list in posts/app.py."""

from posts.conferences import api
from posts.conferences.calendar import MEDIA_TYPE
from posts.conferences.domain import (
    BookingView,
    BookSlot,
    CalendarFeedList,
    CalendarFeedView,
    CreateSchedule,
    MoveBooking,
    MySchedules,
    ScheduleOverview,
    ScheduleView,
)
from shared.http import Route

routes = [
    Route(
        "POST",
        "/conferences",
        api.create_schedule,
        "A teacher of the groups (or a school admin) plans parent-teacher conferences; announced in the groups' feeds",
        body=CreateSchedule,
        response=ScheduleView,
        status=201,
        errors=(403,),
    ),
    Route(
        "GET",
        "/conferences/mine",
        api.my_schedules,
        "The caller's children's conference schedules side by side, with their bookings",
        response=MySchedules,
    ),
    Route(
        "GET",
        "/conferences/{schedule_id}",
        api.get_schedule,
        "A conference schedule: other families' slots show only as taken",
        response=ScheduleView,
    ),
    Route(
        "GET",
        "/conferences/{schedule_id}/overview",
        api.get_overview,
        "The staff's view: every booking with the child's name, and the children not booked yet",
        response=ScheduleOverview,
        errors=(403,),
    ),
    Route(
        "POST",
        "/conferences/{schedule_id}/bookings",
        api.book,
        "Book a slot for a child (one per child; guardians inside the booking window, staff always)",
        body=BookSlot,
        response=BookingView,
        status=201,
        errors=(409,),
    ),
    Route(
        "PUT",
        "/conference-bookings/{booking_id}/slot",
        api.move_booking,
        "Move a booking to another free slot (guardians until the move/cancel deadline, staff always)",
        body=MoveBooking,
        response=BookingView,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/conference-bookings/{booking_id}",
        api.cancel_booking,
        "Cancel a booking (guardians until the move/cancel deadline, staff always)",
        status=204,
        errors=(409,),
    ),
    Route(
        "GET",
        "/conference-bookings/{booking_id}/calendar",
        api.booking_ics,
        "A booking as an .ics file (RFC 5545) in the school's time zone",
        also_as=(MEDIA_TYPE,),
    ),
    Route(
        "POST",
        "/calendar-feeds",
        api.create_feed,
        "A personal calendar feed URL for the caller's bookings; the token is shown once",
        response=CalendarFeedView,
        status=201,
    ),
    Route("GET", "/calendar-feeds", api.list_feeds, "The caller's calendar feeds", response=CalendarFeedList),
    Route(
        "DELETE",
        "/calendar-feeds/{feed_id}",
        api.revoke_feed,
        "Revoke a calendar feed: its URL answers 404 from then on",
        status=204,
    ),
    Route(
        "GET",
        "/calendar/{token}",
        api.feed_ics,
        "A calendar feed (.ics) by its token, for calendar apps (no access token)",
        auth="none",
        also_as=(MEDIA_TYPE,),
    ),
]
