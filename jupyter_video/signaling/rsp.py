"""RSP v2: the Room Signaling Protocol bodies carried in TCMP ``msg`` frames.

Typed dataclasses with ``from_dict`` (validate what arrives) and ``to_dict``
(the JSON to send), one class per message type, for both ends:

- client -> server: ``connect``, ``sync``, ``update``, ``disconnect`` (and ``ice``,
  sent only when twilio-video is not given ``iceServers``);
- server -> client: ``connected``, ``update``, ``synced``, ``disconnected``,
  ``error`` (and ``iced``).

Reference: twilio-video 2.36 ``lib/signaling/v2/twilioconnectiontransport.js``
(what the client sends and how it reacts), ``room.js`` ``_update`` (which server
fields it reads), ``peerconnection.js`` (descriptions, ICE), ``localparticipant.js``
and ``remoteparticipant.js`` (track states). docs/signaling.md has the captures.

Malformed client bodies raise ``SignalingError(53004)``, malformed server bodies
``SignalingError(53003)``; the message names the field, e.g.
``connect.participant.tracks[1].kind: expected one of audio, data, video, got 'foo'``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, TypeVar

from jupyter_video.errors import SignalingError

__all__ = [
    "RSP_VERSION",
    "ClientMessage",
    "Connect",
    "Connected",
    "Description",
    "Disconnect",
    "Disconnected",
    "Error",
    "Ice",
    "IceCandidate",
    "IceState",
    "Iced",
    "LocalParticipantState",
    "LocalTrackState",
    "ParticipantRef",
    "PeerConnectionState",
    "Published",
    "PublishedTrack",
    "Recording",
    "RemoteParticipantState",
    "RemoteTrackState",
    "Revision",
    "RevisionFilter",
    "RoomOptions",
    "ServerMessage",
    "ServerUpdate",
    "Subscribed",
    "SubscribedTrack",
    "Sync",
    "Synced",
    "Update",
    "parse_client_message",
    "parse_server_message",
]

RSP_VERSION = 2
TRACK_KINDS = ("audio", "data", "video")
# Track.Priority in twilio-video (lib/media/track/index.js); "standard" by default.
TRACK_PRIORITIES = ("high", "low", "standard")
# peerconnection.js _updateDescription handles these; "rollback" is local only.
DESCRIPTION_TYPES = ("answer", "close", "create-offer", "offer", "pranswer")
PARTICIPANT_STATES = ("connected", "disconnected", "reconnecting")
PUBLISHED_STATES = ("created", "failed", "ready")

CLIENT_INVALID = 53004
SERVER_INVALID = 53003

T = TypeVar("T")


# --- validation -----------------------------------------------------------------------------

class _Reader:
    """Reads typed fields from one JSON object, naming the path in every error."""

    def __init__(self, data: Any, path: str, code: int) -> None:
        if not isinstance(data, dict):
            raise SignalingError(code, f"{path}: expected an object, got {_type(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.code = code

    def fail(self, name: str, problem: str) -> SignalingError:
        return SignalingError(self.code, f"{self.path}.{name}: {problem}")

    def _get(self, name: str, kinds: tuple[type, ...], required: bool, what: str) -> Any:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.fail(name, "missing")
            return None
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(name, f"expected {what}, got boolean")
        if not isinstance(value, kinds):
            raise self.fail(name, f"expected {what}, got {_type(value)}")
        return value

    def string(self, name: str) -> str:
        return str(self._get(name, (str,), True, "string"))

    def opt_string(self, name: str) -> str | None:
        value = self._get(name, (str,), False, "string")
        return None if value is None else str(value)

    def integer(self, name: str) -> int:
        value = self._get(name, (int,), True, "integer")
        if value < 0:
            raise self.fail(name, f"expected a non-negative integer, got {value}")
        return int(value)

    def opt_integer(self, name: str) -> int | None:
        return None if self.data.get(name) is None else self.integer(name)

    def boolean(self, name: str) -> bool:
        return bool(self._get(name, (bool,), True, "boolean"))

    def opt_boolean(self, name: str, default: bool) -> bool:
        return default if self.data.get(name) is None else self.boolean(name)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.string(name)
        if value not in choices:
            raise self.fail(name, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def opt_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        return None if self.data.get(name) is None else self.choice(name, choices)

    def obj(self, name: str) -> dict[str, Any]:
        return dict(self._get(name, (dict,), True, "object"))

    def opt_obj(self, name: str) -> dict[str, Any] | None:
        value = self._get(name, (dict,), False, "object")
        return None if value is None else dict(value)

    def child(self, name: str, parse: Callable[[_Reader], T]) -> T:
        return parse(_Reader(self.obj(name), f"{self.path}.{name}", self.code))

    def opt_child(self, name: str, parse: Callable[[_Reader], T]) -> T | None:
        return None if self.data.get(name) is None else self.child(name, parse)

    def array(self, name: str, parse: Callable[[_Reader], T]) -> list[T]:
        items = self._get(name, (list,), True, "array")
        return [parse(_Reader(item, f"{self.path}.{name}[{i}]", self.code))
                for i, item in enumerate(items)]

    def opt_array(self, name: str, parse: Callable[[_Reader], T]) -> list[T] | None:
        return None if self.data.get(name) is None else self.array(name, parse)

    def version(self) -> int:
        """RSP ``version``: absent is accepted, anything but 2 is not."""
        value = self._get("version", (int,), False, "integer")
        if value is not None and value != RSP_VERSION:
            raise self.fail("version", f"unsupported RSP version {value}, expected 2")
        return RSP_VERSION


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values: absent and null read the same to twilio-video."""
    return {k: v for k, v in data.items() if v is not None}


# --- shared parts ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LocalTrackState:
    """A track the client publishes (localtrackpublication.js ``getState``).

    ``id`` is the MediaTrackSender id: the ``a=msid`` track id in the client's SDP
    for audio/video, the RTCDataChannel label for data.
    """

    id: str
    kind: str
    name: str
    enabled: bool
    priority: str = "standard"
    audio_processor: str | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> LocalTrackState:
        return cls(id=r.string("id"), kind=r.choice("kind", TRACK_KINDS), name=r.string("name"),
                   enabled=r.boolean("enabled"),
                   priority=r.opt_choice("priority", TRACK_PRIORITIES) or "standard",
                   audio_processor=r.opt_string("audio_processor"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"enabled": self.enabled, "id": self.id, "kind": self.kind,
                         "name": self.name, "priority": self.priority,
                         "audio_processor": self.audio_processor})


@dataclass(frozen=True)
class LocalParticipantState:
    """The client's own participant: ``revision`` grows on every track change."""

    revision: int
    tracks: list[LocalTrackState]

    @classmethod
    def from_reader(cls, r: _Reader) -> LocalParticipantState:
        return cls(revision=r.integer("revision"),
                   tracks=r.array("tracks", LocalTrackState.from_reader))

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "tracks": [t.to_dict() for t in self.tracks]}


@dataclass(frozen=True)
class Description:
    """An SDP description or a command, with the peer connection's shared revision.

    Types: ``offer``/``answer``/``pranswer`` carry ``sdp``; ``create-offer`` asks
    the client to offer (its offer then has ``revision + 1``); ``close`` closes
    that peer connection (peerconnection.js ``_updateDescription``).
    """

    type: str
    revision: int
    sdp: str | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> Description:
        kind = r.choice("type", DESCRIPTION_TYPES)
        sdp = r.string("sdp") if kind in ("offer", "answer", "pranswer") else r.opt_string("sdp")
        return cls(type=kind, revision=r.integer("revision"), sdp=sdp)

    def to_dict(self) -> dict[str, Any]:
        return _compact({"type": self.type, "revision": self.revision, "sdp": self.sdp})


@dataclass(frozen=True)
class IceCandidate:
    """One RTCIceCandidate as JSON (``candidate`` is the SDP ``candidate:...`` line)."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None
    username_fragment: str | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> IceCandidate:
        return cls(candidate=r.string("candidate"), sdp_mid=r.opt_string("sdpMid"),
                   sdp_mline_index=r.opt_integer("sdpMLineIndex"),
                   username_fragment=r.opt_string("usernameFragment"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"candidate": self.candidate, "sdpMid": self.sdp_mid,
                         "sdpMLineIndex": self.sdp_mline_index,
                         "usernameFragment": self.username_fragment})


@dataclass(frozen=True)
class IceState:
    """Trickle ICE: ALL candidates so far for ``ufrag`` (cumulative, not a delta).

    ``revision`` grows per message; ``complete`` marks end of gathering
    (peerconnection.js ``_handleIceCandidateEvent``; icebox.js applies only the
    candidates beyond those already seen for that ufrag).
    """

    ufrag: str
    revision: int
    candidates: list[IceCandidate] = field(default_factory=list)
    complete: bool = False

    @classmethod
    def from_reader(cls, r: _Reader) -> IceState:
        # icebox.js: "The Server sometimes does not set the candidates property."
        candidates = r.opt_array("candidates", IceCandidate.from_reader) or []
        return cls(ufrag=r.string("ufrag"), revision=r.integer("revision"), candidates=candidates,
                   complete=r.opt_boolean("complete", False))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"candidates": [c.to_dict() for c in self.candidates],
                                "ufrag": self.ufrag, "revision": self.revision}
        if self.complete:
            data["complete"] = True
        return data


@dataclass(frozen=True)
class PeerConnectionState:
    """One entry of ``peer_connections``: a description, trickled ICE, or both."""

    id: str
    description: Description | None = None
    ice: IceState | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> PeerConnectionState:
        return cls(id=r.string("id"),
                   description=r.opt_child("description", Description.from_reader),
                   ice=r.opt_child("ice", IceState.from_reader))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"id": self.id,
                         "description": self.description.to_dict() if self.description else None,
                         "ice": self.ice.to_dict() if self.ice else None})


# --- client -> server -----------------------------------------------------------------------

@dataclass(frozen=True)
class Connect:
    """First message (in ``hello.body``): join ``name`` with ``token``.

    ``media_signaling`` lists the MSP channels the client wants
    (``{"active_speaker": {"transports": [{"type": "data-channel"}]}, ...}``);
    ``subscribe`` is ``{"rules": [{"type": "include", "all": true}], "revision": 1}``
    (util/index.js ``createMediaSignalingPayload``, ``createSubscribePayload``).
    """

    TYPE: ClassVar[str] = "connect"
    token: str
    participant: LocalParticipantState
    peer_connections: list[PeerConnectionState]
    name: str | None = None
    ice_servers: str | None = None
    publisher: dict[str, Any] | None = None
    media_signaling: dict[str, Any] = field(default_factory=dict)
    subscribe: dict[str, Any] | None = None
    format: str | None = None
    bandwidth_profile: dict[str, Any] | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> Connect:
        r.version()
        return cls(token=r.string("token"),
                   participant=r.child("participant", LocalParticipantState.from_reader),
                   peer_connections=r.array("peer_connections", PeerConnectionState.from_reader),
                   name=r.opt_string("name"), ice_servers=r.opt_string("ice_servers"),
                   publisher=r.opt_obj("publisher"),
                   media_signaling=r.opt_obj("media_signaling") or {},
                   subscribe=r.opt_obj("subscribe"), format=r.opt_string("format"),
                   bandwidth_profile=r.opt_obj("bandwidth_profile"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({
            "name": self.name, "participant": self.participant.to_dict(),
            "peer_connections": [p.to_dict() for p in self.peer_connections],
            "type": self.TYPE, "version": RSP_VERSION, "ice_servers": self.ice_servers,
            "publisher": self.publisher, "bandwidth_profile": self.bandwidth_profile,
            "media_signaling": self.media_signaling, "subscribe": self.subscribe,
            "format": self.format, "token": self.token})


@dataclass(frozen=True)
class Sync:
    """Reconnect on a new WebSocket (in ``hello.body``): same ``session``, full state."""

    TYPE: ClassVar[str] = "sync"
    session: str
    token: str
    participant: LocalParticipantState
    peer_connections: list[PeerConnectionState]
    name: str | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> Sync:
        r.version()
        return cls(session=r.string("session"), token=r.string("token"),
                   participant=r.child("participant", LocalParticipantState.from_reader),
                   peer_connections=r.array("peer_connections", PeerConnectionState.from_reader),
                   name=r.opt_string("name"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({
            "name": self.name, "participant": self.participant.to_dict(),
            "peer_connections": [p.to_dict() for p in self.peer_connections],
            "type": self.TYPE, "version": RSP_VERSION, "session": self.session,
            "token": self.token})


@dataclass(frozen=True)
class Update:
    """Client update: new local state and/or descriptions and ICE.

    twilio-video attaches its full ``participant`` to every update, including
    those that only carry ICE (room.js ``_publishPeerConnectionState``): compare
    ``participant.revision`` before acting on it.
    """

    TYPE: ClassVar[str] = "update"
    session: str
    participant: LocalParticipantState | None = None
    peer_connections: list[PeerConnectionState] | None = None
    bandwidth_profile: dict[str, Any] | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> Update:
        r.version()
        return cls(session=r.string("session"),
                   participant=r.opt_child("participant", LocalParticipantState.from_reader),
                   peer_connections=r.opt_array("peer_connections",
                                               PeerConnectionState.from_reader),
                   bandwidth_profile=r.opt_obj("bandwidth_profile"))

    def to_dict(self) -> dict[str, Any]:
        pcs = self.peer_connections
        return _compact({
            "session": self.session, "type": self.TYPE, "version": RSP_VERSION,
            "peer_connections": None if pcs is None else [p.to_dict() for p in pcs],
            "participant": self.participant.to_dict() if self.participant else None,
            "bandwidth_profile": self.bandwidth_profile})


@dataclass(frozen=True)
class Disconnect:
    """The client leaves; ``session`` is null if it never got ``connected``."""

    TYPE: ClassVar[str] = "disconnect"
    session: str | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> Disconnect:
        r.version()
        return cls(session=r.opt_string("session"))

    def to_dict(self) -> dict[str, Any]:
        return {"session": self.session, "type": self.TYPE, "version": RSP_VERSION}


@dataclass(frozen=True)
class Ice:
    """ICE-server request, sent instead of connect when ``iceServers`` is not given."""

    TYPE: ClassVar[str] = "ice"
    token: str
    edge: str | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> Ice:
        return cls(token=r.string("token"), edge=r.opt_string("edge"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"edge": self.edge, "token": self.token, "type": self.TYPE,
                         "version": 1})


ClientMessage: TypeAlias = Connect | Sync | Update | Disconnect | Ice


# --- server -> client -----------------------------------------------------------------------

@dataclass(frozen=True)
class ParticipantRef:
    """``participant`` in server messages: who the client is (room.js ``_update``)."""

    sid: str
    identity: str

    @classmethod
    def from_reader(cls, r: _Reader) -> ParticipantRef:
        return cls(sid=r.string("sid"), identity=r.string("identity"))

    def to_dict(self) -> dict[str, Any]:
        return {"sid": self.sid, "identity": self.identity}


@dataclass(frozen=True)
class RemoteTrackState:
    """A track another participant publishes (remotetrackpublication.js)."""

    sid: str
    name: str
    kind: str
    enabled: bool = True
    priority: str = "standard"

    @classmethod
    def from_reader(cls, r: _Reader) -> RemoteTrackState:
        return cls(sid=r.string("sid"), name=r.string("name"), kind=r.choice("kind", TRACK_KINDS),
                   enabled=r.boolean("enabled"),
                   priority=r.opt_choice("priority", TRACK_PRIORITIES) or "standard")

    def to_dict(self) -> dict[str, Any]:
        return {"sid": self.sid, "name": self.name, "kind": self.kind,
                "enabled": self.enabled, "priority": self.priority}


@dataclass(frozen=True)
class RemoteParticipantState:
    """Another participant; ``tracks`` is its complete list (missing ones are unpublished).

    The client ignores a state whose ``revision`` is not above the last one it
    applied for that sid (remoteparticipant.js ``update``).
    """

    sid: str
    identity: str
    revision: int
    state: str = "connected"
    tracks: list[RemoteTrackState] = field(default_factory=list)

    @classmethod
    def from_reader(cls, r: _Reader) -> RemoteParticipantState:
        return cls(sid=r.string("sid"), identity=r.string("identity"),
                   revision=r.integer("revision"),
                   state=r.choice("state", PARTICIPANT_STATES),
                   tracks=r.array("tracks", RemoteTrackState.from_reader))

    def to_dict(self) -> dict[str, Any]:
        return {"sid": self.sid, "identity": self.identity, "state": self.state,
                "revision": self.revision, "tracks": [t.to_dict() for t in self.tracks]}


@dataclass(frozen=True)
class PublishedTrack:
    """Outcome of one local track: ``ready`` with its ``sid``, or ``failed`` with ``error``."""

    id: str
    state: str
    sid: str | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> PublishedTrack:
        state = r.choice("state", PUBLISHED_STATES)
        return cls(id=r.string("id"), state=state,
                   sid=r.string("sid") if state == "ready" else r.opt_string("sid"),
                   error=r.obj("error") if state == "failed" else r.opt_obj("error"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"id": self.id, "sid": self.sid, "state": self.state,
                         "error": self.error})


@dataclass(frozen=True)
class Published:
    """``published``: the client applies it only when ``revision`` grew."""

    revision: int
    tracks: list[PublishedTrack]

    @classmethod
    def from_reader(cls, r: _Reader) -> Published:
        return cls(revision=r.integer("revision"),
                   tracks=r.array("tracks", PublishedTrack.from_reader))

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "tracks": [t.to_dict() for t in self.tracks]}


@dataclass(frozen=True)
class SubscribedTrack:
    """Track ``sid`` arrives as ``id``: the ``a=msid`` track id in the server's SDP
    (audio/video) or the RTCDataChannel label (data); or ``error`` if it failed."""

    sid: str
    id: str | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> SubscribedTrack:
        return cls(sid=r.string("sid"), id=r.opt_string("id"), error=r.opt_obj("error"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"sid": self.sid, "id": self.id, "error": self.error})


@dataclass(frozen=True)
class Subscribed:
    """``subscribed``: the complete list; a sid missing from it is unsubscribed."""

    revision: int
    tracks: list[SubscribedTrack]

    @classmethod
    def from_reader(cls, r: _Reader) -> Subscribed:
        return cls(revision=r.integer("revision"),
                   tracks=r.array("tracks", SubscribedTrack.from_reader))

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "tracks": [t.to_dict() for t in self.tracks]}


@dataclass(frozen=True)
class Recording:
    """``recording``: room.recording state (recording.js, revision starts at 1)."""

    is_recording: bool
    revision: int

    @classmethod
    def from_reader(cls, r: _Reader) -> Recording:
        return cls(is_recording=r.boolean("is_recording"), revision=r.integer("revision"))

    def to_dict(self) -> dict[str, Any]:
        return {"is_recording": self.is_recording, "revision": self.revision}


@dataclass(frozen=True)
class RoomOptions:
    """``connected.options``: ``session_timeout`` (s) enables reconnection (sync)."""

    session_timeout: int = 30
    media_region: str | None = None
    signaling_region: str | None = None

    @classmethod
    def from_reader(cls, r: _Reader) -> RoomOptions:
        return cls(session_timeout=r.integer("session_timeout"),
                   media_region=r.opt_string("media_region"),
                   signaling_region=r.opt_string("signaling_region"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"session_timeout": self.session_timeout,
                         "media_region": self.media_region,
                         "signaling_region": self.signaling_region})


def _media_signaling_from(r: _Reader) -> dict[str, str]:
    """``{channel: {transport: {type: "data-channel", label}}}`` -> ``{channel: label}``."""
    granted: dict[str, str] = {}
    for channel in r.data:
        transport = r.child(channel, lambda c: c.child("transport", lambda t: t))
        if transport.choice("type", ("data-channel",)):
            granted[channel] = transport.string("label")
    return granted


@dataclass(frozen=True, kw_only=True)
class _RoomState:
    """Fields any of connected / update / synced may carry."""

    TYPE: ClassVar[str] = ""
    # twilio-video reads the session only from connected; echoing it is harmless
    session: str | None = None
    participant: ParticipantRef | None = None
    participants: list[RemoteParticipantState] | None = None
    peer_connections: list[PeerConnectionState] | None = None
    published: Published | None = None
    subscribed: Subscribed | None = None
    recording: Recording | None = None
    # channel -> RTCDataChannel label the server opened for it
    media_signaling: dict[str, str] | None = None

    @staticmethod
    def _state_fields(r: _Reader) -> dict[str, Any]:
        return {
            "session": r.opt_string("session"),
            "participant": r.opt_child("participant", ParticipantRef.from_reader),
            "participants": r.opt_array("participants", RemoteParticipantState.from_reader),
            "peer_connections": r.opt_array("peer_connections", PeerConnectionState.from_reader),
            "published": r.opt_child("published", Published.from_reader),
            "subscribed": r.opt_child("subscribed", Subscribed.from_reader),
            "recording": r.opt_child("recording", Recording.from_reader),
            "media_signaling": r.opt_child("media_signaling", _media_signaling_from),
        }

    def _state_dict(self) -> dict[str, Any]:
        def many(items: list[Any] | None) -> list[dict[str, Any]] | None:
            return None if items is None else [i.to_dict() for i in items]

        def one(item: Any) -> dict[str, Any] | None:
            return None if item is None else item.to_dict()

        ms = self.media_signaling
        return _compact({
            "type": self.TYPE,
            "session": self.session,
            "participant": one(self.participant),
            "participants": many(self.participants),
            "peer_connections": many(self.peer_connections),
            "published": one(self.published),
            "subscribed": one(self.subscribed),
            "recording": one(self.recording),
            "media_signaling": None if ms is None else {
                channel: {"transport": {"type": "data-channel", "label": label}}
                for channel, label in ms.items()},
        })


@dataclass(frozen=True, kw_only=True)
class Connected(_RoomState):
    """The join succeeded; ``participant`` is required (cancelableroomsignalingpromise.js
    rejects with 53003 without it), ``options.session_timeout`` is read unconditionally
    (twilioconnectiontransport.js ``handleMessage``)."""

    TYPE: ClassVar[str] = "connected"
    session: str
    sid: str
    name: str
    participant: ParticipantRef
    options: RoomOptions = field(default_factory=RoomOptions)

    @classmethod
    def from_reader(cls, r: _Reader) -> Connected:
        state = cls._state_fields(r)
        state["participant"] = r.child("participant", ParticipantRef.from_reader)
        state["session"] = r.string("session")
        return cls(sid=r.string("sid"), name=r.string("name"),
                   options=r.child("options", RoomOptions.from_reader), **state)

    def to_dict(self) -> dict[str, Any]:
        data = self._state_dict()
        data.update(session=self.session, sid=self.sid, name=self.name,
                    options=self.options.to_dict())
        return data


@dataclass(frozen=True, kw_only=True)
class ServerUpdate(_RoomState):
    """Server ``update``: any subset of the room state, applied field by field."""

    TYPE: ClassVar[str] = "update"

    @classmethod
    def from_reader(cls, r: _Reader) -> ServerUpdate:
        return cls(**cls._state_fields(r))

    def to_dict(self) -> dict[str, Any]:
        return self._state_dict()


@dataclass(frozen=True, kw_only=True)
class Synced(_RoomState):
    """Answer to ``sync``: the full state; participants and peer connections left out
    are disconnected / closed by the client (room.js ``_update``,
    peerconnectionmanager.js ``update(…, synced=true)``)."""

    TYPE: ClassVar[str] = "synced"

    @classmethod
    def from_reader(cls, r: _Reader) -> Synced:
        return cls(**cls._state_fields(r))

    def to_dict(self) -> dict[str, Any]:
        return self._state_dict()


@dataclass(frozen=True)
class Disconnected:
    """The server ends the session; ``status: completed`` -> client error 53118,
    anything else -> disconnected without error (twilioconnectiontransport.js)."""

    TYPE: ClassVar[str] = "disconnected"
    status: str | None = "completed"

    @classmethod
    def from_reader(cls, r: _Reader) -> Disconnected:
        return cls(status=r.opt_string("status"))

    def to_dict(self) -> dict[str, Any]:
        return _compact({"type": self.TYPE, "status": self.status})


@dataclass(frozen=True)
class Error:
    """Fatal error in any state: the client disconnects with ``createTwilioError(code)``."""

    TYPE: ClassVar[str] = "error"
    code: int
    message: str

    @classmethod
    def from_reader(cls, r: _Reader) -> Error:
        return cls(code=r.integer("code"), message=r.opt_string("message") or "")

    @classmethod
    def from_exception(cls, error: Exception) -> Error:
        """From a ``VideoError`` (its code and message) or any exception (53000)."""
        code = getattr(error, "code", 53000)
        return cls(code=code if isinstance(code, int) else 53000,
                   message=getattr(error, "message", None) or str(error))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Iced:
    """Answer to ``ice``: RTCIceServer dicts; the client then sends ``connect``."""

    TYPE: ClassVar[str] = "iced"
    ice_servers: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_reader(cls, r: _Reader) -> Iced:
        return cls(ice_servers=[dict(s.data) for s in r.array("ice_servers", lambda s: s)])

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "ice_servers": self.ice_servers}


ServerMessage: TypeAlias = Connected | ServerUpdate | Synced | Disconnected | Error | Iced

_CLIENT: dict[str, Callable[[_Reader], ClientMessage]] = {
    "connect": Connect.from_reader, "sync": Sync.from_reader, "update": Update.from_reader,
    "disconnect": Disconnect.from_reader, "ice": Ice.from_reader,
}
_SERVER: dict[str, Callable[[_Reader], ServerMessage]] = {
    "connected": Connected.from_reader, "update": ServerUpdate.from_reader,
    "synced": Synced.from_reader, "disconnected": Disconnected.from_reader,
    "error": Error.from_reader, "iced": Iced.from_reader,
}


def _parse(body: Any, table: dict[str, Callable[[_Reader], T]], code: int, side: str) -> T:
    if not isinstance(body, dict):
        raise SignalingError(code, f"RSP body must be an object, got {_type(body)}")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise SignalingError(code, "RSP body has no string 'type'")
    if kind not in table:
        raise SignalingError(code, f"RSP: unknown {side} message type {kind!r}")
    return table[kind](_Reader(body, kind, code))


def parse_client_message(body: Any) -> ClientMessage:
    """Validate an RSP body from twilio-video; raise ``SignalingError(53004)`` naming the field."""
    return _parse(body, _CLIENT, CLIENT_INVALID, "client")


def parse_server_message(body: Any) -> ServerMessage:
    """Validate an RSP body from a server; raise ``SignalingError(53003)`` naming the field."""
    return _parse(body, _SERVER, SERVER_INVALID, "server")


# --- revisions ------------------------------------------------------------------------------

class Revision:
    """A revision this side hands out: starts at ``start`` and only grows."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def next(self) -> int:
        """Advance and return the new revision."""
        self.value += 1
        return self.value

    def advance_to(self, revision: int) -> int:
        """Jump forward to ``revision`` if it is higher (e.g. a peer connection's offer)."""
        self.value = max(self.value, revision)
        return self.value


class RevisionFilter:
    """The highest revision seen per key; ``accept`` only newer ones.

    This is what twilio-video does with every revisioned state (room.js,
    localparticipant.js, remoteparticipant.js) and what a server must do with the
    client's: ``participant.revision`` repeats on every ICE-only update.
    """

    def __init__(self) -> None:
        self._latest: dict[Hashable, int] = {}

    def accept(self, key: Hashable, revision: int) -> bool:
        """True (and remember it) if ``revision`` is above the last accepted for ``key``."""
        latest = self._latest.get(key)
        if latest is not None and revision <= latest:
            return False
        self._latest[key] = revision
        return True

    def latest(self, key: Hashable) -> int | None:
        """The last accepted revision for ``key``, if any."""
        return self._latest.get(key)
