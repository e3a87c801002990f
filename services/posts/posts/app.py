"""Posts: the routes and the pieces that make the service."""

from pathlib import Path

from posts.conferences.jobs import conference_reminders
from posts.conferences.routes import routes as conference_routes
from posts.events import handlers
from posts.feed import api as feed
from posts.feed.domain import FeedPage, FeedQuery, GroupPostsPage, LikeState, PostView
from posts.helper_lists import api as helper_lists
from posts.helper_lists.domain import (
    CreateHelperList,
    HelperListSignups,
    HelperListsPage,
    HelperListView,
    UpdateHelperList,
    UpdateItem,
)
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
    Route(
        "POST",
        "/groups/{group_id}/helper-lists",
        helper_lists.create_list,
        "A teacher posts a helper-parent list to their group: items with a capacity each and a deadline",
        body=CreateHelperList,
        response=HelperListView,
        status=201,
        errors=(403,),
    ),
    Route(
        "GET",
        "/groups/{group_id}/helper-lists",
        helper_lists.group_lists,
        "The group's helper lists, newest first, with figures per item and the caller's own sign-ups",
        response=HelperListsPage,
    ),
    Route(
        "GET",
        "/helper-lists/{list_id}",
        helper_lists.get_list,
        "One helper list: per item its capacity, places taken, parents waiting and the caller's state",
        response=HelperListView,
    ),
    Route(
        "GET",
        "/helper-lists/{list_id}/signups",
        helper_lists.list_signups,
        "Who signed up and who waits, per item, by name (the group's teachers)",
        response=HelperListSignups,
        errors=(403,),
    ),
    Route(
        "PATCH",
        "/helper-lists/{list_id}",
        helper_lists.update_list,
        "A teacher edits a list's title, description, activity day or deadline; its feed post follows",
        body=UpdateHelperList,
        response=HelperListView,
        errors=(403,),
    ),
    Route(
        "POST",
        "/helper-lists/{list_id}/close",
        helper_lists.close_list,
        "A teacher closes the list before its deadline; parents change nothing from then on",
        response=HelperListView,
        errors=(403,),
    ),
    Route(
        "PATCH",
        "/helper-lists/{list_id}/items/{item_id}",
        helper_lists.update_item,
        "A teacher edits an item's title or capacity; a higher capacity promotes the first waiting",
        body=UpdateItem,
        response=HelperListView,
        errors=(403, 409),
    ),
    Route(
        "PUT",
        "/helper-lists/{list_id}/items/{item_id}/signup",
        helper_lists.sign_up,
        "A parent signs up for an item: a place while there is one, else the waiting list (409 once closed)",
        response=HelperListView,
        errors=(403, 409),
    ),
    Route(
        "DELETE",
        "/helper-lists/{list_id}/items/{item_id}/signup",
        helper_lists.withdraw,
        "A parent withdraws from an item; the first waiting gets the place (409 once closed)",
        response=HelperListView,
        errors=(403, 409),
    ),
    Route(
        "PUT",
        "/helper-lists/{list_id}/items/{item_id}/signups/{person_id}",
        helper_lists.sign_up_parent,
        "A teacher signs a parent of the group up on their behalf, also after the deadline or a close",
        response=HelperListSignups,
        errors=(403,),
    ),
    Route(
        "DELETE",
        "/helper-lists/{list_id}/items/{item_id}/signups/{person_id}",
        helper_lists.withdraw_parent,
        "A teacher takes a parent off an item, also after the deadline; the first waiting gets the place",
        response=HelperListSignups,
        errors=(403,),
    ),
]


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="posts",
        routes=routes + conference_routes,
        handlers=handlers,
        migrations=Path(__file__).parent / "migrations",
        contexts=[send_later, weekly_check, conference_reminders],
    )
