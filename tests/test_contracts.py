"""Every event type has a consumer: the relay publishes with mandatory routing, so an event no
queue is bound for would be refused by the broker and wait in the outbox for ever."""

from identity.app import spec as identity_spec
from media.app import spec as media_spec
from notifier.app import spec as notifier_spec
from posts.app import spec as posts_spec
from shared.envelope import registered_types


def test_every_registered_event_type_is_handled_by_some_service() -> None:
    handled = {
        event_type
        for spec in (identity_spec(), posts_spec(), media_spec(), notifier_spec())
        for event_type in spec.handlers.by_type
    }
    published = {
        event_type for event_type, _version in registered_types() if not event_type.startswith("test.")
    }
    assert published - handled == set()
