"""Posts: the routes and the pieces that make the service."""

from pathlib import Path

from posts.events import handlers
from posts.feed import api as feed
from posts.feed.domain import FeedPage, FeedQuery, GroupPostsPage, LikeState, PostView
from posts.publishing import api as publishing
from posts.publishing.domain import (
    AnnouncementView,
    CreateAnnouncement,
    CreatePost,
    ScheduledList,
    UpdatePost,
    WrittenPost,
)
from posts.publishing.jobs import send_later
from posts.weekly import api as weekly
from posts.weekly.domain import PostingReport, ReportQuery
from posts.weekly.jobs import weekly_check
from shared.app import ServiceSpec
from shared.http import Route

routes = [
    Route(
        "POST",
        "/groups/{group_id}/posts",
        publishing.create_post,
        "A teacher posts to a group they teach, now or later; at most the school's posts per day (409)",
        body=CreatePost,
        response=WrittenPost,
        status=201,
        errors=(403, 409),
    ),
    Route(
        "PATCH",
        "/posts/{post_id}",
        publishing.update_post,
        "Edit a post's title, body or photos (the group's teachers, the school's admins); nobody is notified",
        body=UpdatePost,
        response=WrittenPost,
        errors=(403,),
    ),
    Route(
        "DELETE",
        "/posts/{post_id}",
        publishing.delete_post,
        "Delete a post: gone from the feed, its photos and pending notifications",
        status=204,
        errors=(403,),
    ),
    Route(
        "GET",
        "/groups/{group_id}/scheduled-posts",
        publishing.scheduled_posts,
        "The group's posts waiting for their send-later time (its teachers, the school's admins)",
        response=ScheduledList,
        errors=(403,),
    ),
    Route(
        "POST",
        "/schools/{school_id}/announcements",
        publishing.create_announcement,
        "A school admin's announcement to all groups of the current year or the chosen ones",
        body=CreateAnnouncement,
        response=AnnouncementView,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET",
        "/feed",
        feed.get_feed,
        "Newest posts of the groups the caller belongs to now, with likes and whether they saw each",
        query=FeedQuery,
        response=FeedPage,
    ),
    Route(
        "GET",
        "/posts/{post_id}",
        feed.get_post,
        "One post of a group the caller belongs to; opening it marks it seen for the caller",
        response=PostView,
    ),
    Route(
        "PUT",
        "/posts/{post_id}/seen",
        feed.mark_seen,
        "Mark a post seen (for a client showing it whole in the feed); repeating changes nothing",
        status=204,
    ),
    Route(
        "PUT",
        "/posts/{post_id}/like",
        feed.like,
        "A parent likes a post (once per account; repeating changes nothing)",
        response=LikeState,
        errors=(403,),
    ),
    Route(
        "DELETE",
        "/posts/{post_id}/like",
        feed.unlike,
        "A parent takes back their like (repeating changes nothing)",
        response=LikeState,
        errors=(403,),
    ),
    Route(
        "GET",
        "/groups/{group_id}/posts",
        feed.get_group_posts,
        "A teacher's view of a group's posts: families that saw each, who liked it, delivery figures",
        query=FeedQuery,
        response=GroupPostsPage,
        errors=(403,),
    ),
    Route(
        "GET",
        "/schools/{school_id}/posting-report",
        weekly.posting_report,
        "The school admin's report of seed rule 5 per group per week of a school year (JSON, or CSV "
        "with Accept: text/csv or format=csv)",
        query=ReportQuery,
        response=PostingReport,
        also_as=("text/csv",),
    ),
]


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="posts",
        routes=routes,
        handlers=handlers,
        migrations=Path(__file__).parent / "migrations",
        contexts=[send_later, weekly_check],
    )
