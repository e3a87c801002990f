"""The event envelope and the registry of event types that producers and consumers share."""

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Event(BaseModel):
    """Payload of one event type. Subclasses set ``type`` (past tense) and ``version``.

    Events carry ids and the little a consumer needs for its local copy; never children's data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[str]
    version: ClassVar[int] = 1
    # Fields that carry a secret (an access code, a reset token): the outbox removes them from its
    # copy once the broker has confirmed the event, so no table keeps them in clear text.
    secret_fields: ClassVar[frozenset[str]] = frozenset()


class Envelope(BaseModel):
    """What travels on the bus: metadata around one event's payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    school_id: uuid.UUID | None
    correlation_id: str | None = None
    payload: dict[str, Any]

    def event(self) -> Event:
        """The typed payload, validated against the registered model of this type and version."""
        return event_model(self.type, self.version).model_validate(self.payload)


E = TypeVar("E", bound=type[Event])

_registry: dict[tuple[str, int], type[Event]] = {}


def register(model: E) -> E:
    """Class decorator: add an event type to the shared registry."""
    key = (model.type, model.version)
    if key in _registry:
        raise ValueError(f"event type {key} registered twice")
    _registry[key] = model
    return model


def event_model(type_: str, version: int) -> type[Event]:
    try:
        return _registry[(type_, version)]
    except KeyError:
        raise LookupError(f"unknown event type {type_} v{version}") from None


def registered_types() -> list[tuple[str, int]]:
    return sorted(_registry)


def envelope(
    event: Event,
    school_id: uuid.UUID | None,
    correlation_id: str | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope:
    """``event_id``: a deterministic id (e.g. uuid5 of what the event is about) makes a producer that
    runs twice write the event once (the outbox's event_id is unique) and consumers handle it once."""
    return Envelope(
        event_id=event_id or uuid.uuid4(),
        type=event.type,
        version=event.version,
        school_id=school_id,
        correlation_id=correlation_id,
        payload=event.model_dump(mode="json"),
    )
