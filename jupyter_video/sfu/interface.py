"""The typed interface between the control plane and the media plane.

The control plane drives the media plane with commands and hears back events;
both are dataclasses that serialize to one JSON line each, so the same
interface runs in-process (``media_workers = 0``) or across the pipes of a
media worker process. The media plane knows participants, rooms and track SIDs
only as opaque strings: it never decides policy, it is told which publication
goes to which subscriber.

Error results carry Twilio's codes (:class:`jupyter_video.errors.VideoError`).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import enum
import json
import os
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..errors import VideoError

Kind = Literal["audio", "video", "data"]


@dataclass
class DataLimits:
    """What one participant may send on its data tracks through the media plane.

    A message over ``max_message_bytes`` (Twilio documents 16 KiB per DataTrack
    message) or beyond ``messages_per_second`` (on average, ``burst`` at once, over
    all of the participant's data tracks) is not forwarded: it is counted in
    :class:`MediaStats` and logged. The size is also announced in the SFU's SDP
    (``a=max-message-size``, RFC 8841), so that a WebRTC sender's own
    ``RTCDataChannel.send`` refuses a larger message before it leaves.
    0 turns a limit off.
    """

    max_message_bytes: int = 16384
    messages_per_second: float = 100.0
    burst: int = 200


class PeerState(str, enum.Enum):
    """A participant's peer connection, as the media plane sees it."""

    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


# ------------------------------------------------------------------- commands


@dataclass
class Command:
    """A request from the control plane; ``MediaPlane.execute`` returns its result."""

    registry: ClassVar[dict[str, type[Command]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Command.registry[cls.__name__] = cls


@dataclass
class AddPeer(Command):
    """Create the peer connection of a participant joining ``room_sid``, which takes
    video in ``video_codecs`` only (the room's ``VideoCodecs``)."""

    participant_sid: str
    room_sid: str
    video_codecs: list[str] = field(default_factory=lambda: ["VP8", "H264"])


@dataclass
class RestorePeer(Command):
    """Re-create the peer of a participant whose media worker exited (docs/reliability.md,
    "Media worker failover"), to take its ICE-restart offer: ``session_sdp`` is the SFU's
    last agreed SDP of the session (its send m-sections keep their mids and msids),
    ``client_channels`` and ``server_channels`` the stream ids of the data channels
    that were open (label -> id; the client keeps them open across the restart)."""

    participant_sid: str
    room_sid: str
    video_codecs: list[str] = field(default_factory=lambda: ["VP8", "H264"])
    session_sdp: str | None = None
    client_channels: dict[str, int] = field(default_factory=dict)
    server_channels: dict[str, int] = field(default_factory=dict)


@dataclass
class RemovePeer(Command):
    """Close a participant's peer connection, its publications and subscriptions."""

    participant_sid: str


@dataclass
class ApplyOffer(Command):
    """Apply the participant's SDP offer; the result is the SFU's SDP answer."""

    participant_sid: str
    sdp: str


@dataclass
class CreateOffer(Command):
    """Create an SDP offer carrying the participant's current subscriptions."""

    participant_sid: str


@dataclass
class ApplyAnswer(Command):
    """Apply the participant's SDP answer to the SFU's last offer."""

    participant_sid: str
    sdp: str


@dataclass
class AddIceCandidate(Command):
    """A remote ICE candidate (``candidate`` None: end of candidates)."""

    participant_sid: str
    candidate: str | None
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass
class BindPublication(Command):
    """Name the participant's track ``track_id`` (a MediaStreamTrack id, or a data
    channel label) with the publication SID ``track_sid`` the control plane chose."""

    participant_sid: str
    track_id: str
    track_sid: str
    kind: Kind


@dataclass
class Unpublish(Command):
    """Stop forwarding a publication and end all its subscriptions."""

    participant_sid: str
    track_sid: str


@dataclass
class Subscribe(Command):
    """Forward publication ``track_sid`` to ``subscriber_sid``; the result says
    whether the subscriber needs an offer (``CreateOffer``)."""

    subscriber_sid: str
    track_sid: str


@dataclass
class Unsubscribe(Command):
    """Stop forwarding ``track_sid`` to ``subscriber_sid``; result as Subscribe's."""

    subscriber_sid: str
    track_sid: str


@dataclass
class SetEnabled(Command):
    """Pause (False) or resume (True) forwarding of a publication."""

    participant_sid: str
    track_sid: str
    enabled: bool


@dataclass
class GrantActiveSpeaker(Command):
    """Open the participant's ``active_speaker`` media-signaling channel (an
    RTCDataChannel labelled ``label``, docs/signaling.md section 9) and keep it
    told who the room's dominant speaker is; the result says whether the
    participant needs an offer (its first data channel)."""

    participant_sid: str
    label: str


QUALITY_CHANNELS = ("network_quality", "render_hints", "track_priority",
                    "track_switch_off", "publisher_hints")
"""The quality MSP channels the media plane speaks (``active_speaker`` aside)."""


@dataclass
class GrantMediaSignaling(Command):
    """Open the participant's quality media-signaling channels, ``channels`` (MSP
    name -> data channel label: network_quality, render_hints, track_priority,
    track_switch_off, publisher_hints; docs/quality.md); the result is a
    :class:`MediaSignalingGrant`."""

    participant_sid: str
    channels: dict[str, str]


@dataclass
class MediaSignalingGrant:
    """The channels a :class:`GrantMediaSignaling` opened (none for a media socket
    peer) and whether the participant needs an offer for them."""

    opened: list[str]
    needs_offer: bool


@dataclass
class SetBandwidthProfile(Command):
    """The participant's RSP ``bandwidth_profile`` (None: none), which decides the
    layers and switch-off of its video subscriptions."""

    participant_sid: str
    profile: dict[str, Any] | None


@dataclass
class SetTrackPriority(Command):
    """The publisher's priority of its track ``track_sid`` (low, standard, high)."""

    participant_sid: str
    track_sid: str
    priority: str


@dataclass
class CloseRoom(Command):
    """Close every peer of the room."""

    room_sid: str


@dataclass
class StartRecording(Command):
    """Record publication ``track_sid`` into the Matroska file ``path``, from its next
    keyframe on (``RecordingStarted`` says when media began)."""

    participant_sid: str
    track_sid: str
    recording_sid: str
    path: str


@dataclass
class StopRecording(Command):
    """Finish a recording's file; the result is its :class:`RecordingSummary` (None if
    the recording had already ended, which a ``RecordingEnded`` event reported)."""

    recording_sid: str


@dataclass
class OpenMediaSocket(Command):
    """Let the participant's media travel over a media socket (docs/media_socket.md)
    instead of ICE: the result is the :class:`MediaSocketAddress` the control plane
    relays that socket's messages to (a new one replaces the participant's last)."""

    participant_sid: str


@dataclass
class MediaSocketAddress:
    """Where a media plane takes one participant's relayed media socket: the Unix
    socket ``path``, and the ``key`` that the first relayed message must be;
    ``participant_key`` is the credential the peer's SDP gave the participant (a
    page whose signaling session twilio-video keeps to itself says it in hello)."""

    path: str
    key: str
    participant_key: str = ""


@dataclass
class GetStats(Command):
    """Media-plane counters (:class:`MediaStats`)."""


@dataclass
class MediaStats:
    """What one media plane (or worker) has done so far."""

    pid: int
    cpu_seconds: float
    rooms: int
    peers: int
    publications: int
    subscriptions: int
    frames_received: int
    frames_forwarded: int
    keyframe_requests_sent: int
    decoders_created: int
    encoders_created: int
    recordings: int = 0
    frames_recorded: int = 0
    packets_forwarded: int = 0
    """RTP packets sent to subscribers (totals since the worker started, as all below)."""
    bytes_forwarded: int = 0
    """Encoded media bytes in them."""
    keyframe_requests_received: int = 0
    """PLI/FIR from subscribers (relayed to publishers, at most one PLI a second)."""
    plis_sent: int = 0
    """PLIs sent to publishers."""
    nacks_received: int = 0
    """Packets subscribers NACKed (answered from each send stream's history)."""
    nacks_sent: int = 0
    """Packets NACKed to publishers."""
    packets_received: int = 0
    """RTP packets received from publishers (RTX and padding included)."""
    retransmissions_sent: int = 0
    """NACKed packets sent again to subscribers (as RTX where negotiated)."""
    retransmissions_received: int = 0
    """RTX packets from publishers, unwrapped."""
    packets_recovered: int = 0
    """Packets counted missing from publishers that arrived after all."""
    frames_depacketized: int = 0
    """Frames assembled from packets for recorders and WebSocket subscribers."""
    packets_packetized: int = 0
    """RTP packets made from WebSocket publishers' frames."""
    event_loop: str = ""
    """The module of the plane's event loop class: uvloop in workers, asyncio in-process."""
    first_frame_buckets: list[int] = field(default_factory=list)
    """Participants whose first video frame came within each FIRST_FRAME_BUCKETS bound
    (cumulative, as Prometheus buckets) of their joining, or of the first video
    subscription they were given, whichever was later."""
    first_frame_sum: float = 0.0
    first_frame_count: int = 0
    data_messages_relayed: int = 0
    """Data track messages forwarded (each counted once, however many subscribers)."""
    data_messages_too_large: int = 0
    """Data track messages over DataLimits.max_message_bytes, not forwarded."""
    data_messages_over_rate: int = 0
    """Data track messages beyond DataLimits.messages_per_second, not forwarded."""


FIRST_FRAME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
"""Seconds: the upper bounds of the join-to-first-frame histogram's buckets."""


@dataclass
class FirstFrameHistogram:
    """Join-to-first-frame times observed in one media plane (see ``MediaStats``)."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(FIRST_FRAME_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(FIRST_FRAME_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
        self.total += seconds
        self.count += 1


@dataclass
class WorkerStatus:
    """Whether one media worker process is running (``index`` 0 in-process)."""

    index: int
    pid: int | None
    alive: bool


@dataclass
class RecordingSummary:
    """What a finished recording's file holds (``error``: why it holds nothing usable)."""

    recording_sid: str
    codec: str | None  # vp8, h264, opus
    started_at: float | None  # Unix time of the first recorded frame
    duration: float  # seconds of media
    size: int  # bytes
    error: str | None = None


# --------------------------------------------------------------------- events


@dataclass
class Event:
    """Something the media plane reports to the control plane."""

    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Event.registry[cls.__name__] = cls


@dataclass
class TrackReceived(Event):
    """Media for the participant's track ``track_id`` started to be negotiated."""

    participant_sid: str
    track_id: str
    kind: Kind
    stream_id: str | None
    mid: str | None
    codec: str | None


@dataclass
class DataChannelOpened(Event):
    """The participant opened a data channel labelled ``label`` (its track id), on
    SCTP stream ``stream_id``; ``local``: the SFU opened it (a data subscription, a
    media-signaling channel), not the participant."""

    participant_sid: str
    label: str
    stream_id: int | None = None
    local: bool = False


@dataclass
class ConnectionStateChanged(Event):
    """A peer connection moved to ``state``; ``error_code`` 53405 when it failed."""

    participant_sid: str
    state: PeerState
    error_code: int | None = None


@dataclass
class RenegotiationNeeded(Event):
    """Subscriptions changed in a way that needs a new offer to the participant."""

    participant_sid: str


@dataclass
class DominantSpeakerChanged(Event):
    """The loudest participant of the room (from ``ssrc-audio-level``), or None."""

    room_sid: str
    participant_sid: str | None


@dataclass
class RecordingStarted(Event):
    """The first frame of a recording (a keyframe, for video) was written."""

    recording_sid: str
    codec: str
    started_at: float  # Unix time


@dataclass
class RecordingEnded(RecordingSummary, Event):
    """A recording ended without a StopRecording: its publication or peer ended, or
    writing failed."""


@dataclass
class WorkerExited(Event):
    """A media worker process ended; its rooms' peers are gone (the control plane
    restores them on a live worker, :class:`RestorePeer`)."""

    worker: int
    exit_code: int | None
    room_sids: list[str] = field(default_factory=list)
    participant_sids: list[str] = field(default_factory=list)


# --------------------------------------------------------------- JSON lines


def to_json(message: Command | Event) -> dict[str, Any]:
    """``message`` as a JSON object with its class name under ``type``."""
    body = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    for key, value in body.items():
        if isinstance(value, enum.Enum):
            body[key] = value.value
    return {"type": type(message).__name__, **body}


def command_from_json(data: dict[str, Any]) -> Command:
    """The command that :func:`to_json` wrote."""
    return _from_json(Command.registry, data)  # type: ignore[return-value]


def event_from_json(data: dict[str, Any]) -> Event:
    """The event that :func:`to_json` wrote."""
    event = _from_json(Event.registry, data)
    if isinstance(event, ConnectionStateChanged):
        event.state = PeerState(event.state)
    return event  # type: ignore[return-value]


def _from_json(registry: dict[str, type], data: dict[str, Any]) -> object:
    body = dict(data)
    cls = registry.get(body.pop("type", ""))
    if cls is None:
        raise ValueError(f"unknown message type in {data!r}")
    return cls(**body)


def result_to_json(result: object) -> object:
    """A command's result as JSON (MediaStats as an object)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return result


def error_to_json(error: VideoError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message}


def error_from_json(data: dict[str, Any]) -> VideoError:
    return VideoError.from_code(int(data["code"]), str(data["message"]))


def dumps(data: object) -> str:
    """One JSON line."""
    return json.dumps(data, separators=(",", ":")) + "\n"


# ------------------------------------------------------ media socket relay

# The control plane relays each media socket message to the media plane over a
# Unix stream as <length u32><kind u8><payload>, kind 0 text and 1 binary: one
# copy per message, no parsing (the media plane checks what it receives).
_RELAY_HEADER = struct.Struct("!IB")
RELAY_LIMIT = 8 * 1024 * 1024


def relay_frame(message: str | bytes) -> bytes:
    """``message`` framed for the relay stream."""
    if isinstance(message, str):
        payload = message.encode()
        return _RELAY_HEADER.pack(len(payload), 0) + payload
    return _RELAY_HEADER.pack(len(message), 1) + message


async def relay_read(reader: asyncio.StreamReader) -> str | bytes | None:
    """The next relayed message, None at the end of the stream."""
    try:
        header = await reader.readexactly(_RELAY_HEADER.size)
        length, kind = _RELAY_HEADER.unpack(header)
        if length > RELAY_LIMIT:
            raise ConnectionError(f"relayed message of {length} bytes")
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    return payload.decode() if kind == 0 else payload


# ---------------------------------------------------------------- the plane


class MediaPlane(abc.ABC):
    """The media plane as the control plane sees it, in-process or in workers."""

    def __init__(self) -> None:
        self._events: asyncio.Queue[Event] = asyncio.Queue()

    @abc.abstractmethod
    async def start(self) -> None:
        """Get ready to take commands (start worker processes)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every peer and stop the workers."""

    @abc.abstractmethod
    async def execute(self, command: Command) -> Any:
        """Run one command; raises :class:`VideoError` with Twilio's code."""

    def report(self, event: Event) -> None:
        """Queue ``event`` for :meth:`events` / :meth:`next_event`."""
        self._events.put_nowait(event)

    async def next_event(self) -> Event:
        """The next event the media plane reports."""
        return await self._events.get()

    async def events(self) -> AsyncIterator[Event]:
        """Every event the media plane reports, as they come."""
        while True:
            yield await self._events.get()

    async def __aenter__(self) -> MediaPlane:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # The typed calls; each is one Command.

    async def add_peer(
        self, participant_sid: str, room_sid: str, video_codecs: Sequence[str] | None = None
    ) -> None:
        command = AddPeer(participant_sid, room_sid)
        if video_codecs is not None:
            command.video_codecs = list(video_codecs)
        await self.execute(command)

    async def restore_peer(self, command: RestorePeer) -> None:
        await self.execute(command)

    async def remove_peer(self, participant_sid: str) -> None:
        await self.execute(RemovePeer(participant_sid))

    async def apply_offer(self, participant_sid: str, sdp: str) -> str:
        answer: str = await self.execute(ApplyOffer(participant_sid, sdp))
        return answer

    async def create_offer(self, participant_sid: str) -> str:
        offer: str = await self.execute(CreateOffer(participant_sid))
        return offer

    async def apply_answer(self, participant_sid: str, sdp: str) -> None:
        await self.execute(ApplyAnswer(participant_sid, sdp))

    async def add_ice_candidate(
        self,
        participant_sid: str,
        candidate: str | None,
        sdp_mid: str | None = None,
        sdp_mline_index: int | None = None,
    ) -> None:
        await self.execute(AddIceCandidate(participant_sid, candidate, sdp_mid, sdp_mline_index))

    async def bind_publication(
        self, participant_sid: str, track_id: str, track_sid: str, kind: Kind
    ) -> None:
        await self.execute(BindPublication(participant_sid, track_id, track_sid, kind))

    async def unpublish(self, participant_sid: str, track_sid: str) -> None:
        await self.execute(Unpublish(participant_sid, track_sid))

    async def subscribe(self, subscriber_sid: str, track_sid: str) -> bool:
        needs_offer: bool = await self.execute(Subscribe(subscriber_sid, track_sid))
        return needs_offer

    async def unsubscribe(self, subscriber_sid: str, track_sid: str) -> bool:
        needs_offer: bool = await self.execute(Unsubscribe(subscriber_sid, track_sid))
        return needs_offer

    async def set_enabled(self, participant_sid: str, track_sid: str, enabled: bool) -> None:
        await self.execute(SetEnabled(participant_sid, track_sid, enabled))

    async def grant_active_speaker(self, participant_sid: str, label: str) -> bool:
        needs_offer: bool = await self.execute(GrantActiveSpeaker(participant_sid, label))
        return needs_offer

    async def grant_media_signaling(
        self, participant_sid: str, channels: dict[str, str]
    ) -> MediaSignalingGrant:
        result = await self.execute(GrantMediaSignaling(participant_sid, channels))
        return result if isinstance(result, MediaSignalingGrant) else MediaSignalingGrant(**result)

    async def set_bandwidth_profile(
        self, participant_sid: str, profile: dict[str, Any] | None
    ) -> None:
        await self.execute(SetBandwidthProfile(participant_sid, profile))

    async def set_track_priority(self, participant_sid: str, track_sid: str, priority: str) -> None:
        await self.execute(SetTrackPriority(participant_sid, track_sid, priority))

    async def close_room(self, room_sid: str) -> None:
        await self.execute(CloseRoom(room_sid))

    async def start_recording(
        self, participant_sid: str, track_sid: str, recording_sid: str, path: str
    ) -> None:
        await self.execute(StartRecording(participant_sid, track_sid, recording_sid, path))

    async def stop_recording(self, recording_sid: str) -> RecordingSummary | None:
        result = await self.execute(StopRecording(recording_sid))
        if result is None or isinstance(result, RecordingSummary):
            return result
        return RecordingSummary(**result)

    def worker_status(self) -> list[WorkerStatus]:
        """Each media worker's liveness, without asking it (in-process: this one)."""
        return [WorkerStatus(0, os.getpid(), True)]

    async def open_media_socket(self, participant_sid: str) -> MediaSocketAddress:
        result = await self.execute(OpenMediaSocket(participant_sid))
        return result if isinstance(result, MediaSocketAddress) else MediaSocketAddress(**result)

    async def stats(self) -> list[MediaStats]:
        """One MediaStats per worker (one in-process)."""
        result = await self.execute(GetStats())
        items = result if isinstance(result, list) else [result]
        return [s if isinstance(s, MediaStats) else MediaStats(**s) for s in items]
