"""Identity: the routes and the pieces that make the service."""

from pathlib import Path

from identity import api
from identity.domain import (
    AddPerson,
    CreateGroup,
    CreateSchool,
    GroupView,
    Jwks,
    Login,
    MembershipView,
    PersonView,
    SchoolCreated,
    TokenView,
)
from identity.resources import SIGNER, login_attempts_cleanup, signer
from shared.app import SETTINGS, ServiceSpec
from shared.consumer import Handlers
from shared.http import Route
from shared.tokens import TokenVerifier

routes = [
    Route(
        "POST",
        "/schools",
        api.create_school,
        "The operator creates a school and its first admin",
        body=CreateSchool,
        response=SchoolCreated,
        status=201,
        auth="operator",
    ),
    Route(
        "POST",
        "/schools/{school_id}/people",
        api.add_person,
        "An admin adds a teacher or guardian",
        body=AddPerson,
        response=PersonView,
        status=201,
    ),
    Route(
        "POST",
        "/schools/{school_id}/groups",
        api.create_group,
        "An admin creates a group for a school year",
        body=CreateGroup,
        response=GroupView,
        status=201,
    ),
    Route(
        "PUT",
        "/groups/{group_id}/members/{person_id}",
        api.grant_membership,
        "An admin links a teacher or guardian to a group",
        response=MembershipView,
    ),
    Route(
        "DELETE",
        "/groups/{group_id}/members/{person_id}",
        api.revoke_membership,
        "An admin ends a person's link to a group",
        status=204,
    ),
    Route(
        "POST",
        "/auth/login",
        api.login,
        "Log in with email and password for an access token",
        body=Login,
        response=TokenView,
        auth="none",
    ),
    Route("GET", "/me", api.me, "The caller's own account", response=PersonView),
    Route(
        "GET",
        "/.well-known/jwks.json",
        api.jwks,
        "Public keys that verify access tokens",
        response=Jwks,
        auth="none",
    ),
]


def spec() -> ServiceSpec:
    # Identity is the source of its data and consumes no events.
    return ServiceSpec(
        name="identity",
        routes=routes,
        handlers=Handlers(),
        migrations=Path(__file__).parent / "migrations",
        contexts=[signer, login_attempts_cleanup],
        verifier=lambda app: TokenVerifier(
            issuer=app[SETTINGS].token_issuer, audience=app[SETTINGS].token_audience, jwks=app[SIGNER].jwks()
        ),
    )
