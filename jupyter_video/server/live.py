"""Live rooms: participants connected through signaling, and what the media plane is told.

The registry keeps the records; this module keeps what only exists while
people are connected: their signaling connections, the revisions each client
has seen, the peer connection negotiation, and which publication is forwarded
to whom. Policy lives here (subscribe rules, duplicate identities, completed
rooms); the media plane only executes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import (
    AccessTokenError,
    ParticipantError,
    RoomError,
    SignalingError,
    TrackError,
    VideoError,
)
from ..model import (
    Participant,
    PublishedTrack,
    Room,
    RoomStatus,
    Rule,
    TrackFacts,
    TrackKind,
    parse_rules,
)
from ..model.participant import MAX_IDENTITY_LENGTH
from ..sfu import interface as media
from ..sfu.interface import QUALITY_CHANNELS, MediaPlane
from ..signaling import rsp
from ..tokens import TokenClaims, verify_token
from .peer_to_peer import GroupMediaPlane, Mesh
from .recordings import Recordings, Selection
from .registry import RoomEvent, RoomRegistry

log = logging.getLogger(__name__)

MAX_TRACK_NAME_LENGTH = 128
RESTORE_POLL = 0.1
"""Seconds between looks for a live media worker after one exited."""


def _subscribe_rules(subscribe: dict[str, Any] | None) -> list[Rule] | None:
    """The rules of connect's ``subscribe`` (``{"rules": [...], "revision": 1}``;
    twilio-video's ``automaticSubscription: false`` sends an exclude-all rule)."""
    if subscribe is None or subscribe.get("rules") is None:
        return None
    return parse_rules(subscribe, rsp.CLIENT_INVALID)


Admission = Callable[[Room, str], None]
"""``admit(room, identity)``: raise a VideoError to refuse a join."""
TrackHold = Callable[[Room, str, str], bool]
"""``held(room, identity, kind)``: True keeps that participant's track of ``kind`` off."""
Spotlight = Callable[[Room, str], bool]
"""``spotlit(room, identity)``: True while that participant is in the spotlight."""


class Connection(Protocol):
    """What a live participant needs from its signaling connection."""

    def send(self, body: dict[str, Any]) -> None:
        """Send one RSP body."""

    def close(self) -> None:
        """Close the connection (after whatever was sent)."""


@dataclass
class LiveSettings:
    """The parts of VideoApp's configuration that live rooms use."""

    ad_hoc_rooms: bool = True
    session_timeout: float = 30.0
    signaling_region: str = "gll"
    max_tracks_per_participant: int = 16


@dataclass
class LiveTrack:
    """One track a participant publishes: the client's id and the record.

    A data track is ``ready`` (listed in ``published``, so that twilio-video's
    ``publishTrack`` resolves) only once the SFU holds its open data channel and
    every participant subscribing to it has its subscription, which keeps what it
    is sent until its own channel opens: a message sent as soon as the track is
    published reaches everyone in the room then. Audio and video are ready at once.
    """

    client_id: str
    record: PublishedTrack
    priority: str = "standard"
    ready: bool = True
    settling: bool = False


class LiveParticipant:
    """A participant while connected: signaling state, revisions and negotiation."""

    def __init__(self, room: LiveRoom, record: Participant, connection: Connection) -> None:
        self.room = room
        self.record = record
        self.connection: Connection | None = connection
        self.session = str(uuid.uuid4())
        self.tracks: dict[str, LiveTrack] = {}  # client track id -> track
        self.failed: dict[str, VideoError] = {}  # client track id -> why it was refused
        self.subscriptions: dict[str, str] = {}  # track SID -> id the client receives it as
        self.open_channels: set[str] = set()  # labels of its data channels the SFU holds
        # What a media worker that exits takes along, to restore on another one:
        self.media_signaling: dict[str, str] = {}  # MSP channel -> label granted
        self.bandwidth_profile: dict[str, Any] | None = None
        self.session_sdp: str | None = None  # the SFU's SDP of the last agreed session
        self.client_channels: dict[str, int] = {}  # its data channels: label -> stream id
        self.server_channels: dict[str, int] = {}  # the SFU's channels to it, likewise
        self.restoring: asyncio.TimerHandle | None = None
        """Armed while its peer waits on a new media worker for its ICE-restart offer."""
        self.client_revisions = rsp.RevisionFilter()
        self.state_revision = rsp.Revision()  # this participant's state as others see it
        self.published_revision = rsp.Revision()
        self.subscribed_revision = rsp.Revision()
        self.pc_id: str | None = None
        self.pc_revision = 0
        self.local_description: rsp.Description | None = None
        self.offer_pending = False
        self.renegotiate_again = False
        self.gone = False
        # Until 'connected' is sent the client takes no other message; 'connected'
        # carries the whole room as it is then, so nothing earlier is missed.
        self.welcomed = False
        self.lock = asyncio.Lock()
        self._reconnect_timer: asyncio.TimerHandle | None = None

    @property
    def sid(self) -> str:
        return self.record.sid

    @property
    def identity(self) -> str:
        return self.record.identity

    def send(self, body: dict[str, Any]) -> None:
        if self.connection is not None and not self.gone and self.welcomed:
            self.connection.send(body)

    def welcome(self, connected: dict[str, Any]) -> None:
        """Send ``connected`` (or ``synced``): from now on every update goes out."""
        self.welcomed = True
        self.send(connected)

    # -- what others see -------------------------------------------------------

    def remote_state(self, state: str = "connected") -> rsp.RemoteParticipantState:
        return rsp.RemoteParticipantState(
            sid=self.sid,
            identity=self.identity,
            revision=self.state_revision.value,
            state=state,
            tracks=[
                rsp.RemoteTrackState(
                    sid=track.record.sid,
                    name=track.record.name,
                    kind=track.record.track_kind.value,
                    enabled=track.record.enabled,
                    priority=track.priority,
                )
                for track in self.tracks.values()
            ],
        )

    def published(self) -> rsp.Published:
        entries = [
            rsp.PublishedTrack(id=track.client_id, sid=track.record.sid, state="ready")
            for track in self.tracks.values()
            if track.ready
        ] + [
            rsp.PublishedTrack(
                id=client_id, state="failed", error={"code": error.code, "message": error.message}
            )
            for client_id, error in self.failed.items()
        ]
        return rsp.Published(revision=self.published_revision.next(), tracks=entries)

    def subscribed(self) -> rsp.Subscribed:
        return rsp.Subscribed(
            revision=self.subscribed_revision.next(),
            tracks=[
                rsp.SubscribedTrack(sid=sid, id=id_) for sid, id_ in self.subscriptions.items()
            ],
        )


class LiveRoom:
    """The connected participants of one in-progress room."""

    def __init__(self, record: Room) -> None:
        self.record = record
        self.participants: dict[str, LiveParticipant] = {}
        self.is_recording = False
        self.recording_revision = rsp.Revision(1)  # twilio-video's recording.js starts at 1
        # Go and Peer-to-Peer rooms: negotiation relayed between participants (peer_to_peer.py)
        self.mesh = Mesh() if record.type.is_peer_to_peer else None

    def recording(self) -> rsp.Recording:
        """Whether any track is being recorded, as twilio-video's ``room.isRecording``."""
        return rsp.Recording(self.is_recording, self.recording_revision.value)

    def others(self, participant: LiveParticipant) -> list[LiveParticipant]:
        return [p for p in self.participants.values() if p is not participant]

    def track_owner(self, track_sid: str) -> tuple[LiveParticipant, LiveTrack] | None:
        for participant in self.participants.values():
            for track in participant.tracks.values():
                if track.record.sid == track_sid:
                    return participant, track
        return None


class Conference:
    """Every live room of this server, joined through signaling, driving the media plane."""

    def __init__(
        self,
        registry: RoomRegistry,
        media_plane: MediaPlane,
        account_sid: str,
        api_keys: dict[str, str],
        settings: LiveSettings | None = None,
    ) -> None:
        self.registry = registry
        self.media: MediaPlane = GroupMediaPlane(media_plane, self._is_peer_to_peer_room)
        self.account_sid = account_sid
        self.api_keys = api_keys
        self.settings = settings or LiveSettings()
        self.rooms: dict[str, LiveRoom] = {}
        self.sessions: dict[str, LiveParticipant] = {}
        self._participants: dict[str, LiveParticipant] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.recordings: Recordings | None = None
        """Set by the server app: where RecordingRules are applied."""
        self.admission: list[Admission] = []
        """Checks a client passes before it joins (the classroom's lock): each raises to refuse."""
        self.track_hold: TrackHold | None = None
        """Whether a participant may not enable a track of a kind now (a moderator's mute)."""
        self.spotlight: Spotlight | None = None
        """Whether a participant is in the spotlight (the classroom's): the media plane
        then gets their video at high priority, so it keeps its layers and is the last
        switched off when bandwidth is short (docs/quality.md)."""
        registry.listeners.append(self._on_room_event)

    def _is_peer_to_peer_room(self, room_sid: str) -> bool:
        room = self.rooms.get(room_sid)
        record = room.record if room is not None else self.registry.store.get(Room, room_sid)
        return record is not None and record.type.is_peer_to_peer

    # -- background work -----------------------------------------------------

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background, logging (not losing) its failure."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("live room task failed", exc_info=task.exception())

    async def run_media_events(self) -> None:
        """Act on what the media plane reports, until cancelled."""
        async for event in self.media.events():
            try:
                await self._on_media_event(event)
            except Exception:
                log.exception("handling media event %r failed", event)

    async def close(self) -> None:
        if self.recordings is not None:
            await self.recordings.stop_all()
        for participant in list(self._participants.values()):
            await self.leave(participant)
        for task in list(self._tasks):
            task.cancel()

    # -- joining ---------------------------------------------------------------

    def _verify(self, token: str) -> TokenClaims:
        return verify_token(token, account_sid=self.account_sid, api_keys=self.api_keys)

    def _room_for(self, claims: TokenClaims, name: str | None) -> Room:
        """The room a client joins: the one ``name`` (or else the token's grant) names by
        SID or unique name, created ad hoc for a name no room in progress has."""
        granted = claims.room
        wanted = name if name is not None else granted
        if wanted is None:
            if not self.settings.ad_hoc_rooms:
                raise RoomError(
                    53106, "Give a room name: this server does not create rooms on connect"
                )
            return self.registry.create_room()
        room = self.registry.find_joinable(wanted)
        if granted is not None and granted != wanted:
            # Twilio apps create a room over REST and connect with its SID while the
            # token names it (or the other way round): the same room either way.
            # (a grant naming an ended room's SID is 53118: such a token joins nothing)
            granted_room = self.registry.find_joinable(granted)
            if room is None or granted_room is None or granted_room.sid != room.sid:
                raise AccessTokenError(
                    20106,
                    f"The Access Token grants room '{granted}', not '{wanted}'; mint a token "
                    "whose VideoGrant names this room",
                )
        if room is not None:
            return room
        if not self.settings.ad_hoc_rooms:
            raise RoomError(
                53106,
                f"Room '{wanted}' not found; create it over REST first "
                "(this server does not create rooms on connect)",
            )
        return self.registry.create_room(unique_name=wanted)

    async def join(self, connection: Connection, message: rsp.Connect) -> LiveParticipant:
        """Admit a client: token, room, identity, then the answer to its offer."""
        claims = self._verify(message.token)
        identity = claims.identity
        if len(identity) > MAX_IDENTITY_LENGTH:
            raise ParticipantError(
                53201, f"Identity is {len(identity)} characters; the limit is {MAX_IDENTITY_LENGTH}"
            )
        record_room = self._room_for(claims, message.name)
        for admit in self.admission:
            admit(record_room, identity)
        existing = self.rooms.get(record_room.sid)
        for other in list(existing.participants.values()) if existing else []:
            if other.identity == identity:
                await self.kick(other, ParticipantError(53205))
        # In a mesh every peer connection carries every track: nothing to leave out.
        rules = None if record_room.type.is_peer_to_peer else _subscribe_rules(message.subscribe)
        record = self.registry.connect_participant(record_room, identity, rules)
        room = self.rooms.setdefault(record_room.sid, LiveRoom(record_room))
        participant = LiveParticipant(room, record, connection)
        room.participants[record.sid] = participant
        self.sessions[participant.session] = participant
        self._participants[record.sid] = participant
        try:
            async with participant.lock:
                await self.media.add_peer(record.sid, record_room.sid, record_room.video_codecs)
                await self._apply_tracks(participant, message.participant, announce=False)
                answers = await self._apply_descriptions(participant, message.peer_connections)
                granted, needs_offer = await self._grant_media_signaling(participant, message)
                participant.media_signaling = granted
                # Before 'connected', so that room.isRecording is already true in a room
                # that records its participants from the start.
                await self.refresh_recordings(room)
                participant.welcome(
                    rsp.Connected(
                        session=participant.session,
                        sid=record_room.sid,
                        name=record_room.unique_name,
                        participant=rsp.ParticipantRef(record.sid, identity),
                        participants=[other.remote_state() for other in room.others(participant)],
                        peer_connections=answers,
                        published=participant.published(),
                        subscribed=participant.subscribed(),
                        recording=room.recording(),
                        options=rsp.RoomOptions(
                            session_timeout=int(self.settings.session_timeout),
                            media_region=record_room.media_region,
                            signaling_region=self.settings.signaling_region,
                        ),
                        media_signaling=granted or None,
                    ).to_dict()
                )
                if room.mesh is not None:
                    room.mesh.join(participant, message.peer_connections)
        except BaseException:
            await self.leave(participant)
            raise
        if needs_offer:
            self.spawn(self.renegotiate(participant))
        participant.state_revision.next()
        self._announce(participant)
        self._settle_data_tracks(participant)
        await self.refresh_subscriptions(participant)
        for other in room.others(participant):
            self.spawn(self.refresh_subscriptions(other))
        return participant

    async def _grant_media_signaling(
        self, participant: LiveParticipant, message: rsp.Connect
    ) -> tuple[dict[str, str], bool]:
        """Open the media-signaling channels the client asked for that this server
        speaks (``active_speaker`` and the quality channels of docs/quality.md); the
        others are left out, which twilio-video takes as "not available"
        (docs/signaling.md section 9). The client's ``bandwidth_profile`` goes to
        the media plane with them."""
        granted: dict[str, str] = {}
        needs_offer = False
        if participant.room.mesh is not None:
            return granted, needs_offer  # they all need the SFU's data channel
        if "active_speaker" in message.media_signaling:
            label = f"active_speaker-{uuid.uuid4().hex[:8]}"
            needs_offer = await self.media.grant_active_speaker(participant.sid, label)
            granted["active_speaker"] = label
        quality = {
            channel: f"{channel}-{uuid.uuid4().hex[:8]}"
            for channel in QUALITY_CHANNELS if channel in message.media_signaling
        }
        if quality:
            grant = await self.media.grant_media_signaling(participant.sid, quality)
            needs_offer = grant.needs_offer or needs_offer
            granted.update({name: quality[name] for name in grant.opened})
        if message.bandwidth_profile is not None:
            await self.media.set_bandwidth_profile(participant.sid, message.bandwidth_profile)
            participant.bandwidth_profile = message.bandwidth_profile
        return granted, needs_offer

    async def resume(self, connection: Connection, message: rsp.Sync) -> LiveParticipant:
        """A client reconnecting its signaling with ``sync``: same session, full state."""
        participant = self.sessions.get(message.session)
        if participant is None or participant.gone:
            raise SignalingError(
                53001, "This signaling session has ended; connect to the room again"
            )
        claims = self._verify(message.token)
        if claims.identity != participant.identity:
            raise AccessTokenError(20106, "The Access Token is for another identity")
        participant.connection = connection
        if participant._reconnect_timer is not None:
            participant._reconnect_timer.cancel()
            participant._reconnect_timer = None
        self.registry.set_reconnecting(participant.record, False)
        async with participant.lock:
            await self._apply_tracks(participant, message.participant)
            answers = await self._apply_descriptions(participant, message.peer_connections)
            current = answers or (
                [rsp.PeerConnectionState(participant.pc_id, participant.local_description)]
                if participant.pc_id and participant.local_description
                else []
            )
            if participant.room.mesh is not None:
                current = participant.room.mesh.states_for(participant.sid)
            participant.send(
                rsp.Synced(
                    participant=rsp.ParticipantRef(participant.sid, participant.identity),
                    participants=[o.remote_state() for o in participant.room.others(participant)],
                    peer_connections=current,
                    published=participant.published(),
                    subscribed=participant.subscribed(),
                    recording=participant.room.recording(),
                ).to_dict()
            )
        self.spawn(self.refresh_recordings(participant.room))
        return participant

    # -- updates from a client -----------------------------------------------

    async def update(self, participant: LiveParticipant, message: rsp.Update) -> None:
        """Tracks published, muted or removed; offers, answers and ICE."""
        if message.session != participant.session:
            raise SignalingError(53004, "update carries another session than 'connected' gave")
        async with participant.lock:
            changed = False
            if message.participant is not None:
                changed = await self._apply_tracks(participant, message.participant)
            if message.bandwidth_profile is not None:
                await self.media.set_bandwidth_profile(participant.sid, message.bandwidth_profile)
                participant.bandwidth_profile = message.bandwidth_profile
            answers = await self._apply_descriptions(participant, message.peer_connections or [])
            if answers:
                participant.send(rsp.ServerUpdate(peer_connections=answers).to_dict())
        if changed:
            for other in participant.room.others(participant):
                self.spawn(self.refresh_subscriptions(other))
            self.spawn(self.refresh_recordings(participant.room))
            self._settle_data_tracks(participant)

    def _settle_data_tracks(self, participant: LiveParticipant) -> None:
        """Make ready each data track whose channel the SFU holds (see LiveTrack)."""
        for track in participant.tracks.values():
            if not track.ready and not track.settling and track.client_id in (
                participant.open_channels
            ):
                track.settling = True
                self.spawn(self._make_ready(participant, track))

    async def _make_ready(self, participant: LiveParticipant, track: LiveTrack) -> None:
        others = participant.room.others(participant)
        await asyncio.gather(*(self.refresh_subscriptions(other) for other in others))
        async with participant.lock:
            if participant.tracks.get(track.client_id) is not track:
                return  # unpublished meanwhile
            track.ready = True
            participant.send(rsp.ServerUpdate(published=participant.published()).to_dict())

    async def _apply_tracks(
        self, participant: LiveParticipant, state: rsp.LocalParticipantState, announce: bool = True
    ) -> bool:
        """Publish, unpublish, enable and disable to match the client's track list."""
        if not participant.client_revisions.accept("participant", state.revision):
            return False
        room = participant.room.record
        wanted = {track.id: track for track in state.tracks}
        changed = False
        for client_id in list(participant.tracks):
            if client_id not in wanted:
                live = participant.tracks.pop(client_id)
                self.registry.unpublish_track(room, participant.record, live.record)
                await self.media.unpublish(participant.sid, live.record.sid)
                changed = True
        for client_id, track in wanted.items():
            live_track = participant.tracks.get(client_id)
            if live_track is None:
                if client_id in participant.failed:
                    continue
                try:
                    participant.tracks[client_id] = await self._publish(participant, track)
                    changed = True
                except VideoError as error:
                    participant.failed[client_id] = error
            elif live_track.record.enabled != track.enabled:
                if track.enabled and self._held(participant, track.kind):
                    continue  # a moderator holds it off: others keep seeing it disabled
                self.registry.set_track_enabled(
                    room, participant.record, live_track.record, track.enabled
                )
                await self.media.set_enabled(participant.sid, live_track.record.sid, track.enabled)
                changed = True
            if live_track is not None and live_track.priority != track.priority:
                # LocalTrackPublication.setPriority: the layers subscribers get follow it.
                live_track.priority = track.priority
                await self.media.set_track_priority(
                    participant.sid, live_track.record.sid,
                    self._media_priority(participant, live_track))
                changed = True
        if changed or participant.failed:
            if announce:
                participant.send(rsp.ServerUpdate(published=participant.published()).to_dict())
            participant.state_revision.next()
            if announce:
                self._announce(participant)
        return changed

    async def _publish(self, participant: LiveParticipant, track: rsp.LocalTrackState) -> LiveTrack:
        room = participant.room.record
        if len(track.name) > MAX_TRACK_NAME_LENGTH:
            raise VideoError(53302, f"Track name is longer than {MAX_TRACK_NAME_LENGTH} characters")
        if any(t.record.name == track.name for t in participant.tracks.values()):
            raise VideoError(53304, f"Track name '{track.name}' is already published")
        if room.audio_only and track.kind == "video":
            raise VideoError(53125, "This room is audio-only: video tracks are refused")
        most = self.settings.max_tracks_per_participant
        if len(participant.tracks) >= most:
            raise VideoError(
                53203, f"A participant publishes at most {most} tracks at once "
                "(VideoApp.max_tracks_per_participant); unpublish one first")
        published = sum(len(p.tracks) for p in participant.room.participants.values())
        if published >= room.max_concurrent_published_tracks:
            raise VideoError(
                53203, f"Room {room.sid} has its {room.max_concurrent_published_tracks} "
                "tracks published (MaxConcurrentPublishedTracks)")
        record = self.registry.publish_track(
            room, participant.record, track.name, TrackKind(track.kind), track.enabled
        )
        await self.media.bind_publication(participant.sid, track.id, record.sid, track.kind)  # type: ignore[arg-type]
        if track.enabled and self._held(participant, track.kind):
            # A moderator holds it off (the classroom's mute on join): disabled at once.
            self.registry.set_track_enabled(room, participant.record, record, False)
        if not record.enabled:
            await self.media.set_enabled(participant.sid, record.sid, False)
        # In a mesh the data channel goes to each subscriber directly: nothing to wait for.
        ready = track.kind != "data" or participant.room.mesh is not None
        live_track = LiveTrack(track.id, record, track.priority, ready=ready)
        priority = self._media_priority(participant, live_track)
        if priority != "standard":
            await self.media.set_track_priority(participant.sid, record.sid, priority)
        return live_track

    def _media_priority(self, participant: LiveParticipant, track: LiveTrack) -> str:
        """The priority the media plane gets for ``track``: its publisher's, or high
        for the video of a participant in the spotlight."""
        spotlight = self.spotlight
        if (track.record.track_kind is TrackKind.VIDEO and spotlight is not None
                and spotlight(participant.room.record, participant.identity)):
            return "high"
        return track.priority

    async def refresh_priorities(self, participant: LiveParticipant) -> None:
        """Tell the media plane the priorities of ``participant``'s tracks again (the
        spotlight moved to or from them)."""
        async with participant.lock:
            for track in participant.tracks.values():
                if track.record.track_kind is TrackKind.VIDEO:
                    await self.media.set_track_priority(
                        participant.sid, track.record.sid, self._media_priority(participant, track))

    def _held(self, participant: LiveParticipant, kind: str) -> bool:
        hold = self.track_hold
        return hold is not None and hold(participant.room.record, participant.identity, kind)

    async def set_track_enabled(
        self, participant: LiveParticipant, kind: str, enabled: bool
    ) -> list[str]:
        """Enable or disable every track of ``kind`` the participant publishes, from the
        server's side (a moderator's mute): the media plane stops forwarding at once and
        everyone sees the track disabled. The SIDs of the tracks changed."""
        changed = []
        async with participant.lock:
            for track in participant.tracks.values():
                record = track.record
                if record.track_kind.value != kind or record.enabled == enabled:
                    continue
                await self.media.set_enabled(participant.sid, record.sid, enabled)
                self.registry.set_track_enabled(
                    participant.room.record, participant.record, record, enabled
                )
                changed.append(record.sid)
            if changed:
                participant.state_revision.next()
                self._announce(participant)
        return changed

    async def _apply_descriptions(
        self, participant: LiveParticipant, states: list[rsp.PeerConnectionState]
    ) -> list[rsp.PeerConnectionState]:
        """Answer offers, apply answers, add ICE candidates; the answers to send."""
        mesh = participant.room.mesh
        if mesh is not None:  # the other end of each pair answers
            for state in states:
                mesh.relay(participant, state)
            return []
        answers = []
        for state in states:
            if participant.pc_id is None:
                participant.pc_id = state.id
            elif state.id != participant.pc_id:
                raise SignalingError(53004, "Only one peer connection per participant is supported")
            description = state.description
            if description is not None:
                answer = await self._apply_description(participant, description)
                if answer is not None:
                    answers.append(rsp.PeerConnectionState(state.id, answer))
            if state.ice is not None:
                await self._apply_ice(participant, state.ice)
        return answers

    async def _apply_description(
        self, participant: LiveParticipant, description: rsp.Description
    ) -> rsp.Description | None:
        if description.revision <= participant.pc_revision and description.type == "offer":
            return None  # already answered (e.g. repeated in a sync)
        if description.type == "offer":
            if participant.offer_pending:
                # Glare: the client rolls back and answers our offer, then offers again.
                return None
            assert description.sdp is not None
            sdp = await self.media.apply_offer(participant.sid, description.sdp)
            participant.pc_revision = description.revision
            participant.local_description = rsp.Description("answer", description.revision, sdp)
            participant.session_sdp = sdp
            if participant.restoring is not None:
                # Its ICE restart reached the new media worker: record its tracks again.
                participant.restoring.cancel()
                participant.restoring = None
                self.spawn(self.refresh_recordings(participant.room))
            return participant.local_description
        if description.type == "answer":
            if not participant.offer_pending or description.revision != participant.pc_revision:
                return None
            assert description.sdp is not None
            await self.media.apply_answer(participant.sid, description.sdp)
            participant.offer_pending = False
            if participant.local_description is not None:
                participant.session_sdp = participant.local_description.sdp
            if participant.renegotiate_again:
                participant.renegotiate_again = False
                self.spawn(self.renegotiate(participant))
            return None
        if description.type == "close":
            raise SignalingError(53004, "Closing the peer connection is done by disconnecting")
        return None

    async def _apply_ice(self, participant: LiveParticipant, ice: rsp.IceState) -> None:
        key = ("ice", ice.ufrag)
        if not participant.client_revisions.accept(key, ice.revision):
            return
        seen = participant.client_revisions.latest(("ice-count", ice.ufrag)) or 0
        for candidate in ice.candidates[seen:]:
            await self.media.add_ice_candidate(
                participant.sid, candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
            )
        participant.client_revisions.accept(("ice-count", ice.ufrag), len(ice.candidates))

    # -- subscriptions and renegotiation ---------------------------------------

    async def refresh_subscriptions(self, participant: LiveParticipant) -> None:
        """Make what ``participant`` receives match its SubscribeRules."""
        try:
            await self._refresh_subscriptions(participant)
        except ParticipantError as error:
            # It left while this ran, and the media plane dropped its peer first.
            if error.code != 53204 or not participant.gone:
                raise

    async def _refresh_subscriptions(self, participant: LiveParticipant) -> None:
        if participant.gone:
            return
        # From the live room, with one store read (the rules): the registry's
        # selected_tracks reads every participant's tracks from the store, and this runs
        # for everyone each time anyone joins (50 joins: 2,500 times).
        rules = self.registry.subscribe_rules(participant.record)
        wanted: dict[str, str] = {}
        for other in participant.room.others(participant):
            for track in other.tracks.values():
                record = track.record
                if rules.selects(TrackFacts(record.sid, record.name, record.track_kind.value,
                                            other.sid, other.identity)):
                    wanted[record.sid] = track.client_id
        needs_offer = False
        changed = False
        async with participant.lock:
            for track_sid in [sid for sid in participant.subscriptions if sid not in wanted]:
                del participant.subscriptions[track_sid]
                needs_offer |= await self.media.unsubscribe(participant.sid, track_sid)
                self._record_subscription(participant, track_sid, False)
                changed = True
            for track_sid, client_id in wanted.items():
                if track_sid in participant.subscriptions:
                    continue
                try:
                    needs_offer |= await self.media.subscribe(participant.sid, track_sid)
                except TrackError as error:
                    # Unpublished, or its publisher left, while this waited for the
                    # lock: that refreshes everyone's subscriptions again by itself.
                    if error.code != 53300 or self._published(participant.room, track_sid):
                        raise
                    log.info("subscriptions of %s: %s was unpublished meanwhile",
                             participant.identity, track_sid)
                    continue
                participant.subscriptions[track_sid] = client_id
                self._record_subscription(participant, track_sid, True)
                changed = True
            if changed:
                participant.send(rsp.ServerUpdate(subscribed=participant.subscribed()).to_dict())
        log.debug("subscriptions of %s: %s (offer needed: %s)", participant.identity,
                  sorted(participant.subscriptions), needs_offer)
        if needs_offer:
            await self.renegotiate(participant)

    @staticmethod
    def _published(room: LiveRoom, track_sid: str) -> bool:
        """Whether someone in ``room`` publishes ``track_sid`` now."""
        return any(track.record.sid == track_sid
                   for other in room.participants.values() for track in other.tracks.values())

    def _record_subscription(
        self, participant: LiveParticipant, track_sid: str, subscribed: bool
    ) -> None:
        track = self.registry.store.get(PublishedTrack, track_sid)
        if track is not None:
            self.registry.record_subscription(participant.record, track, subscribed)

    async def refresh_recordings(self, room: LiveRoom) -> None:
        """Record the tracks of ``room`` that its RecordingRules select, and no others."""
        if self.recordings is None:
            return

        def selected() -> Selection:
            if self.rooms.get(room.record.sid) is not room:  # ended, or everyone left
                return {}
            rules = self.registry.recording_rules(room.record)
            wanted: Selection = {}
            for participant in room.participants.values():
                for track in participant.tracks.values():
                    record = track.record
                    facts = TrackFacts(record.sid, record.name, record.track_kind.value,
                                       participant.sid, participant.identity)
                    if record.track_kind is not TrackKind.DATA and rules.selects(facts):
                        wanted[record.sid] = (participant.record, record)
            return wanted

        await self.recordings.apply(room.record, selected)
        is_recording = self.recordings.is_recording(room.record.sid)
        if is_recording != room.is_recording:
            room.is_recording = is_recording
            room.recording_revision.next()
            body = rsp.ServerUpdate(recording=room.recording()).to_dict()
            for participant in room.participants.values():
                participant.send(body)

    async def renegotiate(self, participant: LiveParticipant) -> None:
        """Offer the participant a new description (after any offer it has not answered)."""
        async with participant.lock:
            if participant.gone or participant.pc_id is None:
                return
            if participant.restoring is not None:
                return  # its restored peer offers once the client's ICE restart came
            if participant.offer_pending:
                participant.renegotiate_again = True
                return
            sdp = await self.media.create_offer(participant.sid)
            participant.pc_revision += 1
            participant.offer_pending = True
            participant.local_description = rsp.Description("offer", participant.pc_revision, sdp)
            participant.send(
                rsp.ServerUpdate(
                    peer_connections=[
                        rsp.PeerConnectionState(participant.pc_id, participant.local_description)
                    ]
                ).to_dict()
            )

    def _announce(self, participant: LiveParticipant, state: str = "connected") -> None:
        """Tell everyone else in the room this participant's complete state."""
        body = rsp.ServerUpdate(participants=[participant.remote_state(state)]).to_dict()
        for other in participant.room.others(participant):
            other.send(body)

    # -- leaving ---------------------------------------------------------------

    def connection_lost(self, participant: LiveParticipant) -> None:
        """The signaling socket closed without ``disconnect``: wait for a ``sync``."""
        if participant.gone:
            return
        participant.connection = None
        self.registry.set_reconnecting(participant.record, True)
        loop = asyncio.get_running_loop()
        participant._reconnect_timer = loop.call_later(
            self.settings.session_timeout, lambda: self.spawn(self.leave(participant))
        )

    async def leave(self, participant: LiveParticipant) -> None:
        """The participant is gone: records, media and everyone else are told."""
        if participant.gone:
            return
        participant.gone = True
        if participant._reconnect_timer is not None:
            participant._reconnect_timer.cancel()
        if participant.restoring is not None:
            participant.restoring.cancel()
        room = participant.room
        room.participants.pop(participant.sid, None)
        self.sessions.pop(participant.session, None)
        self._participants.pop(participant.sid, None)
        record = self.registry.store.get(Participant, participant.sid)
        if record is not None and record.is_connected:
            self.registry.disconnect_participant(record)
        with contextlib.suppress(VideoError):
            await self.media.remove_peer(participant.sid)
        if room.mesh is not None:
            room.mesh.leave(participant.sid)
        participant.state_revision.next()
        self._announce(participant, "disconnected")
        for other in room.others(participant):
            self.spawn(self.refresh_subscriptions(other))
        self.spawn(self.refresh_recordings(room))
        if not room.participants:
            self.rooms.pop(room.record.sid, None)

    async def kick(
        self, participant: LiveParticipant, error: VideoError | None, completed: bool = False
    ) -> None:
        """Remove a participant from the server's side, telling its client why."""
        if completed:
            participant.send(rsp.Disconnected(status="completed").to_dict())
        elif error is not None:
            participant.send(rsp.Error(error.code, error.message).to_dict())
        else:
            participant.send(rsp.Disconnected(status="disconnected").to_dict())
        connection = participant.connection
        await self.leave(participant)
        if connection is not None:
            connection.close()

    # -- what happens elsewhere ----------------------------------------------

    def _on_room_event(self, event: RoomEvent) -> None:
        """REST changes: completed rooms, removed participants, new subscribe rules."""
        if event.name == "room-ended":
            room = self.rooms.pop(event.room.sid, None)
            if room is not None:
                self.spawn(self.refresh_recordings(room))
                for participant in list(room.participants.values()):
                    self.spawn(self.kick(participant, None, completed=True))
                self.spawn(self._close_room(event.room.sid))
        elif (
            event.name == "participant-disconnected"
            and event.participant is not None
            and event.room.status is RoomStatus.IN_PROGRESS  # else room-ended says 53118
        ):
            live = self._participants.get(event.participant.sid)
            if live is not None and not live.gone:
                self.spawn(self.kick(live, None))
        elif event.name == "subscribe-rules-updated" and event.participant is not None:
            live = self._participants.get(event.participant.sid)
            if live is not None:
                self.spawn(self.refresh_subscriptions(live))
        elif event.name == "recording-rules-updated":
            room = self.rooms.get(event.room.sid)
            if room is not None:
                self.spawn(self.refresh_recordings(room))

    async def _close_room(self, room_sid: str) -> None:
        with contextlib.suppress(VideoError):
            await self.media.close_room(room_sid)

    async def _on_media_event(self, event: media.Event) -> None:
        handlers: dict[type[media.Event], Callable[[Any], Awaitable[None]]] = {
            media.RenegotiationNeeded: self._on_renegotiation_needed,
            media.ConnectionStateChanged: self._on_connection_state,
            media.WorkerExited: self._on_worker_exited,
            media.RecordingStarted: self._on_recording_started,
            media.RecordingEnded: self._on_recording_ended,
            media.DataChannelOpened: self._on_data_channel_opened,
        }
        handler = handlers.get(type(event))
        if handler is not None:
            await handler(event)

    async def _on_renegotiation_needed(self, event: media.RenegotiationNeeded) -> None:
        log.debug("media plane asks to renegotiate with %s", event.participant_sid)
        participant = self._participants.get(event.participant_sid)
        if participant is not None:
            await self.renegotiate(participant)

    async def _on_connection_state(self, event: media.ConnectionStateChanged) -> None:
        log.debug("peer %s is %s", event.participant_sid, event.state)
        participant = self._participants.get(event.participant_sid)
        if participant is not None and event.state == media.PeerState.FAILED:
            await self.kick(participant, VideoError(event.error_code or 53405))

    async def _on_data_channel_opened(self, event: media.DataChannelOpened) -> None:
        participant = self._participants.get(event.participant_sid)
        if participant is None:
            return
        if event.local:
            if event.stream_id is not None:
                participant.server_channels[event.label] = event.stream_id
            return
        if event.stream_id is not None:
            participant.client_channels[event.label] = event.stream_id
        participant.open_channels.add(event.label)
        self._settle_data_tracks(participant)

    async def _on_recording_started(self, event: media.RecordingStarted) -> None:
        if self.recordings is not None:
            self.recordings.started(event)

    async def _on_recording_ended(self, event: media.RecordingEnded) -> None:
        if self.recordings is not None:
            self.recordings.ended(event)

    async def _on_worker_exited(self, event: media.WorkerExited) -> None:
        """A media worker died under its rooms: their recordings end with what their
        files hold, and their participants' peers are restored on a live worker,
        where each participant's ICE-restart offer (twilio-video sends one when its
        media stops) takes its session up; one whose offer does not come within the
        session timeout is removed with 53405 (docs/reliability.md)."""
        if self.recordings is not None:
            self.recordings.rooms_lost(event.room_sids)
        lost = [p for sid in event.participant_sids
                if (p := self._participants.get(sid)) is not None and not p.gone]
        if lost:
            self.spawn(self._restore(lost))

    async def _restore(self, lost: list[LiveParticipant]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.session_timeout
        for participant in lost:
            if participant.restoring is not None:
                participant.restoring.cancel()
            participant.restoring = loop.call_later(
                self.settings.session_timeout, self._restore_timed_out, participant)
        while not any(w.alive for w in self.media.worker_status()):
            if loop.time() > deadline:
                break
            await asyncio.sleep(RESTORE_POLL)  # the worker plane starts a fresh one
        # Every peer and publication first, then the subscriptions to them.
        for participant in lost:
            try:
                async with participant.lock:
                    await self._restore_peer(participant)
            except VideoError as error:
                log.warning("cannot restore %s on a live media worker: %s",
                            participant.identity, error)
                await self.kick(participant, VideoError(
                    53405, "The media server of this room stopped"))
        for participant in lost:
            if participant.gone:
                continue
            async with participant.lock:
                for track_sid in list(participant.subscriptions):
                    with contextlib.suppress(VideoError):
                        await self.media.subscribe(participant.sid, track_sid)

    def _restore_timed_out(self, participant: LiveParticipant) -> None:
        participant.restoring = None
        self.spawn(self.kick(participant, VideoError(
            53405, "The media server of this room stopped and the participant's media did "
            "not come back (no ICE restart within the session timeout)")))

    async def _restore_peer(self, participant: LiveParticipant) -> None:
        """The participant's peer, publications and media signaling on a live worker."""
        room = participant.room.record
        await self.media.restore_peer(media.RestorePeer(
            participant.sid, room.sid, list(room.video_codecs),
            session_sdp=participant.session_sdp,
            client_channels=dict(participant.client_channels),
            server_channels=dict(participant.server_channels)))
        participant.offer_pending = False  # an offer out to the dead worker is void
        participant.renegotiate_again = False
        for client_id, track in participant.tracks.items():
            record = track.record
            await self.media.bind_publication(
                participant.sid, client_id, record.sid, record.track_kind.value)
            if not record.enabled:
                await self.media.set_enabled(participant.sid, record.sid, False)
            if track.priority != "standard":
                await self.media.set_track_priority(participant.sid, record.sid, track.priority)
        grants = dict(participant.media_signaling)
        label = grants.pop("active_speaker", None)
        if label is not None:
            await self.media.grant_active_speaker(participant.sid, label)
        if grants:
            await self.media.grant_media_signaling(participant.sid, grants)
        if participant.bandwidth_profile is not None:
            await self.media.set_bandwidth_profile(participant.sid, participant.bandwidth_profile)
