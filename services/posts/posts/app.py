"""Posts: the routes and the pieces that make the service."""

from pathlib import Path

from posts import api
from posts.domain import CreatePost, FeedPage, FeedQuery, PostView
from posts.events import handlers
from shared.app import ServiceSpec
from shared.http import Route

routes = [
    Route(
        "POST",
        "/groups/{group_id}/posts",
        api.create_post,
        "A teacher posts to a group they teach",
        body=CreatePost,
        response=PostView,
        status=201,
        errors=(403,),
    ),
    Route(
        "GET",
        "/posts/{post_id}",
        api.get_post,
        "One post of a group the caller belongs to",
        response=PostView,
    ),
    Route(
        "GET",
        "/feed",
        api.get_feed,
        "Newest posts of the caller's groups",
        query=FeedQuery,
        response=FeedPage,
    ),
]


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="posts", routes=routes, handlers=handlers, migrations=Path(__file__).parent / "migrations"
    )
