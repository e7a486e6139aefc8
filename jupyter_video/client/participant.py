"""Participants: you (:class:`LocalParticipant`) and the others (:class:`RemoteParticipant`)."""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING

from ..signaling import rsp
from .publication import LocalTrackPublication, RemoteTrackPublication
from .track import LocalDataTrack, LocalTrack

if TYPE_CHECKING:
    from .room import Room


class ParticipantState(str, enum.Enum):
    """A remote participant's connection, as the server reports it."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


class LocalParticipant:
    """You in the room: your identity and your published tracks (``tracks``: sid -> publication).

    Every change to the tracks (publish, unpublish, enable, disable) is a new
    ``revision`` of the state sent in ``participant`` (localparticipant.js).
    """

    def __init__(self, room: Room) -> None:
        self._room = room
        self.sid: str | None = None
        self.identity: str | None = None
        self.tracks: dict[str, LocalTrackPublication] = {}
        self.revision = 1
        self.network_quality_level: int | None = None
        """0 (broken) to 5 (excellent), with ``connect(network_quality=True)``."""
        self._announced: dict[str, LocalTrack] = {}  # track id -> track, in the state
        self._pending: dict[str, asyncio.Future[LocalTrackPublication]] = {}

    async def publish_track(self, track: LocalTrack) -> LocalTrackPublication:
        """Publish ``track``; returns once the server gave it its SID (``MT...``).

        Raises the ``TrackError`` the server answers with (e.g. 53304 duplicate name).
        """
        return await self._room._publish(track)

    async def unpublish_track(self, track: LocalTrack) -> LocalTrackPublication | None:
        """Stop publishing ``track``; returns its publication if it had one."""
        return await self._room._unpublish(track)

    # ------------------------------------------------------------- state for the server

    def _announce(self, track: LocalTrack) -> asyncio.Future[LocalTrackPublication]:
        if track.id in self._announced:
            raise ValueError(f"{track!r} is already published")
        self._announced[track.id] = track
        future: asyncio.Future[LocalTrackPublication] = (
            asyncio.get_running_loop().create_future())
        self._pending[track.id] = future
        track._enabled_listeners.append(self._room._local_track_changed)
        self.revision += 1
        return future

    def _withdraw(self, track: LocalTrack) -> LocalTrackPublication | None:
        self._announced.pop(track.id, None)
        future = self._pending.pop(track.id, None)
        if future is not None and not future.done():
            future.cancel()
        if self._room._local_track_changed in track._enabled_listeners:
            track._enabled_listeners.remove(self._room._local_track_changed)
        self.revision += 1
        for sid, publication in list(self.tracks.items()):
            if publication.track is track:
                return self.tracks.pop(sid)
        return None

    def _state(self) -> rsp.LocalParticipantState:
        return rsp.LocalParticipantState(
            revision=self.revision,
            tracks=[rsp.LocalTrackState(id=t.id, kind=t.kind, name=t.name,
                                        enabled=t.is_enabled)
                    for t in self._announced.values()])

    def _apply_published(self, published: rsp.Published) -> None:
        from ..errors import VideoError

        for entry in published.tracks:
            track = self._announced.get(entry.id)
            if track is None:
                continue
            future = self._pending.get(entry.id)
            if entry.state == "ready" and entry.sid:
                if not any(p.track is track for p in self.tracks.values()):
                    self.tracks[entry.sid] = LocalTrackPublication(track, entry.sid)
                if future is not None:
                    del self._pending[entry.id]
                    if not future.done():
                        future.set_result(self.tracks[entry.sid])
            elif entry.state == "failed":
                error = entry.error or {}
                code = error.get("code")
                failure = VideoError.from_code(code if isinstance(code, int) else 53300,
                                               error.get("message"))
                self._announced.pop(entry.id, None)
                if future is not None:
                    del self._pending[entry.id]
                    if not future.done():
                        future.set_exception(failure)

    def _fail_pending(self, error: BaseException) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: nobody may be waiting
        self._pending.clear()

    @property
    def _data_tracks(self) -> list[LocalDataTrack]:
        return [t for t in self._announced.values() if isinstance(t, LocalDataTrack)]

    def __repr__(self) -> str:
        return f"<LocalParticipant {self.sid} {self.identity!r} tracks={len(self.tracks)}>"


class RemoteParticipant:
    """Someone else in the room; ``tracks`` maps track SIDs to publications."""

    def __init__(self, sid: str, identity: str) -> None:
        self.sid = sid
        self.identity = identity
        self.state = ParticipantState.CONNECTED
        self.tracks: dict[str, RemoteTrackPublication] = {}
        self.network_quality_level: int | None = None
        """0 (broken) to 5 (excellent), when the room was joined with ``network_quality``."""

    def __repr__(self) -> str:
        return (f"<RemoteParticipant {self.sid} {self.identity!r} {self.state.value} "
                f"tracks={len(self.tracks)}>")
