"""Room: a video session, and the limits Twilio puts on its parameters."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from ..errors import VideoError
from .record import Record, utcnow


class RoomStatus(str, enum.Enum):
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    FAILED = "failed"


class RoomType(str, enum.Enum):
    GO = "go"
    PEER_TO_PEER = "peer-to-peer"
    GROUP = "group"
    GROUP_SMALL = "group-small"

    @property
    def is_peer_to_peer(self) -> bool:
        """Media goes straight between participants (Go and Peer-to-Peer rooms):
        the server relays their negotiation and never sees a packet."""
        return self in (RoomType.GO, RoomType.PEER_TO_PEER)


SUPPORTED_TYPES = tuple(RoomType)
# Twilio's limits per type (seeds 000 and 003): a mesh of up to 10, WebRTC Go is one to one.
MAX_PARTICIPANTS = {
    RoomType.GROUP: 50,
    RoomType.GROUP_SMALL: 4,
    RoomType.PEER_TO_PEER: 10,
    RoomType.GO: 2,
}
# Room parameters that need the SFU, and the code Twilio refuses each with in a
# Go or Peer-to-Peer room: 53122 "recording operation not supported for the Room
# type", 53124 "AudioOnly not supported for the Room type", 53117 "subscription
# operation not supported", 53114 for the rest.
GROUP_ONLY_PARAMETERS = {
    "RecordParticipantsOnConnect": 53122,
    "RecordingRules": 53122,
    "AudioOnly": 53124,
    "VideoCodecs": 53114,
    "MediaRegion": 53114,
    "LargeRoom": 53114,
    # every participant receives every track over its own peer connections
    "SubscribeRules": 53117,
}
VIDEO_CODECS = ("VP8", "H264")
MEDIA_REGIONS = ("gll", "au1", "br1", "de1", "ie1", "in1", "jp1", "sg1", "us1", "us2")
ROOM_TIMEOUT_RANGE = (1, 60)  # minutes
PARTICIPANT_DURATION_RANGE = (600, 86400)  # seconds
MAX_NAME_LENGTH = 128
_FORBIDDEN_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\?#%]")

_TRANSITIONS: dict[RoomStatus, frozenset[RoomStatus]] = {
    RoomStatus.IN_PROGRESS: frozenset({RoomStatus.COMPLETED, RoomStatus.FAILED}),
    RoomStatus.COMPLETED: frozenset(),
    RoomStatus.FAILED: frozenset(),
}


def check_room_type(value: str) -> RoomType:
    """The RoomType for ``value``, or 53108 saying which types this server offers."""
    try:
        room_type = RoomType(value)
    except ValueError:
        raise VideoError(
            53108,
            f"Type '{value}' is not a room type; use one of "
            + ", ".join(f"'{t.value}'" for t in SUPPORTED_TYPES),
        ) from None
    return room_type


def check_type_parameters(room_type: RoomType, given: Iterable[str]) -> None:
    """Refuse, with Twilio's code, a parameter ``room_type`` cannot honour: in Go and
    Peer-to-Peer rooms media never reaches the server, so it cannot record, pick a
    media region or codecs, or drop video. ``given`` names the parameters set (to a
    value other than their default)."""
    if not room_type.is_peer_to_peer:
        return
    for name in given:
        code = GROUP_ONLY_PARAMETERS.get(name)
        if code is not None:
            raise VideoError(
                code,
                f"{name} is not available in {room_type.value} rooms (media goes "
                "straight between participants); leave it out or create a 'group' room",
            )


def check_unique_name(name: str) -> str:
    """A room name Twilio would accept (53100-53102)."""
    if not name.strip():
        raise VideoError(53100, "UniqueName must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise VideoError(
            53101, f"UniqueName is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if _FORBIDDEN_NAME_CHARS.search(name):
        raise VideoError(
            53102, "UniqueName must not contain control characters or any of / \\ ? # %"
        )
    if re.fullmatch(r"RM[0-9a-fA-F]{32}", name):
        raise VideoError(53100, "UniqueName must not look like a Room SID")
    return name


def check_range(value: int, bounds: tuple[int, int], code: int, what: str) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise VideoError(code, f"{what} is {value}; it must be between {low} and {high}")
    return value


@dataclass
class Room(Record):
    """A Room resource. ``transition`` is the only way its status changes."""

    kind: ClassVar[str] = "room"

    sid: str
    account_sid: str
    unique_name: str
    type: RoomType = RoomType.GROUP
    status: RoomStatus = RoomStatus.IN_PROGRESS
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    end_time: datetime | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    max_participants: int = 50
    max_participant_duration: int = 14400
    max_concurrent_published_tracks: int = 170
    record_participants_on_connect: bool = False
    video_codecs: list[str] = field(default_factory=lambda: list(VIDEO_CODECS))
    media_region: str = "gll"
    audio_only: bool = False
    empty_room_timeout: int = 5
    unused_room_timeout: int = 5
    large_room: bool = False
    enable_turn: bool = True
    # When the last participant left, or None while someone is in the room
    # or no one ever joined: the start of the empty-room timeout.
    emptied_at: datetime | None = None
    ever_joined: bool = False

    @property
    def duration(self) -> int | None:
        """Seconds from creation to end, once the room has ended."""
        if self.end_time is None:
            return None
        return int((self.end_time - self.date_created).total_seconds())

    def transition(self, status: RoomStatus, now: datetime | None = None) -> None:
        """Move to ``status`` or raise 53112 naming the transition refused."""
        if status not in _TRANSITIONS[self.status]:
            raise VideoError(
                53112,
                f"Room {self.sid} is {self.status.value}; it cannot become {status.value}",
            )
        now = now or utcnow()
        self.status = status
        self.end_time = now
        self.date_updated = now

    def participant_joined(self) -> None:
        self.ever_joined = True
        self.emptied_at = None

    def participants_left(self, now: datetime | None = None) -> None:
        """The last connected participant left: the empty-room clock starts."""
        self.emptied_at = now or utcnow()

    def expires_at(self, minute: timedelta = timedelta(minutes=1)) -> datetime | None:
        """When the room completes by itself, if no one is in it; None while occupied.

        ``minute`` is the length of one timeout minute (shortened in tests).
        """
        if self.status is not RoomStatus.IN_PROGRESS:
            return None
        if not self.ever_joined:
            return self.date_created + self.unused_room_timeout * minute
        if self.emptied_at is not None:
            return self.emptied_at + self.empty_room_timeout * minute
        return None
