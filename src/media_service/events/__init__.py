"""Events and the machinery that carries them: outbox, relay, buses, idempotent consumers.

Services call :func:`record_event` inside their unit of work; :class:`OutboxRelay`
publishes committed rows on the :class:`EventBus` chosen by ``MEDIA_EVENTS_URL`` (see
:func:`open_event_bus`); consumers built with :func:`idempotent` apply each event once.
"""

from media_service.events.bus import (
    BusError,
    BusHealth,
    BusMisconfigured,
    BusUnavailable,
    DeadLetter,
    DeadLetterCallback,
    Delivery,
    DeliveryPolicy,
    EventBus,
    Handler,
    RejectMessage,
)
from media_service.events.consumers import (
    DeadLetterRepository,
    IdempotentConsumer,
    dead_letter_recorder,
    idempotent,
    start_consumer,
)
from media_service.events.envelope import (
    EVENT_TYPES,
    Event,
    FileDeleted,
    FileUploaded,
    InvalidEvent,
    MediaCacheReady,
    MediaMetadataUpdated,
    MediaPlaylistUpdated,
    MediaVersionCreated,
    json_schemas,
    parse_event,
)
from media_service.events.factory import UnknownEventsScheme, open_event_bus
from media_service.events.outbox import (
    OutboxBacklog,
    OutboxRepository,
    record_event,
    record_message,
    wake_on_commit,
)
from media_service.events.relay import OutboxRelay

__all__ = [
    "EVENT_TYPES",
    "BusError",
    "BusHealth",
    "BusMisconfigured",
    "BusUnavailable",
    "DeadLetter",
    "DeadLetterCallback",
    "DeadLetterRepository",
    "Delivery",
    "DeliveryPolicy",
    "Event",
    "EventBus",
    "FileDeleted",
    "FileUploaded",
    "Handler",
    "IdempotentConsumer",
    "InvalidEvent",
    "MediaCacheReady",
    "MediaMetadataUpdated",
    "MediaPlaylistUpdated",
    "MediaVersionCreated",
    "OutboxBacklog",
    "OutboxRelay",
    "OutboxRepository",
    "RejectMessage",
    "UnknownEventsScheme",
    "dead_letter_recorder",
    "idempotent",
    "json_schemas",
    "open_event_bus",
    "parse_event",
    "record_event",
    "record_message",
    "start_consumer",
    "wake_on_commit",
]
