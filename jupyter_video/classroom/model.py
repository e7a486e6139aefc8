"""A classroom's state: who holds the floor, hands, mutes, breakouts. No I/O.

Twilio has no classroom API; this is the project's own surface, kept beside the
Twilio-compatible one. One :class:`ClassroomState` belongs to each main room
(by unique name); breakout rooms are ordinary rooms linked to it.
"""

from __future__ import annotations

import enum
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ..errors import VideoError
from ..model.record import Record, utcnow
from ..sids import new_sid

CHAT_MESSAGE = "IM"  # as Twilio Conversations names its messages
MAX_CHAT_TEXT = 4096
MAX_BREAKOUTS = 50
KINDS = ("audio", "video")
REACTIONS = ("thumbs_up", "clap", "laugh", "surprised", "heart", "celebrate")
"""What a participant may react with (the widget draws each as its emoji)."""


class Action(str, enum.Enum):
    """What a participant asks of the classroom; MODERATED ones need a moderator."""

    MUTE = "mute"
    ALLOW_UNMUTE = "allow_unmute"
    REMOVE = "remove"
    LOCK = "lock"
    UNLOCK = "unlock"
    SETTINGS = "settings"
    SPOTLIGHT = "spotlight"
    RAISE_HAND = "raise_hand"
    LOWER_HAND = "lower_hand"
    LOWER_ALL_HANDS = "lower_all_hands"
    REACT = "react"
    CHAT = "chat"
    BREAKOUT = "breakout"
    BROADCAST = "broadcast"
    VISIT = "visit"
    RECALL = "recall"


MODERATED = {
    Action.MUTE: "mute a participant",
    Action.ALLOW_UNMUTE: "let a participant unmute",
    Action.REMOVE: "remove a participant",
    Action.LOCK: "lock the room",
    Action.UNLOCK: "unlock the room",
    Action.SETTINGS: "change the room's classroom settings",
    Action.SPOTLIGHT: "spotlight a participant",
    Action.LOWER_ALL_HANDS: "lower everyone's hands",
    Action.BREAKOUT: "open breakout rooms",
    Action.BROADCAST: "broadcast to every breakout room",
    Action.VISIT: "visit a breakout room",
    Action.RECALL: "recall everyone to the main room",
}


def refuse(actor: str, action: Action) -> VideoError:
    """20403 for a participant who is not a moderator."""
    return VideoError(
        20403,
        f"{actor} may not {MODERATED[action]}: only a moderator may (VideoApp.moderators, "
        "the hub's custom:video:moderate scope or moderator_groups, or the REST API key)",
    )


def check_reaction(reaction: object) -> str:
    if reaction not in REACTIONS:
        raise VideoError(20001, f"reaction must be one of {', '.join(REACTIONS)}, not {reaction!r}")
    return str(reaction)


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise VideoError(20001, f"kind must be 'audio' or 'video', not {kind!r}")
    return str(kind)


@dataclass
class ChatMessage(Record):
    """One chat message, kept with the room's records (``room_sid``)."""

    kind: ClassVar[str] = "chat_message"

    sid: str
    room_sid: str
    room_name: str
    identity: str
    text: str
    date_created: datetime = field(default_factory=utcnow)

    @classmethod
    def new(cls, room_sid: str, room_name: str, identity: str, text: str) -> ChatMessage:
        if not isinstance(text, str) or not text.strip():
            raise VideoError(20001, "A chat message needs non-empty text")
        if len(text) > MAX_CHAT_TEXT:
            raise VideoError(
                20001, f"A chat message is at most {MAX_CHAT_TEXT} characters, not {len(text)}"
            )
        return cls(new_sid(CHAT_MESSAGE), room_sid, room_name, identity, text)

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "room_sid": self.room_sid,
            "room": self.room_name,
            "identity": self.identity,
            "text": self.text,
            "time": self.date_created.isoformat().replace("+00:00", "Z"),
        }


CLASSROOM_STATE = "CL"


@dataclass
class ClassroomRecord(Record):
    """A main room's classroom state, kept beside its chat so a restart keeps it.

    One record per main room name (its SID is derived from the name), replaced on
    every change; ``members`` are those a lock still lets back in.
    """

    kind: ClassVar[str] = "classroom_state"

    sid: str
    room_name: str
    state: dict[str, Any]
    members: list[str] = field(default_factory=list)
    date_updated: datetime = field(default_factory=utcnow)

    @staticmethod
    def sid_for(room: str) -> str:
        return CLASSROOM_STATE + hashlib.sha256(room.encode()).hexdigest()[:32]

    @classmethod
    def of(cls, state: ClassroomState, members: set[str]) -> ClassroomRecord:
        return cls(cls.sid_for(state.room), state.room, state.to_store(), sorted(members))


@dataclass
class Hand:
    identity: str
    raised_at: float  # Unix seconds

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "raised_at": self.raised_at,
            "waiting_seconds": round(max(0.0, now - self.raised_at), 1),
        }


@dataclass
class Breakouts:
    """Breakout rooms opened from a main room: names and who is assigned where."""

    rooms: list[str]
    assignment: dict[str, str]  # identity -> breakout room name
    ends_at: float | None = None  # Unix seconds the countdown ends (None: no countdown)
    visiting: dict[str, str] = field(default_factory=dict)  # moderator -> breakout

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Breakouts:
        return cls(list(data["rooms"]), dict(data["assignment"]), data.get("ends_at"),
                   dict(data.get("visiting") or {}))

    def to_json(self) -> dict[str, Any]:
        return {
            "rooms": list(self.rooms),
            "assignment": dict(self.assignment),
            "ends_at": self.ends_at,
            "visiting": dict(self.visiting),
        }


@dataclass
class ClassroomState:
    """The moderation state of one main room."""

    room: str
    locked: bool = False
    mute_on_join: bool = False
    """New non-moderators join with microphone and camera held off."""
    self_unmute: bool = True
    """Whether a participant muted by a moderator may unmute on their own."""
    spotlight: str | None = None
    held: dict[str, set[str]] = field(default_factory=dict)
    """identity -> kinds a moderator muted that the participant may not enable."""
    released: dict[str, set[str]] = field(default_factory=dict)
    """identity -> kinds the mute-on-join guard no longer holds (allowed or muted again)."""
    hands: list[Hand] = field(default_factory=list)
    breakouts: Breakouts | None = None
    revision: int = 0

    def changed(self) -> None:
        self.revision += 1

    # -- mutes -------------------------------------------------------------------

    def holds(self, identity: str, kind: str, moderator: bool) -> bool:
        """Whether ``identity`` may not enable its ``kind`` track now."""
        if moderator:
            return False
        if kind in self.held.get(identity, set()):
            return True
        return self.mute_on_join and kind not in self.released.get(identity, set())

    def hold(self, identity: str, kind: str) -> None:
        if not self.self_unmute:
            self.held.setdefault(identity, set()).add(kind)

    def release(self, identity: str, kind: str) -> None:
        self.held.get(identity, set()).discard(kind)
        self.released.setdefault(identity, set()).add(kind)

    # -- hands -------------------------------------------------------------------

    def raise_hand(self, identity: str, now: float | None = None) -> bool:
        if any(hand.identity == identity for hand in self.hands):
            return False
        self.hands.append(Hand(identity, time.time() if now is None else now))
        return True

    def lower_hand(self, identity: str) -> bool:
        before = len(self.hands)
        self.hands = [hand for hand in self.hands if hand.identity != identity]
        return len(self.hands) != before

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "room": self.room,
            "locked": self.locked,
            "mute_on_join": self.mute_on_join,
            "self_unmute": self.self_unmute,
            "spotlight": self.spotlight,
            "held": {identity: sorted(kinds) for identity, kinds in self.held.items() if kinds},
            "hands": [hand.to_json(now) for hand in self.hands],
            "breakouts": self.breakouts.to_json() if self.breakouts else None,
            "revision": self.revision,
        }


    def to_store(self) -> dict[str, Any]:
        """Everything, as JSON (the sets as sorted lists), for :class:`ClassroomRecord`."""
        return {
            "locked": self.locked,
            "mute_on_join": self.mute_on_join,
            "self_unmute": self.self_unmute,
            "spotlight": self.spotlight,
            "held": {identity: sorted(kinds) for identity, kinds in self.held.items()},
            "released": {identity: sorted(kinds) for identity, kinds in self.released.items()},
            "hands": [[hand.identity, hand.raised_at] for hand in self.hands],
            "breakouts": self.breakouts.to_json() if self.breakouts else None,
            "revision": self.revision,
        }

    @classmethod
    def from_store(cls, room: str, data: dict[str, Any]) -> ClassroomState:
        breakouts = data.get("breakouts")
        return cls(
            room,
            locked=bool(data.get("locked")),
            mute_on_join=bool(data.get("mute_on_join")),
            self_unmute=bool(data.get("self_unmute", True)),
            spotlight=data.get("spotlight"),
            held={i: set(kinds) for i, kinds in (data.get("held") or {}).items()},
            released={i: set(kinds) for i, kinds in (data.get("released") or {}).items()},
            hands=[Hand(str(i), float(t)) for i, t in data.get("hands") or ()],
            breakouts=Breakouts.from_json(breakouts) if breakouts else None,
            revision=int(data.get("revision", 0)),
        )


def assign_evenly(identities: list[str], rooms: list[str]) -> dict[str, str]:
    """Round-robin, in the order given: group sizes differ by at most one."""
    return {identity: rooms[index % len(rooms)] for index, identity in enumerate(identities)}


def breakout_names(main: str, count: int) -> list[str]:
    if not isinstance(count, int) or not 1 <= count <= MAX_BREAKOUTS:
        raise VideoError(20001, f"rooms must be a whole number from 1 to {MAX_BREAKOUTS}")
    return [f"{main}-breakout-{index + 1}" for index in range(count)]
