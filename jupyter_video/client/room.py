"""Rooms: ``await connect(token, name)`` and everything that happens while you are in one.

A :class:`Room` is twilio-video's Room in Python: one signaling connection
(TCMP v2 + RSP v2, :mod:`.signaling`), its peer connections
(:mod:`.peer_connection`: one with the SFU in a group room, one per other
participant in a Go or Peer-to-Peer room, :mod:`.mesh`), the room state the
server sends (``participants``, ``published``, ``subscribed``, each revisioned),
and events. See
docs/signaling.md; room.js ``_update`` is the reference for how server state is
applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from aiortc import RTCBundlePolicy, RTCDataChannel, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import MediaError, SignalingError, VideoError
from ..signaling import rsp
from .events import EventEmitter, EventStream, Listener
from .mesh import TrackCopies
from .participant import LocalParticipant, ParticipantState, RemoteParticipant
from .peer_connection import (
    PeerConnection,
    Transport,
    has_application_section,
    rtc_configuration,
)
from .publication import LocalTrackPublication, RemoteTrackPublication
from .signaling import Closed, SignalingConnection, signaling_url
from .track import (
    LocalDataTrack,
    LocalMediaTrack,
    LocalTrack,
    RemoteAudioTrack,
    RemoteDataTrack,
    RemoteMediaTrack,
    RemoteTrack,
    RemoteVideoTrack,
)

log = logging.getLogger(__name__)

SDK_VERSION = "0.1.0"
ROOM_COMPLETED = 53118
CONNECT_TIMEOUT = 30.0  # hello handshake (15 s) plus the server's answer
AUTO_ICE_TIMEOUT = 5.0
"""Seconds ``transport="auto"`` waits for ICE to connect before it joins again over the
media socket."""
RECONNECT_BACKOFF = (0.08, 1.5, 5.0)  # util/constants.js: 80 ms x 1.5^n (capped here)
MEDIA_INACTIVITY = 3.0
"""Seconds without a byte received on a peer connection that had media before it is
restarted (twilio-video's ICE_INACTIVITY_THRESHOLD_MS); aiortc's own ICE takes 30 s
to fail."""
MEDIA_CHECK_INTERVAL = 0.5
MEDIA_RESTART_RETRY = 5.0
"""Seconds an ICE restart is given to carry media before the next one."""


class RoomState(str, enum.Enum):
    """Where your connection to the room stands."""

    CONNECTING = "connecting"  # inside connect(), before the server's ``connected``
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # signaling lost (re-joining with ``sync``) or media
    # lost (an ICE restart: a new peer connection under the same id)
    DISCONNECTED = "disconnected"


class _MediaPump:
    """Drains one aiortc receiver track (it queues frames without bound otherwise)
    and hands each frame to the subscribed remote track, if any."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.sink: RemoteMediaTrack | None = None
        self.task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if self.sink is not None:
                self.sink._deliver(frame)


class _IncomingChannel:
    """A data channel the server opened; messages wait here until it is matched."""

    def __init__(self, channel: RTCDataChannel, on_message: Any) -> None:
        self.channel = channel
        self.sink: RemoteDataTrack | None = None
        self.buffered: list[str | bytes] = []
        channel.on("message", lambda message: on_message(self, message))


class Room:
    """A room you are in: ``sid``, ``name``, ``state``, ``local_participant``,
    ``participants`` (sid -> :class:`RemoteParticipant`), ``dominant_speaker``, events."""

    def __init__(self, token: str, name: str | None, url: str, *,
                 dominant_speaker: bool = False, automatic_subscription: bool = True,
                 network_quality: bool = False,
                 ice_servers: Sequence[Mapping[str, Any]] | None = None,
                 ice_transport_policy: str = "all", transport: Transport = "webrtc") -> None:
        self.sid: str | None = None
        self.name = name
        self.media_region: str | None = None  # as twilio-video's room.mediaRegion
        self.state = RoomState.CONNECTING
        self.local_participant = LocalParticipant(self)
        self.participants: dict[str, RemoteParticipant] = {}
        self.dominant_speaker: RemoteParticipant | None = None
        self.is_recording = False
        self.error: VideoError | None = None  # why the room disconnected, if not by you
        self._token = token
        self._url = url
        self._want_dominant_speaker = dominant_speaker
        self._want_network_quality = network_quality
        self._network_quality_timer: asyncio.TimerHandle | None = None
        self._automatic_subscription = automatic_subscription
        self._events = EventEmitter()
        self._session: str | None = None
        self._session_timeout = 0
        self._signaling: SignalingConnection | None = None
        self.transport: Transport = transport
        """How media travels: "webrtc" (ICE) or "websocket" (the server's media socket)."""
        # None: asked of the server (RSP ``ice``) before the peer connection is made.
        self._ice_servers: list[dict[str, Any]] | None = (
            None if ice_servers is None else [dict(server) for server in ice_servers])
        self._ice_transport_policy = ice_transport_policy
        self._pc = PeerConnection(self._on_datachannel, rtc_configuration(
            self._ice_servers or [], "all" if ice_servers is None else ice_transport_policy),
            transport)
        # RSP id -> peer connection: the first one (``_pc``, offered in connect), and
        # in a Go or Peer-to-Peer room one more per other participant, opened when the
        # server names a new id (peerconnectionmanager.js ``_getOrCreate``).
        self._peer_connections: dict[str, PeerConnection] = {self._pc.id: self._pc}
        self._copies = TrackCopies()
        self._revisions = rsp.RevisionFilter()
        self._lock = asyncio.Lock()  # one change to the peer connection at a time
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._subscribed: dict[str, str] = {}  # track sid -> id it arrives under
        self._subscriptions: dict[str, RemoteTrack] = {}  # track sid -> matched track
        self._channels: dict[str, _IncomingChannel] = {}  # label -> server's channel
        self._pumps: dict[RTCRtpTransceiver, _MediaPump] = {}
        self._local_channels: dict[str, list[RTCDataChannel]] = {}  # data track id -> its channels
        self._msp_labels: dict[str, str] = {}  # label -> MSP channel name
        self._msp_ready: set[str] = set()
        self._media_lost = False  # reconnecting for an ICE restart (not for signaling)

    # ------------------------------------------------------------------ public API

    def on(self, name: str, listener: Listener) -> Listener:
        """Call ``listener(event)`` (sync or async) on every ``name`` event."""
        return self._events.on(name, listener)

    def off(self, name: str, listener: Listener) -> None:
        """Remove a listener added with :meth:`on`."""
        self._events.off(name, listener)

    def events(self) -> EventStream:
        """``async for event in room.events()``: every event from now until ``disconnected``."""
        return self._events.events()

    async def disconnect(self) -> None:
        """Leave the room (``disconnect``, ``bye``); every task of the room ends."""
        await self._end(None)

    async def get_stats(self) -> Any:
        """The peer connection's statistics (aiortc's ``RTCStatsReport``)."""
        return await self._pc.pc.getStats()

    async def chat_history(self) -> list[dict[str, Any]]:
        """The room's chat as the server keeps it, oldest first: ``sid``, ``identity``,
        ``text``, ``time``, ``room`` (docs/classroom.md)."""
        from ..classroom.channel import request, room_path

        body = await asyncio.to_thread(request, self._url, room_path(self.name or "") + "/chat",
                                       headers={"X-Video-Token": self._token})
        return list(body["messages"])

    async def __aenter__(self) -> Room:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    def __repr__(self) -> str:
        return (f"<Room {self.sid} {self.name!r} {self.state.value} "
                f"participants={len(self.participants)}>")

    # ------------------------------------------------------------------ joining

    async def _connect(self, tracks: Iterable[LocalTrack]) -> None:
        try:
            acquired = self._ice_servers is None and self.transport == "webrtc"
            if acquired:
                await self._acquire_ice_servers()
            for track in tracks:
                self.local_participant._announce(track)
                self._attach_local(track)
            self._pc.receive_audio_and_video()
            offer = await self._pc.offer()
            media_signaling: dict[str, Any] = {}
            if self._want_dominant_speaker:
                media_signaling["active_speaker"] = {"transports": [{"type": "data-channel"}]}
            if self._want_network_quality:
                media_signaling["network_quality"] = {"transports": [{"type": "data-channel"}]}
            connect = rsp.Connect(
                token=self._token, name=self.name,
                participant=self.local_participant._state(),
                peer_connections=[rsp.PeerConnectionState(self._pc.id, description=offer)],
                ice_servers="success" if acquired else "overrode",
                publisher={"name": "jupyter_video", "sdk_version": SDK_VERSION,
                           "user_agent": "Python aiortc"},
                media_signaling=media_signaling,
                # util/index.js createSubscribePayload
                subscribe={"rules": [{"type": "include" if self._automatic_subscription
                                      else "exclude", "all": True}], "revision": 1},
                format="unified")
            if self._signaling is None:
                self._signaling = SignalingConnection(self._url)
                await self._signaling.open(connect.to_dict())
            else:
                await self._signaling.send(connect.to_dict())
            await self._await_connected()
            if self.transport == "websocket":
                await self._open_media_socket()
        except BaseException as exc:
            error = exc if isinstance(exc, VideoError) else SignalingError(53000, str(exc))
            await self._teardown(error, announce=False)
            if isinstance(exc, VideoError):
                raise
            raise error from exc
        self._dispatcher = asyncio.ensure_future(self._dispatch())
        if self.transport == "webrtc":
            watch = asyncio.ensure_future(self._watch_media())
            self._tasks.add(watch)
            watch.add_done_callback(self._tasks.discard)

    async def _acquire_ice_servers(self) -> None:
        """Ask the server for STUN/TURN servers (RSP ``ice``, the hello's body, as
        twilio-video.js does without ``iceServers``), then make the peer connection."""
        self._signaling = SignalingConnection(self._url)
        await self._signaling.open(rsp.Ice(token=self._token).to_dict())
        message = await self._answer("iced")
        if not isinstance(message, rsp.Iced):
            raise SignalingError(53003, f"Expected iced, got {message.TYPE}")
        self._ice_servers = message.ice_servers
        unused = self._pc
        self._pc = PeerConnection(self._on_datachannel, rtc_configuration(
            message.ice_servers, self._ice_transport_policy), self.transport)
        self._peer_connections = {self._pc.id: self._pc}
        await unused.close()

    async def _open_media_socket(self) -> None:
        assert self._session is not None
        base = self._url.rstrip("/")
        if base.endswith("/video/signaling"):
            base = base[: -len("/signaling")]
        pc: Any = self._pc.pc  # a WebSocketPeerConnection
        await pc.open_media_socket(base + "/media", self._session)

    async def _ice_connected(self, timeout: float) -> bool:
        """Whether ICE connects within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._pc.id not in self._peer_connections:
                # The server closed it: a Go or Peer-to-Peer room, alone in it so far;
                # its media never goes to the server, over ICE or the media socket.
                return True
            if any(pc.pc.connectionState == "connected"
                   for pc in self._peer_connections.values()):
                return True
            if self._pc.pc.connectionState == "failed" or self.state is RoomState.DISCONNECTED:
                return False
            await asyncio.sleep(0.05)
        return False

    async def _answer(self, expected: str) -> rsp.ServerMessage:
        """The server's next message while joining (``expected`` names it in errors);
        an RSP ``error`` is raised as its VideoError."""
        assert self._signaling is not None
        try:
            item = await asyncio.wait_for(self._signaling.inbox.get(), CONNECT_TIMEOUT)
        except asyncio.TimeoutError:
            raise SignalingError(53000, f"The server did not answer (expected {expected})"
                                 ) from None
        if isinstance(item, Closed):
            raise SignalingError(53000, f"Signaling closed before {expected} "
                                        f"({item.code} {item.reason})")
        message = rsp.parse_server_message(item)
        if isinstance(message, rsp.Error):
            raise VideoError.from_code(message.code, message.message or None)
        return message

    async def _await_connected(self) -> None:
        message = await self._answer("connected")
        if isinstance(message, rsp.Disconnected):
            raise VideoError.from_code(ROOM_COMPLETED if message.status == "completed"
                                       else 53000)
        if not isinstance(message, rsp.Connected):
            raise SignalingError(53003, f"Expected connected, got {message.TYPE}")
        self._session = message.session
        self.sid = message.sid
        self.name = message.name
        self.media_region = message.options.media_region
        self._session_timeout = message.options.session_timeout
        self.state = RoomState.CONNECTED
        async with self._lock:
            await self._apply_state(message)

    # ------------------------------------------------------------------ server messages

    async def _dispatch(self) -> None:
        while self.state is not RoomState.DISCONNECTED:
            assert self._signaling is not None
            item = await self._signaling.inbox.get()
            if isinstance(item, Closed):
                if item.local:
                    return
                if not await self._reconnect():
                    return
                continue
            log.debug("server message: %s", item)
            try:
                message = rsp.parse_server_message(item)
            except SignalingError as exc:
                log.warning("ignored invalid server message: %s", exc)
                continue
            try:
                await self._handle(message)
            except VideoError as error:
                await self._end(error)
            except Exception as exc:
                log.exception("failed to apply a server message")
                await self._end(SignalingError(53000, f"Client failed: {exc}"))

    async def _handle(self, message: rsp.ServerMessage) -> None:
        if isinstance(message, rsp.Error):
            await self._end(VideoError.from_code(message.code, message.message or None))
        elif isinstance(message, rsp.Disconnected):
            await self._end(VideoError.from_code(ROOM_COMPLETED)
                            if message.status == "completed" else None)
        elif isinstance(message, rsp.ServerUpdate | rsp.Synced):
            async with self._lock:
                await self._apply_state(message, synced=isinstance(message, rsp.Synced))
            if isinstance(message, rsp.Synced) and self.state is RoomState.RECONNECTING:
                self.state = RoomState.CONNECTED
                self._events.emit("reconnected")

    async def _apply_state(self, state: Any, synced: bool = False) -> None:
        """room.js ``_update``: each part on its own revision."""
        if state.participant is not None:
            self.local_participant.sid = state.participant.sid
            self.local_participant.identity = state.participant.identity
        if state.participants is not None:
            listed = {p.sid for p in state.participants}
            for participant_state in state.participants:
                self._update_participant(participant_state)
            if synced:
                for sid in list(self.participants):
                    if sid not in listed:
                        self._remove_participant(self.participants[sid])
        for pc_state in state.peer_connections or ():
            await self._update_peer_connection(pc_state)
        if state.published is not None and self._revisions.accept("published",
                                                                  state.published.revision):
            self.local_participant._apply_published(state.published)
        if state.subscribed is not None and self._revisions.accept("subscribed",
                                                                   state.subscribed.revision):
            self._update_subscribed(state.subscribed)
        if state.recording is not None and self._revisions.accept("recording",
                                                                  state.recording.revision):
            self.is_recording = state.recording.is_recording
        for channel, label in (state.media_signaling or {}).items():
            self._msp_labels[label] = channel
            if label in self._channels:  # it came first: a media socket opens it at once
                self._maybe_ready_msp(self._channels[label])
        self._match()

    def _update_participant(self, state: rsp.RemoteParticipantState) -> None:
        if state.sid == self.local_participant.sid:
            return
        if not self._revisions.accept(("participant", state.sid), state.revision):
            return
        participant = self.participants.get(state.sid)
        if state.state == ParticipantState.DISCONNECTED.value:
            if participant is not None:
                self._remove_participant(participant)
            return
        is_new = participant is None
        if participant is None:
            participant = RemoteParticipant(state.sid, state.identity)
            self.participants[state.sid] = participant
        published = self._update_tracks(participant, state.tracks, announce=not is_new)
        new_state = ParticipantState(state.state)
        if is_new:
            participant.state = new_state
            self._events.emit("participant_connected", participant=participant)
            for publication in published:
                self._events.emit("track_published", participant=participant,
                                  publication=publication)
        elif new_state is not participant.state:
            participant.state = new_state
            name = ("participant_reconnecting" if new_state is ParticipantState.RECONNECTING
                    else "participant_reconnected")
            self._events.emit(name, participant=participant)

    def _update_tracks(self, participant: RemoteParticipant, tracks: list[rsp.RemoteTrackState],
                       announce: bool) -> list[RemoteTrackPublication]:
        """Apply a participant's complete track list; returns new publications."""
        listed = {t.sid: t for t in tracks}
        for sid in [s for s in participant.tracks if s not in listed]:
            self._unsubscribe(sid)
            publication = participant.tracks.pop(sid)
            self._events.emit("track_unpublished", participant=participant,
                              publication=publication)
        added: list[RemoteTrackPublication] = []
        for sid, track_state in listed.items():
            existing = participant.tracks.get(sid)
            if existing is None:
                publication = RemoteTrackPublication(
                    participant, sid, track_state.name, track_state.kind,
                    track_state.enabled, track_state.priority)
                participant.tracks[sid] = publication
                added.append(publication)
                if announce:
                    self._events.emit("track_published", participant=participant,
                                      publication=publication)
            elif existing.is_enabled != track_state.enabled:
                existing.is_enabled = track_state.enabled
                if existing.track is not None:
                    existing.track.is_enabled = track_state.enabled
                self._events.emit("track_enabled" if track_state.enabled else "track_disabled",
                                  participant=participant, publication=existing,
                                  track=existing.track)
        return added

    def _remove_participant(self, participant: RemoteParticipant) -> None:
        for sid in list(participant.tracks):
            self._unsubscribe(sid)
        participant.state = ParticipantState.DISCONNECTED
        self.participants.pop(participant.sid, None)
        if self.dominant_speaker is participant:
            self.dominant_speaker = None
        self._events.emit("participant_disconnected", participant=participant)

    async def _update_peer_connection(self, state: rsp.PeerConnectionState) -> None:
        pc = self._peer_connections.get(state.id)
        opened = pc is None
        if pc is None:
            if state.description is None or state.description.type not in (
                    "offer", "create-offer"):
                log.debug("ignored peer connection %s (unknown or closed)", state.id)
                return
            pc = self._open_peer_connection(state.id)
        if state.description is not None:
            if opened and state.description.type == "create-offer":
                self._send_local_tracks(pc)  # in the offer it is asked for
            for description in await pc.apply(state.description):
                await self._send_description(description, pc)
            if opened and state.description.type == "offer":
                # Only now: added before the other end's first offer is answered, a
                # track's transceiver would come first in aiortc's list without being
                # the BUNDLE's first m-section, and aiortc would stop the transport all
                # of them share when the answer to our next offer bundles it.
                self._send_local_tracks(pc)
                for description in await pc.renegotiate():
                    await self._send_description(description, pc)
            if state.description.type == "close":
                self._peer_connections.pop(pc.id, None)
            self._adopt_receivers()
        if state.ice is not None:
            await pc.add_ice(state.ice)

    def _open_peer_connection(self, id_: str) -> PeerConnection:
        """A peer connection with another participant of a Go or Peer-to-Peer room,
        under the id the server named (its local tracks come with the first
        description, :meth:`_send_local_tracks`)."""
        configuration = rtc_configuration(self._ice_servers or [], self._ice_transport_policy)
        # One transport for every m-section from the start, as twilio-video asks of its
        # RTCPeerConnections: tracks added before the other end's first offer was
        # answered must not bring candidates of their own into a later offer.
        configuration.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        pc = PeerConnection(self._on_datachannel, configuration, self.transport)
        pc.id = id_
        pc.keeps_remote_numbering = True
        self._peer_connections[id_] = pc
        for pc_before in self._peer_connections.values():
            pc_before.share_tracks(self._copies)  # no two senders pull from one track
        return pc

    def _send_local_tracks(self, pc: PeerConnection) -> None:
        """Every local track on ``pc`` (a copy of each, :mod:`.mesh`), receiving audio
        and video as the first peer connection does."""
        for track in self.local_participant._announced.values():
            self._attach_local(track, [pc])
        pc.receive_audio_and_video()

    # ------------------------------------------------------------------ subscriptions

    def _update_subscribed(self, subscribed: rsp.Subscribed) -> None:
        """The complete list: a sid not in it any more is unsubscribed (room.js)."""
        wanted = {t.sid: t.id for t in subscribed.tracks if t.id and not t.error}
        for sid, track_id in list(self._subscribed.items()):
            if wanted.get(sid) != track_id:
                self._unsubscribe(sid)
        self._subscribed = wanted
        for entry in subscribed.tracks:
            if entry.error:
                publication = self._publication(entry.sid)
                self._events.emit(
                    "track_subscription_failed",
                    participant=publication.participant if publication else None,
                    publication=publication,
                    error=VideoError.from_code(int(entry.error.get("code", 53000)),
                                               entry.error.get("message")))

    def _publication(self, sid: str) -> RemoteTrackPublication | None:
        for participant in self.participants.values():
            if sid in participant.tracks:
                return participant.tracks[sid]
        return None

    def _adopt_receivers(self) -> None:
        """Drain every receiving transceiver's track from the moment it exists."""
        for pc in self._peer_connections.values():
            for transceiver in pc.pc.getTransceivers():
                track = transceiver.receiver.track
                if track is not None and transceiver not in self._pumps:
                    self._pumps[transceiver] = _MediaPump(track)

    def _match(self) -> None:
        """Pair each ``subscribed`` entry with its m-section (by ``a=msid`` track id) or
        data channel (by label); fire ``track_subscribed`` once both exist."""
        # a track id -> the peer connection and m-section it arrives on (mids are
        # per peer connection; track ids are the publishers' own, unique in the room)
        mids = {track_id: (pc, mid) for pc in self._peer_connections.values()
                for mid, track_id in pc.remote_track_ids().items()}
        for sid, track_id in self._subscribed.items():
            if sid in self._subscriptions:
                self._rebind(self._subscriptions[sid], track_id, mids)
                continue
            publication = self._publication(sid)
            if publication is None:
                continue  # subscribed can come before the participant's tracks
            track: RemoteTrack
            if publication.kind == "data":
                incoming = self._channels.get(track_id)
                if incoming is None:
                    continue
                track = RemoteDataTrack(sid, publication.track_name)
                incoming.sink = track
            else:
                pump = self._pump_for_mid(*mids.get(track_id, (None, None)))
                if pump is None:
                    continue
                track = (RemoteVideoTrack if publication.kind == "video"
                         else RemoteAudioTrack)(sid, publication.track_name)
                pump.sink = track
            track.is_enabled = publication.is_enabled
            publication.track = track
            self._subscriptions[sid] = track
            self._events.emit("track_subscribed", participant=publication.participant,
                              publication=publication, track=track)
            if isinstance(track, RemoteDataTrack):
                self._flush_channel(track_id)

    def _rebind(self, track: RemoteTrack, track_id: str,
                mids: dict[str, tuple[PeerConnection, str]]) -> None:
        """A subscribed track whose m-section or channel an ICE restart replaced (a new
        peer connection, :meth:`_restart_media`) takes the new one's media: the
        application's track object goes on."""
        if isinstance(track, RemoteDataTrack):
            incoming = self._channels.get(track_id)
            if incoming is not None and incoming.sink is None:
                incoming.sink = track
                self._flush_channel(track_id)
            return
        if not isinstance(track, RemoteMediaTrack) or any(
                pump.sink is track for pump in self._pumps.values()):
            return
        pump = self._pump_for_mid(*mids.get(track_id, (None, None)))
        if pump is not None and pump.sink is None:
            pump.sink = track

    def _pump_for_mid(self, pc: PeerConnection | None, mid: str | None) -> _MediaPump | None:
        if pc is None or mid is None:
            return None
        self._adopt_receivers()
        for transceiver in pc.pc.getTransceivers():
            if transceiver.mid == mid and transceiver in self._pumps:
                return self._pumps[transceiver]
        return None

    def _unsubscribe(self, sid: str) -> None:
        track = self._subscriptions.pop(sid, None)
        if track is None:
            return
        track._end()
        for pump in self._pumps.values():
            if pump.sink is track:
                pump.sink = None
        for incoming in self._channels.values():
            if incoming.sink is track:
                incoming.sink = None
        publication = self._publication(sid)
        if publication is not None:
            publication.track = None
        self._events.emit("track_unsubscribed",
                          participant=publication.participant if publication else None,
                          publication=publication, track=track)

    # ------------------------------------------------------------------ data channels

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        incoming = _IncomingChannel(channel, self._on_channel_message)
        self._channels[channel.label] = incoming
        self._match()
        self._maybe_ready_msp(incoming)

    def _on_channel_message(self, incoming: _IncomingChannel, message: str | bytes) -> None:
        label = incoming.channel.label
        if label in self._msp_labels:
            self._on_msp_message(self._msp_labels[label], message)
            return
        if incoming.sink is None:
            incoming.buffered.append(message)
            return
        self._deliver_message(incoming.sink, message)

    def _flush_channel(self, label: str) -> None:
        incoming = self._channels[label]
        buffered, incoming.buffered = incoming.buffered, []
        for message in buffered:
            if incoming.sink is not None:
                self._deliver_message(incoming.sink, message)

    def _deliver_message(self, track: RemoteDataTrack, message: str | bytes) -> None:
        track._deliver(message)
        publication = self._publication(track.sid)
        self._events.emit("track_message", participant=publication.participant
                          if publication else None, publication=publication, track=track,
                          message=message)

    def _maybe_ready_msp(self, incoming: _IncomingChannel) -> None:
        label = incoming.channel.label
        if label not in self._msp_labels or label in self._msp_ready:
            return
        self._msp_ready.add(label)
        # data/transport.js: the first message on an MSP channel is "ready"
        ready = json.dumps({"type": "ready"})
        channel = self._msp_labels[label]

        def send_ready() -> None:
            incoming.channel.send(ready)
            if channel == "network_quality":
                self._send_network_quality_inputs(incoming.channel)

        if incoming.channel.readyState == "open":
            send_ready()
        else:
            incoming.channel.on("open", send_ready)

    def _send_network_quality_inputs(self, channel: RTCDataChannel) -> None:
        """The inputs networkqualitysignaling.js sends (the server measures for itself);
        the next go out a second after each reply, as there."""
        self._network_quality_timer = None
        if channel.readyState == "open" and self.state is not RoomState.DISCONNECTED:
            channel.send(json.dumps({"type": "network_quality", "reportLevel": 1,
                                     "remoteReportLevel": 1}))

    def _on_network_quality(self, body: dict[str, Any]) -> None:
        """Levels for you (``local``) and the others (``remotes``): set and announced."""
        local = body.get("local")
        level = local.get("level") if isinstance(local, dict) else local
        if isinstance(level, int) and level != self.local_participant.network_quality_level:
            self.local_participant.network_quality_level = level
            self._events.emit("network_quality_level_changed", participant=None, level=level)
        for remote in body.get("remotes") or []:
            participant = self.participants.get(remote.get("sid") or "")
            level = remote.get("level")
            if participant is not None and isinstance(level, int) \
                    and level != participant.network_quality_level:
                participant.network_quality_level = level
                self._events.emit("network_quality_level_changed",
                                  participant=participant, level=level)
        label = next((k for k, v in self._msp_labels.items() if v == "network_quality"), None)
        incoming = self._channels.get(label or "")
        if incoming is not None and self._network_quality_timer is None:
            self._network_quality_timer = asyncio.get_running_loop().call_later(
                1.0, self._send_network_quality_inputs, incoming.channel)

    def _on_msp_message(self, channel: str, message: str | bytes) -> None:
        try:
            body = json.loads(message)
        except ValueError:
            return
        if channel == "network_quality" and body.get("type") == "network_quality":
            self._on_network_quality(body)
        if channel == "active_speaker" and body.get("type") == "active_speaker":
            speaker = self.participants.get(body.get("participant") or "")
            if speaker is not self.dominant_speaker:
                self.dominant_speaker = speaker
                self._events.emit("dominant_speaker_changed", participant=speaker)

    # ------------------------------------------------------------------ local tracks

    def _attach_local(self, track: LocalTrack,
                      pcs: Iterable[PeerConnection] | None = None) -> None:
        """Send ``track`` on ``pcs`` (default: every peer connection of the room)."""
        several = len(self._peer_connections) > 1
        for pc in self._peer_connections.values() if pcs is None else pcs:
            if isinstance(track, LocalDataTrack):
                channel = pc.add_data_track(track)
                self._local_channels.setdefault(track.id, []).append(channel)
                track._attach(channel)
            else:
                pc.add_track(self._copies.copy(track) if several else track)

    async def _publish(self, track: LocalTrack) -> LocalTrackPublication:
        if self.state is not RoomState.CONNECTED:
            raise SignalingError(53001, f"Cannot publish while the room is {self.state.value}")
        async with self._lock:
            data_ready = {pc: has_application_section(
                pc.pc.localDescription.sdp if pc.pc.localDescription else None)
                for pc in self._peer_connections.values()}
            future = self.local_participant._announce(track)
            self._attach_local(track)
            await self._send_participant()
            # peerconnectionmanager.js: a data track on a negotiated SCTP needs no offer
            for pc, ready in data_ready.items():
                if not (isinstance(track, LocalDataTrack) and ready):
                    for description in await pc.renegotiate():
                        await self._send_description(description, pc)
        return await future

    async def _unpublish(self, track: LocalTrack) -> LocalTrackPublication | None:
        if track.id not in self.local_participant._announced:
            return None
        async with self._lock:
            publication = self.local_participant._withdraw(track)
            if isinstance(track, LocalDataTrack):
                for channel in self._local_channels.pop(track.id, []):
                    track._detach(channel)
                await self._send_participant()
            else:
                for pc in self._peer_connections.values():
                    pc.remove_track(track)
                await self._send_participant()
                for pc in list(self._peer_connections.values()):
                    for description in await pc.renegotiate():
                        await self._send_description(description, pc)
        return publication

    def _local_track_changed(self) -> None:
        """A local track was enabled or disabled: a new participant revision."""
        if self.state is RoomState.DISCONNECTED:
            return
        self.local_participant.revision += 1
        task = asyncio.ensure_future(self._send_participant())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ sending

    async def _send_update(self, peer_connections: list[rsp.PeerConnectionState] | None,
                           ) -> None:
        if self._signaling is None or self._session is None:
            return
        update = rsp.Update(session=self._session,
                            participant=self.local_participant._state(),
                            peer_connections=peer_connections)
        await self._signaling.send(update.to_dict())

    async def _send_participant(self) -> None:
        await self._send_update(None)

    async def _send_description(self, description: rsp.Description,
                                pc: PeerConnection | None = None) -> None:
        await self._send_update([rsp.PeerConnectionState((pc or self._pc).id,
                                                         description=description)])

    # ------------------------------------------------------------------ reconnecting

    async def _reconnect(self) -> bool:
        """Re-join on a new socket with ``sync`` (twilioconnectiontransport.js)."""
        if self._session_timeout <= 0 or self._session is None:
            await self._end(SignalingError(53001))
            return False
        self.state = RoomState.RECONNECTING
        self._events.emit("reconnecting", error=SignalingError(53001))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._session_timeout
        delay, factor, cap = RECONNECT_BACKOFF
        while loop.time() < deadline and self.state is RoomState.RECONNECTING:
            await asyncio.sleep(delay)
            delay = min(delay * factor, cap)
            sync = rsp.Sync(session=self._session, token=self._token, name=self.name,
                            participant=self.local_participant._state(),
                            peer_connections=[
                                rsp.PeerConnectionState(pc.id, description=pc.local_description())
                                for pc in self._peer_connections.values()])
            signaling = SignalingConnection(self._url)
            try:
                await signaling.open(sync.to_dict())
            except VideoError as exc:
                log.info("reconnect attempt failed: %s", exc)
                continue
            self._signaling = signaling
            return True
        if self.state is RoomState.RECONNECTING:
            await self._end(SignalingError(53002))
        return False

    # ------------------------------------------------------------------ ICE restart

    async def _watch_media(self) -> None:
        """Restart ICE when media stops, as twilio-video does (peerconnection.js
        ``_initiateIceRestart``): a peer connection carrying media that received
        before and then nothing for MEDIA_INACTIVITY seconds, or whose ICE failed
        (any peer connection, after aiortc's 30 s), is replaced; the
        room is ``reconnecting`` (53405) until the new one receives again, then
        ``reconnected``. Gone for longer than the session timeout: disconnected (53405)."""
        loop = asyncio.get_running_loop()
        watched: PeerConnection | None = None
        received, changed_at, flowing = 0, loop.time(), False
        restarted_at: float | None = None
        while self.state is not RoomState.DISCONNECTED:
            await asyncio.sleep(MEDIA_CHECK_INTERVAL)
            pc = self._pc
            if len(self._peer_connections) != 1 or self._peer_connections.get(pc.id) is not pc:
                continue  # a Go or Peer-to-Peer room: media goes to the other participants
            now = loop.time()
            if pc is not watched:
                watched, received, changed_at, flowing = pc, 0, now, False
            total = pc.bytes_received()
            if total != received:
                received, changed_at, flowing = total, now, True
                if restarted_at is not None and pc.pc.connectionState == "connected":
                    restarted_at = None
                    if self.state is RoomState.RECONNECTING and self._media_lost:
                        self._media_lost = False
                        self.state = RoomState.CONNECTED
                        self._events.emit("reconnected")
                continue
            failed = pc.pc.connectionState == "failed"
            silent = flowing and pc.carries_media() and now - changed_at >= MEDIA_INACTIVITY
            if restarted_at is None and (failed or silent):
                restarted_at = now
                await self._restart_media()
            elif restarted_at is not None and now - changed_at >= MEDIA_RESTART_RETRY:
                if self._session_timeout and now - restarted_at > self._session_timeout:
                    await self._end(MediaError(53405))
                    return
                changed_at = now
                await self._restart_media()

    async def _restart_media(self) -> None:
        """An ICE restart: a new RTCPeerConnection under the same id with every local
        track, offered with new ICE credentials. The server answers it and offers the
        subscriptions again; each arrives in the RemoteTrack it came in before
        (:meth:`_rebind`)."""
        if self.state is RoomState.DISCONNECTED:
            return
        async with self._lock:
            old = self._pc
            if self.state is RoomState.CONNECTED:
                self.state = RoomState.RECONNECTING
                self._media_lost = True
                self._events.emit("reconnecting", error=MediaError(
                    53405, "Media connection failed: restarting ICE"))
            log.info("restarting ICE on peer connection %s", old.id)
            new = old.successor(self._on_datachannel, rtc_configuration(
                self._ice_servers or [], self._ice_transport_policy))
            # The old senders stop before new ones pull from the same tracks.
            await old.close(keep_tracks=True)
            old_transceivers = set(old.pc.getTransceivers())
            for transceiver in [t for t in self._pumps if t in old_transceivers]:
                self._pumps.pop(transceiver).task.cancel()
            self._channels.clear()
            self._msp_ready.clear()
            for track_id, channels in self._local_channels.items():
                local = self.local_participant._announced.get(track_id)
                for channel in channels:
                    if isinstance(local, LocalDataTrack):
                        local._detach(channel)
            self._local_channels = {}
            self._pc = new
            self._peer_connections = {new.id: new}
            self._send_local_tracks(new)
            await self._send_description(await new.offer(), new)

    # ------------------------------------------------------------------ leaving

    async def _end(self, error: VideoError | None) -> None:
        """Leave (``error`` None) or be disconnected by ``error``."""
        if self.state is RoomState.DISCONNECTED:
            return
        await self._teardown(error, announce=True)

    async def _teardown(self, error: VideoError | None, announce: bool) -> None:
        self.state = RoomState.DISCONNECTED
        if self._network_quality_timer is not None:
            self._network_quality_timer.cancel()
            self._network_quality_timer = None
        self.error = error
        if self._signaling is not None:
            # twilio-video sends disconnect (session null before connected), then bye
            with contextlib.suppress(Exception):
                await self._signaling.send(rsp.Disconnect(session=self._session).to_dict())
            await self._signaling.close()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        if self._dispatcher is not None and self._dispatcher is not current:
            tasks.append(self._dispatcher)
        for task in tasks:
            task.cancel()
        for sid in list(self._subscriptions):
            self._unsubscribe(sid)
        for participant in self.participants.values():
            participant.state = ParticipantState.DISCONNECTED
        for pc in {self._pc, *self._peer_connections.values()}:
            await pc.close()
        pumps = [pump.task for pump in self._pumps.values()]
        for task in pumps:
            task.cancel()
        await asyncio.gather(*tasks, *pumps, return_exceptions=True)
        self._pumps.clear()
        self.local_participant._fail_pending(
            error or VideoError(53000, "The room disconnected before the track was published"))
        if announce:
            self._events.emit("disconnected", error=error)
        await self._events.aclose()


async def connect(token: str | None, name: str | None = "lab", server: str | None = None, *,
                  tracks: Iterable[LocalTrack] = (),
                  ice_host_addresses: Iterable[str] | None = None,
                  ice_servers: Sequence[Mapping[str, Any]] | None = None,
                  ice_transport_policy: str = "all",
                  dominant_speaker: bool = False,
                  automatic_subscription: bool = True,
                  network_quality: bool = False,
                  transport: Literal["auto", "webrtc", "websocket"] = "webrtc") -> Room:
    """Join room ``name`` with an Access Token, publishing ``tracks``.

    ``server`` is the server's base URL (``http://host:port/base/``; default: this
    user's running server, from :func:`jupyter_video.account.load_credentials`).
    ``ice_host_addresses`` limits the addresses ICE gathers on, process-wide
    (e.g. ``["127.0.0.1"]`` on a loopback-only machine). ``ice_servers``
    (RTCIceServer dicts, as ``/video/token`` returns them) default to the ones the
    server hands out (its TURN servers, with credentials for this token);
    ``ice_transport_policy="relay"`` sends media only through TURN, as a browser
    does with ``iceTransportPolicy: 'relay'``. ``dominant_speaker`` asks
    for ``dominant_speaker_changed`` events; ``network_quality`` for each participant's
    ``network_quality_level`` (0-5) and ``network_quality_level_changed`` events
    (docs/quality.md). ``automatic_subscription=False`` subscribes
    to nothing until the participant's SubscribeRules are changed over REST (as
    twilio-video's ``automaticSubscription``). ``name`` may be a room's SID.
    ``transport`` is how media travels: ``"webrtc"`` (ICE), ``"websocket"`` (the
    server's media socket on its own URL, where UDP does not reach:
    docs/media_socket.md), or ``"auto"`` (WebRTC, and the media socket when ICE has
    not connected within :data:`AUTO_ICE_TIMEOUT` seconds). Raises the
    :class:`VideoError` subclass carrying Twilio's code when the server refuses (53105 room full,
    53106 not found, 20104 token expired, ...).

    In a JupyterHub user's kernel where the hub runs the video service
    (``$JUPYTER_VIDEO_HUB_SERVICE_URL``), ``token=None`` asks the service for one as
    the hub user, and the room is the service's (20403 when the user may not create it).
    """
    from ..hub import discovery

    if token is None:
        grant = await asyncio.to_thread(discovery.request_grant, name or "lab")
        token, server = grant.token, server or grant.ws_server
    if server is None and discovery.service_url():
        server = discovery.service_url()
    if server is None:
        from ..account import load_credentials

        server = load_credentials().url
        if not server:
            raise ValueError("No running jupyter_video server found: pass server=")
    if ice_host_addresses is not None:
        from .._aiortc import use_host_addresses

        use_host_addresses(list(ice_host_addresses))
    tracks = list(tracks)
    for track in tracks:
        if not isinstance(track, LocalMediaTrack | LocalDataTrack):
            raise TypeError(f"tracks must be local tracks, got {track!r}")
    if transport not in ("auto", "webrtc", "websocket"):
        raise ValueError(f"transport must be 'auto', 'webrtc' or 'websocket', not {transport!r}")
    url = signaling_url(server)
    options: dict[str, Any] = dict(
        dominant_speaker=dominant_speaker, automatic_subscription=automatic_subscription,
        network_quality=network_quality, ice_servers=ice_servers,
        ice_transport_policy=ice_transport_policy)
    if transport in ("auto", "webrtc"):
        room = Room(token, name, url, transport="webrtc", **options)
        await room._connect(tracks)
        if transport == "webrtc" or await room._ice_connected(AUTO_ICE_TIMEOUT):
            return room
        log.info("ICE did not connect within %.0f s: joining again over the media socket",
                 AUTO_ICE_TIMEOUT)
        await room.disconnect()
    room = Room(token, name, url, transport="websocket", **options)
    await room._connect(tracks)
    return room
