"""Participant: one client's presence in one Room."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from ..errors import VideoError
from .record import Record, utcnow


class ParticipantStatus(str, enum.Enum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


_TRANSITIONS: dict[ParticipantStatus, frozenset[ParticipantStatus]] = {
    ParticipantStatus.CONNECTED: frozenset(
        {ParticipantStatus.RECONNECTING, ParticipantStatus.DISCONNECTED}
    ),
    ParticipantStatus.RECONNECTING: frozenset(
        {ParticipantStatus.CONNECTED, ParticipantStatus.DISCONNECTED}
    ),
    ParticipantStatus.DISCONNECTED: frozenset(),
}

MAX_IDENTITY_LENGTH = 256


@dataclass
class Participant(Record):
    """A Participant resource. ``transition`` is the only way its status changes."""

    kind: ClassVar[str] = "participant"

    sid: str
    room_sid: str
    account_sid: str
    identity: str
    status: ParticipantStatus = ParticipantStatus.CONNECTED
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    start_time: datetime = field(default_factory=utcnow)
    end_time: datetime | None = None

    @property
    def duration(self) -> int | None:
        """Seconds connected, once disconnected."""
        if self.end_time is None:
            return None
        return int((self.end_time - self.start_time).total_seconds())

    @property
    def is_connected(self) -> bool:
        return self.status is not ParticipantStatus.DISCONNECTED

    def transition(self, status: ParticipantStatus, now: datetime | None = None) -> None:
        """Move to ``status`` or raise 53112 naming the transition refused."""
        if status not in _TRANSITIONS[self.status]:
            raise VideoError(
                53112,
                f"Participant {self.sid} is {self.status.value}; it cannot become {status.value}",
            )
        now = now or utcnow()
        self.status = status
        self.date_updated = now
        if status is ParticipantStatus.DISCONNECTED:
            self.end_time = now
