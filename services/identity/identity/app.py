"""Identity: the routes and the pieces that make the service. The one place that lists them."""

from pathlib import Path

from identity.accounts import api as accounts
from identity.accounts.domain import Me, UpdateMe
from identity.adoption import api as adoption
from identity.adoption.domain import Adoption, AdoptionQuery
from identity.families import api as families
from identity.families import erasure
from identity.families.domain import (
    ChildQuery,
    ChildView,
    CreateChild,
    ErasureView,
    GuardianView,
    Leave,
    NewGuardian,
    Place,
    PlacementView,
    UpdateChild,
)
from identity.imports import api as imports
from identity.imports.domain import ImportQuery, ImportView
from identity.imports.runner import import_jobs
from identity.invitations import api as invitations
from identity.invitations.domain import InvitationSent, LaunchView, Redeem, Redeemed
from identity.invitations.jobs import invitation_jobs
from identity.login import api as login
from identity.login.domain import Jwks, Login, Refresh, RequestReset, ResetRequested, SetPassword, TokenView
from identity.resources import SIGNER, login_cleanup, signer
from identity.rollover import api as rollover
from identity.rollover.domain import Promote, PromotionPlan
from identity.schools import api as schools
from identity.schools.api import GroupList, RoleQuery, SchoolYearList
from identity.schools.domain import (
    AddStaff,
    CreateGroup,
    CreateSchool,
    CreateSchoolYear,
    GroupQuery,
    GroupView,
    RenameGroup,
    SchoolCreated,
    SchoolSettings,
    SchoolView,
    SchoolYearView,
    StaffView,
    TeachingView,
)
from identity.schools.years import year_switch_job
from shared.app import SETTINGS, ServiceSpec
from shared.consumer import Handlers
from shared.http import Route
from shared.pagination import Page, PageQuery
from shared.tokens import TokenVerifier

routes = [
    # Schools and their settings.
    Route(
        "POST",
        "/schools",
        schools.create_school,
        "The operator creates a school and its first admin",
        body=CreateSchool,
        response=SchoolCreated,
        status=201,
        auth="operator",
    ),
    Route(
        "GET", "/schools/{school_id}", schools.get_school, "A school and its settings", response=SchoolView
    ),
    Route(
        "PATCH",
        "/schools/{school_id}",
        schools.update_school,
        "Change a school's name, time zone or settings",
        body=SchoolSettings,
        response=SchoolView,
    ),
    # School years and groups.
    Route(
        "POST",
        "/schools/{school_id}/school-years",
        schools.create_school_year,
        "Add a school year",
        body=CreateSchoolYear,
        response=SchoolYearView,
        status=201,
        errors=(409,),  # the name taken, or dates overlapping another year
    ),
    Route(
        "GET",
        "/schools/{school_id}/school-years",
        schools.list_school_years,
        "The school's years",
        response=SchoolYearList,
    ),
    Route(
        "POST",
        "/school-years/{school_year_id}/promotion",
        rollover.promote_groups,
        "Prepare this year from an earlier one: its groups move up a grade with their children",
        body=Promote,
        response=PromotionPlan,
        errors=(409,),
    ),
    Route(
        "POST",
        "/schools/{school_id}/groups",
        schools.create_group,
        "Add a group to a school year",
        body=CreateGroup,
        response=GroupView,
        status=201,
        errors=(409,),  # the year has a group of that name
    ),
    Route(
        "GET",
        "/schools/{school_id}/groups",
        schools.list_groups,
        "The groups of a school year",
        query=GroupQuery,
        response=GroupList,
    ),
    Route("GET", "/groups/{group_id}", schools.get_group, "One group", response=GroupView),
    Route(
        "PATCH",
        "/groups/{group_id}",
        schools.rename_group,
        "Rename a group",
        body=RenameGroup,
        response=GroupView,
        errors=(409,),  # the year has a group of that name
    ),
    Route(
        "PUT",
        "/groups/{group_id}/teachers/{person_id}",
        schools.assign_teacher,
        "A teacher of the school teaches the group",
        response=TeachingView,
    ),
    Route(
        "DELETE",
        "/groups/{group_id}/teachers/{person_id}",
        schools.end_teacher,
        "The teacher no longer teaches the group",
        status=204,
    ),
    # Staff.
    Route(
        "POST",
        "/schools/{school_id}/staff",
        schools.add_staff,
        "Give someone an admin or teacher role",
        body=AddStaff,
        response=StaffView,
        status=201,
    ),
    Route(
        "GET",
        "/schools/{school_id}/staff",
        schools.list_staff,
        "The school's staff",
        query=PageQuery,
        response=Page[StaffView],
    ),
    Route(
        "DELETE",
        "/schools/{school_id}/staff/{person_id}",
        schools.remove_staff,
        "Take a staff role away",
        query=RoleQuery,
        status=204,
        errors=(409,),  # the last admin stays
    ),
    # Class-list import (issue 5).
    Route(
        "POST",
        "/schools/{school_id}/imports",
        imports.start_import,
        "Import a class list (CSV from ParnasSys, Esis or Magister): a dry run by default, then apply",
        query=ImportQuery,
        response=ImportView,
        status=202,
        raw_body=imports.ACCEPTED_TYPES,
        # A file that cannot be read, or an apply of bad rows without skip_invalid.
        errors=(422,),
    ),
    Route(
        "GET",
        "/imports/{import_id}",
        imports.get_import,
        "An import's progress and outcome",
        response=ImportView,
    ),
    # Children, placements, guardians.
    Route(
        "POST",
        "/schools/{school_id}/children",
        families.create_child,
        "Add a child (and place it)",
        body=CreateChild,
        response=ChildView,
        status=201,
        errors=(409,),  # the external_id is taken
    ),
    Route(
        "GET",
        "/schools/{school_id}/children",
        families.list_children,
        "The school's children",
        query=ChildQuery,
        response=Page[ChildView],
    ),
    Route("GET", "/children/{child_id}", families.get_child, "One child with guardians", response=ChildView),
    Route(
        "PATCH",
        "/children/{child_id}",
        families.update_child,
        "Change a child's details (photo consent)",
        body=UpdateChild,
        response=ChildView,
    ),
    Route(
        "PUT",
        "/children/{child_id}/placement",
        families.place_child,
        "Place the child in a group for that group's school year",
        body=Place,
        response=PlacementView,
        errors=(409,),  # the child has left
    ),
    Route(
        "POST",
        "/children/{child_id}/leave",
        families.leave_school,
        "The child leaves the school",
        body=Leave,
        response=ChildView,
    ),
    Route(
        "POST",
        "/children/{child_id}/erasure",
        erasure.request_erasure,
        "Erase the child's data (GDPR art. 17): guardians lose access, photos tagged with the child go",
        response=ErasureView,
    ),
    Route(
        "POST",
        "/children/{child_id}/guardians",
        families.add_guardian,
        "Add a guardian; they are invited",
        body=NewGuardian,
        response=GuardianView,
        status=201,
    ),
    Route(
        "DELETE",
        "/guardianships/{guardianship_id}",
        families.remove_guardian,
        "Remove a guardian",
        status=204,
    ),
    # Invitations and access codes.
    Route(
        "POST",
        "/schools/{school_id}/invitations",
        invitations.launch,
        "Launch day: invite every guardian of the school who is not linked yet, in the background",
        response=LaunchView,
        status=202,
    ),
    Route(
        "GET",
        "/invitation-launches/{launch_id}",
        invitations.get_launch,
        "How far a launch has come",
        response=LaunchView,
    ),
    Route(
        "POST",
        "/guardianships/{guardianship_id}/invitation",
        invitations.resend,
        "Send a new access code (the old one stops working)",
        response=InvitationSent,
        status=201,
        errors=(409,),  # linked already, or the child has left
    ),
    Route(
        "DELETE",
        "/guardianships/{guardianship_id}/invitation",
        invitations.revoke,
        "Revoke the open access code",
        status=204,
    ),
    Route(
        "POST",
        "/access-codes/redeem",
        invitations.redeem,
        "Link to a child with an access code",
        body=Redeem,
        response=Redeemed,
        status=201,
        auth="optional",
        errors=(409, 429),
    ),
    # Adoption (seed rule 10).
    Route(
        "GET",
        "/schools/{school_id}/adoption",
        adoption.adoption,
        "Families reached per group and for the school (JSON, or CSV with Accept: text/csv or format=csv)",
        query=AdoptionQuery,
        response=Adoption,
        also_as=("text/csv",),
    ),
    # Login and the caller's account.
    Route(
        "POST",
        "/auth/login",
        login.login,
        "Log in with email and password for an access token and a refresh token",
        body=Login,
        response=TokenView,
        auth="none",
        errors=(401, 429),
    ),
    Route(
        "POST",
        "/auth/refresh",
        login.refresh_tokens,
        "Trade a refresh token for a new access token and the next refresh token",
        body=Refresh,
        response=TokenView,
        auth="none",
        errors=(401,),
    ),
    Route(
        "POST",
        "/auth/logout",
        login.logout,
        "End the login a refresh token belongs to",
        body=Refresh,
        status=204,
        auth="none",
    ),
    Route(
        "POST",
        "/auth/password-reset",
        login.request_reset,
        "Have a link to set the password mailed to an address, if it has an account",
        body=RequestReset,
        response=ResetRequested,
        status=202,
        auth="none",
        errors=(429,),
    ),
    Route(
        "POST",
        "/auth/password",
        login.set_password,
        "Set a password with the token from a reset or welcome mail; ends the account's other logins",
        body=SetPassword,
        response=TokenView,
        auth="none",
        errors=(401, 429),
    ),
    Route("GET", "/me", accounts.me, "The caller's account and roles", response=Me),
    Route(
        "PATCH", "/me", accounts.update_me, "Change the caller's name or language", body=UpdateMe, response=Me
    ),
    Route(
        "GET",
        "/.well-known/jwks.json",
        login.jwks,
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
        contexts=[signer, login_cleanup, year_switch_job, invitation_jobs, import_jobs],
        verifier=lambda app: TokenVerifier(
            issuer=app[SETTINGS].token_issuer, audience=app[SETTINGS].token_audience, jwks=app[SIGNER].jwks()
        ),
    )
