"""What helper lists keep of other services' events: accounts' display names, so that a teacher sees
who signed up by name (identity's AccountChanged; nothing else of the account is kept)."""

import asyncpg

from posts.helper_lists import store
from shared.consumer import Handlers
from shared.contracts import AccountChanged
from shared.envelope import Envelope


def keep_account_names(handlers: Handlers) -> None:
    """Register the handler that keeps each account's newest display name."""

    @handlers.on(AccountChanged)
    async def account_changed(conn: asyncpg.Connection, _env: Envelope, event: AccountChanged) -> None:
        await store.upsert_account_name(conn, event.person_id, event.display_name, event.revision)
