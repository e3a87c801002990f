"""Time-ordered ids (shared.ids): version 7, ordered by time, and their time read back."""

import uuid
from datetime import UTC, datetime, timedelta

from shared.ids import minted_at, time_ordered_id


def test_a_time_ordered_id_is_a_version_7_uuid_that_says_when_it_was_made() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    made = time_ordered_id()
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    at = minted_at(made)
    assert at is not None
    assert before <= at <= after


def test_ids_made_later_sort_later_and_other_ids_say_nothing() -> None:
    ids = [time_ordered_id() for _ in range(50)]
    assert len(set(ids)) == 50
    stamps = [minted_at(i) for i in ids]
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    assert minted_at(uuid.uuid4()) is None
