"""Recordings: the control plane's side of per-track recording.

The room's RecordingRules decide which tracks are recorded
(https://www.twilio.com/docs/video/api/recording-rules); ``Conference``
tells :meth:`Recordings.apply` which tracks that is whenever it may have
changed, and this module starts and stops the media plane's recorders to
match, keeps each Recording record, and sends Twilio's ``recording-started``,
``recording-completed`` and ``recording-failed`` status callbacks
(https://www.twilio.com/docs/video/api/status-callbacks#recordings-callbacks).

A recording that a crash left ``processing`` is finished from its file when
the server starts again (:meth:`Recordings.recover`): the media worker writes
the file incrementally, so what it holds up to the crash is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import av

from .. import sids
from ..errors import VideoError, not_found
from ..model import Participant, PublishedTrack, Recording, RecordingStatus, Room, utcnow
from ..model.recording import CONTAINERS
from ..sfu.interface import MediaPlane, RecordingEnded, RecordingStarted, RecordingSummary
from ..store import Query
from .callbacks import StatusCallbacks
from .registry import Page, RoomRegistry

log = logging.getLogger(__name__)

Selection = dict[str, tuple[Participant, PublishedTrack]]
"""Tracks to record: track SID -> its publisher and its record."""

MEDIA_TYPES = {"mkv": "video/x-matroska", "mka": "audio/x-matroska"}


@dataclass(frozen=True)
class RecordingFilter:
    """Which recordings a listing returns (Twilio's list parameters)."""

    status: RecordingStatus | None = None
    source_sid: str | None = None
    grouping_sids: tuple[str, ...] = ()
    media_type: str | None = None
    room_sid: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def query(self, offset: int = 0, limit: int | None = None) -> Query:
        equal: dict[str, Any] = {}
        if self.status is not None:
            equal["status"] = self.status.value
        if self.source_sid is not None:
            equal["source_sid"] = self.source_sid
        if self.media_type is not None:
            equal["type"] = self.media_type
        if self.room_sid is not None:
            equal["room_sid"] = self.room_sid
        for sid in self.grouping_sids:  # a grouping SID is the room's or the participant's
            equal["participant_sid" if sid.startswith(sids.PARTICIPANT) else "room_sid"] = sid
        return Query(equal, self.created_after, self.created_before, offset, limit)


class Recordings:
    """Starts and stops the media plane's recorders and keeps the Recording records."""

    def __init__(
        self,
        registry: RoomRegistry,
        media: MediaPlane,
        directory: Path,
        status_callbacks: StatusCallbacks | None = None,
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.media = media
        self.directory = directory
        self.status_callbacks = status_callbacks
        self.api_root = "/video/v1"
        """Absolute ``.../video/v1`` URL that callbacks name recordings by (set at start)."""
        self._running: dict[str, dict[str, str]] = defaultdict(dict)  # room -> track -> RT
        self._media_gone: dict[str, set[str]] = defaultdict(set)  # room -> tracks
        """Tracks whose recording the media plane ended (their media went away): not
        started again by an apply that still counts them as published (a second
        recording of a track whose publisher just left, failed with no media)."""
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._users: dict[str, int] = defaultdict(int)  # room -> applies holding or awaiting

    # -- which tracks are recorded -------------------------------------------

    async def apply(self, room: Room, selected: Callable[[], Selection]) -> None:
        """Record exactly the tracks of ``room`` that ``selected()`` names (asked under the
        room's lock, so that a later change is never undone by an earlier one)."""
        self._users[room.sid] += 1
        try:
            async with self._locks[room.sid]:
                await self._apply(room, selected())
        finally:
            self._users[room.sid] -= 1
            if not self._users[room.sid]:  # nobody waits: forget the room once idle
                del self._users[room.sid]
                if not self._running.get(room.sid):
                    self._running.pop(room.sid, None)
                    self._locks.pop(room.sid, None)

    async def _apply(self, room: Room, wanted: Selection) -> None:
        running = self._running[room.sid]
        for track_sid in [sid for sid in running if sid not in wanted]:
            await self._stop(running.pop(track_sid))
        gone = self._media_gone.pop(room.sid, set()) & wanted.keys()
        if gone:
            self._media_gone[room.sid] = gone  # until the records unpublish them
        for track_sid, (participant, track) in wanted.items():
            # Read at each step: ``wanted`` was chosen before the awaits below, during
            # which a participant may leave and the media plane end its recordings.
            if track_sid not in running and track_sid not in self._media_gone.get(room.sid, ()):
                recording = await self._start(room, participant, track)
                if recording is not None:
                    running[track_sid] = recording.sid

    def is_recording(self, room_sid: str) -> bool:
        return bool(self._running.get(room_sid))

    async def stop_all(self) -> None:
        """Finish every running recording (the server is stopping)."""
        for room_sid in list(self._running):
            for recording_sid in self._running.pop(room_sid).values():
                await self._stop(recording_sid)

    async def _start(
        self, room: Room, participant: Participant, track: PublishedTrack
    ) -> Recording | None:
        sid = sids.new_sid(sids.RECORDING)
        kind = track.track_kind.value
        recording = Recording(
            sid=sid,
            account_sid=room.account_sid,
            room_sid=room.sid,
            participant_sid=participant.sid,
            source_sid=track.sid,
            track_name=track.name,
            type=kind,
            path=str(self.directory / room.sid / f"{sid}.{CONTAINERS[kind]}"),
        )
        self.store.save(recording)
        try:
            await self.media.start_recording(participant.sid, track.sid, sid, recording.path)
        except VideoError as error:
            log.warning("recording %s of track %s did not start: %s", sid, track.sid, error)
            self._fail(recording, "start")
            return None
        return recording

    async def _stop(self, recording_sid: str) -> None:
        try:
            summary = await self.media.stop_recording(recording_sid)
        except VideoError as error:  # its worker is gone: the file says what was kept
            log.warning("stopping recording %s: %s", recording_sid, error)
            summary = None
            recording = self.store.get(Recording, recording_sid)
            if recording is not None and recording.is_processing:
                self.finish_from_file(recording)
        if summary is not None:
            self.finish(summary)

    # -- what the media plane reports ----------------------------------------

    def started(self, event: RecordingStarted) -> None:
        """The first frame is written: codec and offset are known; ``recording-started``."""
        recording = self.store.get(Recording, event.recording_sid)
        if recording is None or not recording.is_processing:
            return
        recording.codec = event.codec
        recording.offset = round(event.started_at * 1000)
        recording.date_updated = utcnow()
        self.store.save(recording)
        self._callback(recording, "recording-started")

    def ended(self, event: RecordingEnded) -> None:
        """A recording ended in the media plane (its track or its participant went away)."""
        for room_sid, running in self._running.items():
            for track_sid, recording_sid in list(running.items()):
                if recording_sid == event.recording_sid:
                    del running[track_sid]
                    # Its participant or track is leaving: an apply that runs before the
                    # records say so must not record it again (a file with no media).
                    self._media_gone[room_sid].add(track_sid)
        self.finish(event)

    def finish(self, summary: RecordingSummary) -> None:
        """Complete (or fail) a recording from what its recorder says it wrote."""
        recording = self.store.get(Recording, summary.recording_sid)
        if recording is None or not recording.is_processing:
            return  # already finished: the two ways of hearing of an end can cross
        recording.codec = recording.codec or summary.codec
        if summary.error is not None:
            log.warning("recording %s failed: %s", recording.sid, summary.error)
            self._fail(recording, "recording")
            return
        if recording.offset is None and summary.started_at is not None:
            recording.offset = round(summary.started_at * 1000)
        recording.complete(summary.duration, summary.size)
        self.store.save(recording)
        self._callback(recording, "recording-completed")

    def finish_from_file(self, recording: Recording) -> None:
        """Complete a recording that its recorder never finished, from what its file holds."""
        probed = probe(Path(recording.path))
        if probed is None:
            self._fail(recording, "recording")
            return
        codec, duration, size = probed
        recording.codec = recording.codec or codec
        recording.complete(duration, size)
        self.store.save(recording)
        self._callback(recording, "recording-completed")

    def rooms_lost(self, room_sids: list[str]) -> None:
        """Their media worker exited: finish their recordings from the files."""
        for room_sid in room_sids:
            self._running.pop(room_sid, None)
            for recording in self.store.list(
                Recording,
                Query({"room_sid": room_sid, "status": RecordingStatus.PROCESSING.value}),
            ):
                self.finish_from_file(recording)

    def recover(self) -> None:
        """After a restart: no recording is left ``processing``."""
        for recording in self.store.list(
            Recording, Query({"status": RecordingStatus.PROCESSING.value})
        ):
            self.finish_from_file(recording)

    def _fail(self, recording: Recording, operation: str) -> None:
        recording.fail(operation)
        self.store.save(recording)
        self._callback(recording, "recording-failed")

    # -- the REST side --------------------------------------------------------

    def get(self, sid: str, room_sid: str | None = None) -> Recording:
        recording = self.store.get(Recording, sid) if sids.is_sid(sid, sids.RECORDING) else None
        if recording is None or (room_sid is not None and recording.room_sid != room_sid):
            raise not_found(f"/Recordings/{sid}")
        return recording

    def list(self, where: RecordingFilter, offset: int, limit: int) -> Page:
        return Page(
            self.store.list(Recording, where.query(offset, limit)),
            self.store.count(Recording, where.query()),
        )

    def delete(self, recording: Recording) -> None:
        """Remove a finished recording's media; the record stays, ``deleted``."""
        if recording.is_processing:
            raise VideoError(
                53112,
                f"Recording {recording.sid} is still processing; delete it once it has completed",
            )
        recording.transition(RecordingStatus.DELETED)
        with contextlib.suppress(FileNotFoundError):
            Path(recording.path).unlink()
        self.store.save(recording)

    def url(self, recording: Recording) -> str:
        return f"{self.api_root}/Recordings/{recording.sid}"

    # -- status callbacks ------------------------------------------------------

    def _callback(self, recording: Recording, event: str) -> None:
        if self.status_callbacks is None:
            return
        room = self.store.get(Room, recording.room_sid)
        if room is None:
            return
        url = self.url(recording)
        params = {
            "RecordingSid": recording.sid,
            "SourceSid": recording.source_sid,
            "ParticipantSid": recording.participant_sid,
            "RecordingUri": url,
            "Container": recording.container_format,
            "TrackName": recording.track_name,
            "Type": recording.type,
        }
        if recording.codec is not None:
            params["Codec"] = recording.codec
        if recording.offset is not None:
            params["OffsetFromTwilioVideoEpoch"] = str(recording.offset)
        if event == "recording-completed":
            params["MediaUri"] = f"{url}/Media"
            params["Duration"] = str(recording.duration)
            params["Size"] = str(recording.size)
        if event == "recording-failed" and recording.failed_operation is not None:
            params["FailedOperation"] = recording.failed_operation
        self.status_callbacks.send(room, event, params)


def probe(path: Path) -> tuple[str, float, int] | None:
    """Codec, seconds and bytes of the media a Matroska file holds (demuxed, not decoded);
    None when it holds none."""
    try:
        size = path.stat().st_size
        with av.open(str(path)) as container:
            stream = container.streams[0]
            times = sorted(
                float(packet.pts * packet.time_base)
                for packet in container.demux(stream)
                if packet.pts is not None and packet.time_base is not None
            )
            codec = stream.codec_context.name if stream.codec_context else stream.type
    except (OSError, av.FFmpegError, IndexError) as error:
        log.warning("recording file %s cannot be read: %s", path, error)
        return None
    if not times:
        return None
    step = times[-1] - times[-2] if len(times) > 1 else 0.0  # the last frame lasts as long
    return codec, times[-1] - times[0] + step, size
