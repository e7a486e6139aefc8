"""The media plane running in this process (``media_workers = 0``, and inside
each media worker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import _aiortc as adapter
from ..errors import (
    MediaError,
    ParticipantError,
    RoomError,
    SignalingError,
    TrackError,
    VideoError,
)
from ..signaling.mediasocket import is_media_socket_sdp
from .bandwidth import BandwidthProfile
from .data_relay import data_relay_counts
from .interface import (
    AddIceCandidate,
    AddPeer,
    ApplyAnswer,
    ApplyOffer,
    BindPublication,
    CloseRoom,
    Command,
    CreateOffer,
    DataLimits,
    FirstFrameHistogram,
    GetStats,
    GrantActiveSpeaker,
    GrantMediaSignaling,
    MediaPlane,
    MediaSignalingGrant,
    MediaSocketAddress,
    MediaStats,
    OpenMediaSocket,
    RecordingSummary,
    RemovePeer,
    RestorePeer,
    SetBandwidthProfile,
    SetEnabled,
    SetTrackPriority,
    StartRecording,
    StopRecording,
    Subscribe,
    Unpublish,
    Unsubscribe,
)
from .peer import Peer
from .publication import MediaPublication
from .recording import TrackRecorder
from .room import Room
from .rtp.counters import forwarding_counts
from .websocket import MediaSocketListener, WebSocketPeer

logger = logging.getLogger(__name__)

SPEAKER_INTERVAL = 0.5
"""Seconds between two dominant-speaker updates."""


class LocalMediaPlane(MediaPlane):
    """Rooms, peers and forwarding on this process's event loop.

    ``host_addresses`` are the addresses ICE gathers on (None: aioice's own
    choice; ``["127.0.0.1"]`` on a loopback-only machine); ``public_address`` is
    announced instead of them behind a 1:1 NAT; ``data_limits`` are what each
    participant's data tracks may send.
    """

    def __init__(
        self,
        host_addresses: Sequence[str] | None = None,
        public_address: str | None = None,
        data_limits: DataLimits | None = None,
    ) -> None:
        super().__init__()
        self.data_limits = data_limits or DataLimits()
        self.host_addresses = list(host_addresses) if host_addresses is not None else None
        self.public_address = public_address
        self.rooms: dict[str, Room] = {}
        self._room_of: dict[str, Room] = {}  # participant_sid -> room
        self._speaker_task: asyncio.Task[None] | None = None
        self._recorders: dict[str, tuple[MediaPublication, TrackRecorder]] = {}
        self._first_frame = FirstFrameHistogram()
        self._media_sockets = MediaSocketListener()
        self._handlers: dict[type[Command], Callable[[Any], Awaitable[Any]]] = {
            AddPeer: self._add_peer,
            RemovePeer: self._remove_peer,
            RestorePeer: self._restore_peer,
            ApplyOffer: self._apply_offer,
            CreateOffer: self._create_offer,
            ApplyAnswer: self._apply_answer,
            AddIceCandidate: self._add_ice_candidate,
            BindPublication: self._bind_publication,
            Unpublish: self._unpublish,
            Subscribe: self._subscribe,
            GrantActiveSpeaker: self._grant_active_speaker,
            GrantMediaSignaling: self._grant_media_signaling,
            SetBandwidthProfile: self._set_bandwidth_profile,
            SetTrackPriority: self._set_track_priority,
            Unsubscribe: self._unsubscribe,
            SetEnabled: self._set_enabled,
            CloseRoom: self._close_room,
            StartRecording: self._start_recording,
            StopRecording: self._stop_recording,
            GetStats: self._get_stats,
            OpenMediaSocket: self._open_media_socket,
        }

    async def start(self) -> None:
        adapter.drop_unchecked_datagrams()
        if self.host_addresses is not None:
            adapter.use_host_addresses(self.host_addresses)
        if self._speaker_task is None:
            self._speaker_task = asyncio.ensure_future(self._track_dominant_speakers())

    async def close(self) -> None:
        for room_sid in list(self.rooms):
            await self._close_room(CloseRoom(room_sid))
        if self._speaker_task is not None:
            self._speaker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker_task
            self._speaker_task = None
        await self._media_sockets.close()

    async def execute(self, command: Command) -> Any:
        handler = self._handlers[type(command)]
        try:
            return await handler(command)
        except VideoError:
            raise
        except Exception as exc:
            # The same answer in-process as across a worker's pipe: a Twilio code.
            logger.exception("media plane: %s failed", type(command).__name__)
            raise MediaError(53401, f"{type(command).__name__} failed: {exc}") from exc

    def _room(self, participant_sid: str) -> Room:
        try:
            return self._room_of[participant_sid]
        except KeyError:
            raise ParticipantError(53204, f"Participant {participant_sid} not found") from None

    def _peer(self, participant_sid: str) -> Peer | WebSocketPeer:
        return self._room(participant_sid).peer(participant_sid)

    # ----------------------------------------------------------- handlers

    async def _add_peer(self, command: AddPeer) -> None:
        room = self.rooms.get(command.room_sid)
        if room is None:
            room = Room(command.room_sid, self.report, self.data_limits)
            self.rooms[command.room_sid] = room
        peer = Peer(
            command.participant_sid,
            room,
            self.report,
            self.public_address,
            video_codecs=command.video_codecs,
        )
        peer.on_first_frame = self._first_frame.observe
        room.add_peer(peer)
        self._room_of[command.participant_sid] = room

    async def _restore_peer(self, command: RestorePeer) -> None:
        await self._add_peer(AddPeer(command.participant_sid, command.room_sid,
                                     command.video_codecs))
        peer = self._peer(command.participant_sid)
        if isinstance(peer, Peer) and command.session_sdp is not None:
            peer.restore(command.session_sdp, command.client_channels, command.server_channels)

    async def _remove_peer(self, command: RemovePeer) -> None:
        room = self._room_of.pop(command.participant_sid, None)
        if room is None:
            return
        await room.remove_peer(command.participant_sid)
        if not room.peers:
            self.rooms.pop(room.room_sid, None)

    async def _apply_offer(self, command: ApplyOffer) -> str:
        peer = self._peer(command.participant_sid)
        if isinstance(peer, Peer) and peer.pc.remoteDescription is None and is_media_socket_sdp(
            command.sdp
        ):
            # The participant's first offer says its media takes a media socket: it
            # is a WebSocket peer from now on (AddPeer came before any SDP).
            room = self._room(command.participant_sid)
            socket_peer = WebSocketPeer(command.participant_sid, room, self.report)
            room.peers[command.participant_sid] = socket_peer
            await peer.pc.close()
            peer = socket_peer
        return await peer.apply_offer(command.sdp)

    async def _open_media_socket(self, command: OpenMediaSocket) -> MediaSocketAddress:
        peer = self._peer(command.participant_sid)
        if not isinstance(peer, WebSocketPeer):
            raise MediaError(
                53405,
                f"Participant {command.participant_sid} negotiated WebRTC, not a media socket: "
                "offer media socket SDP first (docs/media_socket.md)",
            )
        return await self._media_sockets.address_for(peer)

    async def _create_offer(self, command: CreateOffer) -> str:
        return await self._peer(command.participant_sid).create_offer()

    async def _apply_answer(self, command: ApplyAnswer) -> None:
        await self._peer(command.participant_sid).apply_answer(command.sdp)

    async def _add_ice_candidate(self, command: AddIceCandidate) -> None:
        await self._peer(command.participant_sid).add_ice_candidate(
            command.candidate, command.sdp_mid, command.sdp_mline_index
        )

    async def _bind_publication(self, command: BindPublication) -> None:
        self._room(command.participant_sid).bind(
            command.participant_sid, command.track_id, command.track_sid, command.kind
        )

    async def _unpublish(self, command: Unpublish) -> None:
        self._room(command.participant_sid).unpublish(command.track_sid)

    async def _subscribe(self, command: Subscribe) -> bool:
        room = self._room(command.subscriber_sid)
        return room.peer(command.subscriber_sid).subscribe(room.publication(command.track_sid))

    async def _grant_active_speaker(self, command: GrantActiveSpeaker) -> bool:
        room = self._room(command.participant_sid)
        peer = room.peer(command.participant_sid)
        return peer.grant_active_speaker(command.label)

    async def _grant_media_signaling(self, command: GrantMediaSignaling) -> MediaSignalingGrant:
        peer = self._room(command.participant_sid).peer(command.participant_sid)
        if not isinstance(peer, Peer):
            # A media socket peer: its channels open on the socket, no offer needed.
            opened = [channel for channel, label in command.channels.items()
                      if peer.grant_quality(channel, label)]
            return MediaSignalingGrant(opened=opened, needs_offer=False)
        signaling = peer.quality_signaling()
        needs_offer = False
        for channel, label in command.channels.items():
            needs_offer = signaling.grant(channel, label) or needs_offer
        return MediaSignalingGrant(opened=list(command.channels), needs_offer=needs_offer)

    async def _set_bandwidth_profile(self, command: SetBandwidthProfile) -> None:
        peer = self._room(command.participant_sid).peer(command.participant_sid)
        if not isinstance(peer, Peer):
            return
        try:
            profile = BandwidthProfile.from_rsp(command.profile)
        except ValueError as exc:
            raise SignalingError(53004, f"Invalid bandwidth_profile: {exc}") from exc
        peer.quality_signaling().set_profile(profile)

    async def _set_track_priority(self, command: SetTrackPriority) -> None:
        publication = self._room(command.participant_sid).publication(command.track_sid)
        if isinstance(publication, MediaPublication):
            publication.priority = command.priority

    async def _unsubscribe(self, command: Unsubscribe) -> bool:
        return self._peer(command.subscriber_sid).unsubscribe(command.track_sid)

    async def _set_enabled(self, command: SetEnabled) -> None:
        publication = self._room(command.participant_sid).publication(command.track_sid)
        resumed = command.enabled and not publication.enabled
        if resumed and isinstance(publication, MediaPublication):
            # Subscribers resume on a keyframe.
            for subscription in publication.subscriptions:
                subscription.waiting_for_keyframe = publication.kind == "video"
            for recorder in publication.recorders:
                recorder.waiting_for_keyframe = publication.kind == "video"
            publication.request_keyframe()
        publication.enabled = command.enabled

    async def _close_room(self, command: CloseRoom) -> None:
        room = self.rooms.pop(command.room_sid, None)
        if room is None:
            raise RoomError(53106, f"Room {command.room_sid} not found")
        for participant_sid in room.peers:
            self._room_of.pop(participant_sid, None)
        await room.close()

    async def _start_recording(self, command: StartRecording) -> None:
        publication = self._room(command.participant_sid).publication(command.track_sid)
        if not isinstance(publication, MediaPublication):
            raise TrackError(53300, f"Track {command.track_sid} is a data track: not recordable")
        self._forget_ended_recorders()
        if command.recording_sid in self._recorders:
            raise MediaError(53401, f"Recording {command.recording_sid} is already running")
        recorder = TrackRecorder(
            command.recording_sid,
            command.path,
            publication.kind,
            publication.clock_rate,
            self.report,
        )
        self._recorders[command.recording_sid] = (publication, recorder)
        # From the ring's last keyframe: the recording has what was published since,
        # instead of losing the wait for the keyframe a PLI brings.
        held = publication.frames_from_keyframe(recent=False) if publication.enabled else []
        for frame in held:
            assert publication.codec is not None
            recorder.push(publication.codec, frame)
        publication.recorders.append(recorder)
        if not held:
            publication.request_keyframe()

    async def _stop_recording(self, command: StopRecording) -> RecordingSummary | None:
        entry = self._recorders.pop(command.recording_sid, None)
        if entry is None or entry[1].closed:
            return None  # it ended by itself, and RecordingEnded said so
        publication, recorder = entry
        publication.recorders.remove(recorder)
        return recorder.close()

    def _forget_ended_recorders(self) -> None:
        for sid in [sid for sid, (_, r) in self._recorders.items() if r.closed]:
            del self._recorders[sid]

    async def _get_stats(self, command: GetStats) -> MediaStats:
        publications = [p for room in self.rooms.values() for p in room.publications.values()]
        media = [p for p in publications if isinstance(p, MediaPublication)]
        counts = adapter.codec_counts
        forwarded = forwarding_counts
        return MediaStats(
            pid=os.getpid(),
            cpu_seconds=time.process_time(),
            rooms=len(self.rooms),
            peers=len(self._room_of),
            publications=len(publications),
            subscriptions=sum(len(p.subscriptions) for p in publications),
            frames_received=sum(p.frames_received for p in media),
            frames_forwarded=sum(p.frames_forwarded for p in media),
            keyframe_requests_sent=sum(p.keyframe_requests_sent for p in media),
            decoders_created=counts.decoders,
            encoders_created=counts.encoders,
            recordings=sum(len(p.recorders) for p in media),
            frames_recorded=sum(r.frames_written for _, r in self._recorders.values()),
            packets_forwarded=forwarded.packets_sent,
            bytes_forwarded=forwarded.bytes_sent,
            keyframe_requests_received=forwarded.keyframe_requests_received,
            plis_sent=forwarded.plis_sent,
            nacks_received=forwarded.nacks_received,
            nacks_sent=forwarded.nacks_sent,
            packets_received=forwarded.packets_received,
            retransmissions_sent=forwarded.retransmissions_sent,
            retransmissions_received=forwarded.retransmissions_received,
            packets_recovered=forwarded.packets_recovered,
            frames_depacketized=forwarded.frames_depacketized,
            packets_packetized=forwarded.packets_packetized,
            event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
            first_frame_buckets=list(self._first_frame.buckets),
            first_frame_sum=self._first_frame.total,
            first_frame_count=self._first_frame.count,
            data_messages_relayed=data_relay_counts.relayed,
            data_messages_too_large=data_relay_counts.too_large,
            data_messages_over_rate=data_relay_counts.over_rate,
        )

    async def _track_dominant_speakers(self) -> None:
        while True:
            await asyncio.sleep(SPEAKER_INTERVAL)
            for room in list(self.rooms.values()):
                room.update_dominant_speaker()
