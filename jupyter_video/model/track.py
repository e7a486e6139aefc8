"""Track publications and subscriptions, as the REST API lists them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from ..errors import VideoError
from .record import Record, utcnow


class TrackKind(str, enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"
    DATA = "data"


class PublicationState(str, enum.Enum):
    PUBLISHED = "published"
    UNPUBLISHED = "unpublished"


class SubscriptionState(str, enum.Enum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


def _move(current: enum.Enum, target: enum.Enum, allowed: dict, what: str) -> None:
    if target not in allowed[current]:
        raise VideoError(53112, f"{what} is {current.value}; it cannot become {target.value}")


@dataclass
class PublishedTrack(Record):
    """A track a participant publishes (``sid`` MT...)."""

    kind: ClassVar[str] = "published_track"

    sid: str
    participant_sid: str
    room_sid: str
    name: str
    track_kind: TrackKind
    enabled: bool = True
    state: PublicationState = PublicationState.PUBLISHED
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    _TRANSITIONS: ClassVar[dict] = {
        PublicationState.PUBLISHED: {PublicationState.UNPUBLISHED},
        PublicationState.UNPUBLISHED: set(),
    }

    def transition(self, state: PublicationState, now: datetime | None = None) -> None:
        _move(self.state, state, self._TRANSITIONS, f"Track {self.sid}")
        self.state = state
        self.date_updated = now or utcnow()

    def set_enabled(self, enabled: bool, now: datetime | None = None) -> None:
        self.enabled = enabled
        self.date_updated = now or utcnow()


@dataclass
class SubscribedTrack(Record):
    """One subscriber's subscription to a published track.

    Its REST ``sid`` is the published track's SID (as in Twilio); the record's
    own key is the subscriber and track together.
    """

    kind: ClassVar[str] = "subscribed_track"

    sid: str  # "<participant_sid>:<track_sid>"
    track_sid: str
    participant_sid: str
    publisher_sid: str
    room_sid: str
    name: str
    track_kind: TrackKind
    enabled: bool = True
    state: SubscriptionState = SubscriptionState.SUBSCRIBED
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    _TRANSITIONS: ClassVar[dict] = {
        SubscriptionState.SUBSCRIBED: {SubscriptionState.UNSUBSCRIBED},
        SubscriptionState.UNSUBSCRIBED: {SubscriptionState.SUBSCRIBED},
    }

    @staticmethod
    def key(participant_sid: str, track_sid: str) -> str:
        return f"{participant_sid}:{track_sid}"

    def transition(self, state: SubscriptionState, now: datetime | None = None) -> None:
        _move(self.state, state, self._TRANSITIONS, f"Subscription to {self.track_sid}")
        self.state = state
        self.date_updated = now or utcnow()
