"""What helper lists keep of other services' events: accounts' display names, so that a teacher sees
who signed up by name (identity's AccountChanged; nothing else of the account is kept); and what
ends when a parent stops being a parent in the group (``release_leaver``)."""

import uuid

import asyncpg

from posts.helper_lists import store
from posts.helper_lists.api import promote_waiting
from shared.consumer import Handlers
from shared.contracts import AccountChanged
from shared.envelope import Envelope


def keep_account_names(handlers: Handlers) -> None:
    """Register the handler that keeps each account's newest display name."""

    @handlers.on(AccountChanged)
    async def account_changed(conn: asyncpg.Connection, _env: Envelope, event: AccountChanged) -> None:
        await store.upsert_account_name(conn, event.person_id, event.display_name, event.revision)


async def release_leaver(conn: asyncpg.Connection, group_id: uuid.UUID, person_id: uuid.UUID) -> None:
    """After the person's membership of the group changed in posts' copy: if they are no parent in the
    group any more (their child left the group or the school), they come off every item of the group's
    lists whose activity is not over, as a teacher's ``withdraw_parent`` takes them off: a place they
    held goes to the first waiting in the same transaction, who is told once (SignupPromoted). Items in
    order, each locked as every change of an item's sign-ups is."""
    for held in await store.left_behind(conn, group_id, person_id):
        item = await store.lock_item(conn, held["list_id"], held["item_id"])
        if item is None:
            continue
        if await store.remove_signup(conn, item["item_id"], person_id) == "signed_up":
            await promote_waiting(conn, held, item["item_id"], item["title"], item["capacity"])
