"""The object model: Rooms, Participants, track publications and subscriptions, rules.

State and state machines only; no I/O. The server keeps these in a store and
the SFU is told what they decide.
"""

from .composition import Composition, CompositionHook, CompositionSpec, CompositionStatus
from .participant import Participant, ParticipantStatus
from .record import Record, utcnow
from .recording import Recording, RecordingStatus
from .room import Room, RoomStatus, RoomType
from .rules import RecordingRules, Rule, SubscribeRules, TrackFacts, parse_rules
from .status_callback import StatusCallbackSequence
from .track import PublishedTrack, SubscribedTrack, TrackKind

__all__ = [
    "Composition",
    "CompositionHook",
    "CompositionSpec",
    "CompositionStatus",
    "Participant",
    "ParticipantStatus",
    "PublishedTrack",
    "Record",
    "Recording",
    "RecordingRules",
    "RecordingStatus",
    "Room",
    "RoomStatus",
    "RoomType",
    "Rule",
    "StatusCallbackSequence",
    "SubscribeRules",
    "SubscribedTrack",
    "TrackFacts",
    "TrackKind",
    "parse_rules",
    "utcnow",
]
