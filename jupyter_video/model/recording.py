"""Recording: one published audio or video track, written to a file as it arrives.

Twilio records each track of a group room into its own file: video in
Matroska (``mkv``), audio in Matroska audio (``mka``)
(https://www.twilio.com/docs/video/api/recordings-resource).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from ..errors import VideoError
from .record import Record, utcnow


class RecordingStatus(str, enum.Enum):
    PROCESSING = "processing"
    COMPLETED = "completed"
    DELETED = "deleted"
    FAILED = "failed"


_TRANSITIONS: dict[RecordingStatus, frozenset[RecordingStatus]] = {
    RecordingStatus.PROCESSING: frozenset(
        {RecordingStatus.COMPLETED, RecordingStatus.FAILED, RecordingStatus.DELETED}
    ),
    RecordingStatus.COMPLETED: frozenset({RecordingStatus.DELETED}),
    RecordingStatus.FAILED: frozenset({RecordingStatus.DELETED}),
    RecordingStatus.DELETED: frozenset(),
}

# Container and codec names as Twilio's Recording resource spells them.
CONTAINERS = {"video": "mkv", "audio": "mka"}
CODECS = {"video/vp8": "vp8", "video/h264": "h264", "audio/opus": "opus"}


@dataclass
class Recording(Record):
    """A Recording resource (``sid`` RT...). ``transition`` is the only way its status changes."""

    kind: ClassVar[str] = "recording"

    sid: str
    account_sid: str
    room_sid: str
    participant_sid: str
    source_sid: str  # the recorded track (MT...)
    track_name: str
    type: str  # audio | video
    path: str  # where the media file is (or was) on this server
    status: RecordingStatus = RecordingStatus.PROCESSING
    codec: str | None = None  # vp8 | h264 | opus, once media arrived
    duration: int | None = None  # seconds, once finished
    size: int | None = None  # bytes, once finished
    offset: int | None = None  # ms from the Unix epoch to the first recorded frame
    failed_operation: str | None = None
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def container_format(self) -> str:
        return CONTAINERS.get(self.type, "mka")

    @property
    def grouping_sids(self) -> dict[str, str]:
        return {"room_sid": self.room_sid, "participant_sid": self.participant_sid}

    @property
    def is_processing(self) -> bool:
        return self.status is RecordingStatus.PROCESSING

    def transition(self, status: RecordingStatus, now: datetime | None = None) -> None:
        """Move to ``status`` or raise 53112 naming the transition refused."""
        if status not in _TRANSITIONS[self.status]:
            raise VideoError(
                53112,
                f"Recording {self.sid} is {self.status.value}; it cannot become {status.value}",
            )
        self.status = status
        self.date_updated = now or utcnow()

    def complete(self, duration: float, size: int, now: datetime | None = None) -> None:
        """The file is finished: ``duration`` seconds of media in ``size`` bytes."""
        self.transition(RecordingStatus.COMPLETED, now)
        self.duration = round(duration)
        self.size = size

    def fail(self, operation: str, now: datetime | None = None) -> None:
        """Nothing playable was written; ``operation`` says what failed."""
        self.transition(RecordingStatus.FAILED, now)
        self.failed_operation = operation
