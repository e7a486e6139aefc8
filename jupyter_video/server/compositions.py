"""Compositions: the control plane's side of composing a room's recordings into one file.

A Composition is created over REST (or by a CompositionHook when a room ends),
kept in the store, and composed by the composer pool
(:mod:`jupyter_video.compositions`) once the room's recordings are finished. Its
status callbacks are Twilio's ``composition-enqueued``, ``-started``, ``-progress``
(``PercentageDone``, ``SecondsRemaining``), ``-available`` and ``-failed``
(https://www.twilio.com/docs/video/api/status-callbacks#compositions-callbacks),
sent to the composition's own ``StatusCallback`` and signed as the room's are.

A server that stops or dies mid-composition leaves it ``processing``; on the next
start :meth:`Compositions.recover` enqueues it again, or fails it once it has been
tried :data:`MAX_ATTEMPTS` times: never ``processing`` forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import sids
from ..compositions import ComposerPool, CompositionError, Job, TrackFile
from ..errors import VideoError, not_found
from ..model import Recording, RecordingStatus, Room, RoomStatus
from ..model.composition import (
    Composition,
    CompositionHook,
    CompositionSpec,
    CompositionStatus,
    StorageSettings,
)
from ..store import Query
from .callbacks import StatusCallbacks
from .registry import Page, RoomEvent, RoomRegistry

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""Times a composition is begun before a restart that finds it unfinished fails it."""
COMPOSITION_FAILED = 53626  # "Internal failure while processing media composition"
HOOK_FAILED = 53631  # "Failed to enqueue a room composition from a configured composition hook"
RECORDINGS_SETTLE = 30.0
"""Seconds a composition waits for its room's recordings to finish (they complete
just after the room ends) before composing what is finished."""
PROGRESS_STEP = 10  # percent between composition-progress callbacks


@dataclass(frozen=True)
class CompositionFilter:
    """Which compositions a listing returns (Twilio's list parameters)."""

    status: CompositionStatus | None = None
    room_sid: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def query(self, offset: int = 0, limit: int | None = None) -> Query:
        equal: dict[str, Any] = {}
        if self.status is not None:
            equal["status"] = self.status.value
        if self.room_sid is not None:
            equal["room_sid"] = self.room_sid
        return Query(equal, self.created_after, self.created_before, offset, limit)


class Compositions:
    """Creates compositions, runs them in the composer pool and keeps their records."""

    def __init__(
        self,
        registry: RoomRegistry,
        directory: Path,
        pool: ComposerPool,
        status_callbacks: StatusCallbacks | None = None,
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.directory = directory
        self.pool = pool
        self.status_callbacks = status_callbacks
        self.api_root = "/video/v1"
        """Absolute ``.../video/v1`` URL that callbacks name compositions by (set at start)."""
        self.recordings_settle = RECORDINGS_SETTLE
        self.progress: dict[str, tuple[int, int | None]] = {}
        """Percent done and seconds left of each composition being composed (not stored:
        it changes every half second)."""
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._waiting: list[str] = []  # enqueued before the event loop ran (recovered)
        self._started = False

    # -- creating ---------------------------------------------------------------

    def create(self, room: Room, spec: CompositionSpec, hook_sid: str | None = None) -> Composition:
        """Enqueue a composition of ``room``'s recordings (the room must have ended)."""
        if room.status is RoomStatus.IN_PROGRESS:
            raise VideoError(
                20001,
                f"Room {room.sid} is still in progress: compose it once it has ended "
                "(end it with Status=completed)",
                status=400,
            )
        if not self.store.count(Recording, Query({"room_sid": room.sid})):
            raise VideoError(
                20001,
                f"Room {room.sid} has no recordings to compose: record it "
                "(RecordParticipantsOnConnect or RecordingRules) while it is in progress",
                status=400,
            )
        sid = sids.new_sid(sids.COMPOSITION)
        composition = Composition.from_spec(
            spec,
            sid=sid,
            account_sid=room.account_sid,
            room_sid=room.sid,
            path=str(self.directory / room.sid / f"{sid}.{spec.format}"),
            hook_sid=hook_sid,
        )
        self.store.save(composition)
        self._callback(composition, "composition-enqueued")
        self._schedule(composition.sid)
        return composition

    def on_room_event(self, event: RoomEvent) -> None:
        """Registry listener: every enabled CompositionHook composes a room that ends."""
        if event.name != "room-ended":
            return
        for hook in self.store.list(CompositionHook, Query({"enabled": True})):
            try:
                self.create(event.room, hook.spec, hook_sid=hook.sid)
            except VideoError as error:
                log.warning(
                    "%d: composition hook %s did not compose room %s: %s",
                    HOOK_FAILED, hook.sid, event.room.sid, error.message,
                )  # fmt: skip

    # -- running ----------------------------------------------------------------

    def recover(self) -> None:
        """After a restart: retry what was interrupted, fail what was tried too often."""
        unfinished = [
            composition
            for status in (CompositionStatus.PROCESSING, CompositionStatus.ENQUEUED)
            for composition in self.store.list(Composition, Query({"status": status.value}))
        ]  # listed before any changes status, so that none is listed twice
        for composition in sorted(unfinished, key=lambda c: c.date_created):
            if composition.status is CompositionStatus.PROCESSING:
                if composition.attempts >= MAX_ATTEMPTS:
                    log.warning("composition %s was interrupted %d times: failed",
                                composition.sid, composition.attempts)
                    self._fail(composition)
                    continue
                log.info("composition %s was interrupted: retrying", composition.sid)
                composition.transition(CompositionStatus.ENQUEUED)
                self.store.save(composition)
            self._schedule(composition.sid)

    def start(self) -> None:
        """Begin composing (call in the server's running event loop)."""
        self._started = True
        for sid in self._waiting:  # oldest first
            self._schedule(sid)
        self._waiting.clear()

    async def close(self) -> None:
        """Stop composing; what was running stays ``processing`` and is retried at start."""
        self._started = False
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.close()

    def _schedule(self, sid: str) -> None:
        if not self._started:
            if sid not in self._waiting:
                self._waiting.append(sid)
            return
        if sid not in self._tasks:
            self._tasks[sid] = asyncio.ensure_future(self._run(sid))
            self._tasks[sid].add_done_callback(lambda _: self._tasks.pop(sid, None))

    async def _run(self, sid: str) -> None:
        composition = self.store.get(Composition, sid)
        if composition is None or composition.status is not CompositionStatus.ENQUEUED:
            return
        await self._recordings_settled(composition.room_sid)
        began = time.monotonic()
        reported = [-PROGRESS_STEP]

        def started() -> None:
            nonlocal began
            began = time.monotonic()
            composition.transition(CompositionStatus.PROCESSING)
            composition.attempts += 1
            self.store.save(composition)
            self._callback(composition, "composition-started")

        def progress(fraction: float) -> None:
            percent = int(fraction * 100)
            elapsed = time.monotonic() - began
            remaining = round(elapsed * (1 - fraction) / fraction) if fraction > 0 else None
            self.progress[sid] = (percent, remaining)
            if percent < reported[0] + PROGRESS_STEP:
                return
            reported[0] = percent - percent % PROGRESS_STEP
            extra = {"PercentageDone": str(percent)}
            if remaining is not None:
                extra["SecondsRemaining"] = str(remaining)
            self._callback(composition, "composition-progress", extra)

        try:
            job = self._job(composition)
            result = await self.pool.run(job, progress, started)
        except CompositionError as error:
            log.warning("composition %s failed: %s", sid, error)
            self._fail(composition)
            return
        finally:
            self.progress.pop(sid, None)
        current = self.store.get(Composition, sid)
        if current is None or current.status is not CompositionStatus.PROCESSING:
            return  # deleted meanwhile
        composition.complete(result.duration, result.size)
        self.store.save(composition)
        self._callback(composition, "composition-available")

    async def _recordings_settled(self, room_sid: str) -> None:
        deadline = time.monotonic() + self.recordings_settle
        processing = Query({"room_sid": room_sid, "status": RecordingStatus.PROCESSING.value})
        while self.store.count(Recording, processing) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    def _job(self, composition: Composition) -> Job:
        room = self.store.get(Room, composition.room_sid)
        if room is None:
            raise CompositionError(f"room {composition.room_sid} is gone")
        origin = room.date_created.timestamp()
        finished = (room.end_time.timestamp() if room.end_time else time.time()) - origin
        recordings = self.store.list(
            Recording,
            Query({"room_sid": room.sid, "status": RecordingStatus.COMPLETED.value}),
        )
        width, height = composition.size_wh
        return Job(
            output=composition.path,
            format=composition.format,
            width=width,
            height=height,
            video_layout=composition.video_layout,
            audio_sources=composition.audio_sources,
            audio_sources_excluded=composition.audio_sources_excluded,
            trim=composition.trim,
            room_duration=finished,
            tracks=[
                TrackFile(
                    recording_sid=recording.sid,
                    track_sid=recording.source_sid,
                    track_name=recording.track_name,
                    kind=recording.type,
                    path=recording.path,
                    offset=recording.offset / 1000 - origin,
                )
                for recording in recordings
                if recording.offset is not None
            ],
        )

    def _fail(self, composition: Composition) -> None:
        composition.fail(COMPOSITION_FAILED)
        self.store.save(composition)
        self._callback(composition, "composition-failed")

    # -- the REST side ------------------------------------------------------------

    def get(self, sid: str) -> Composition:
        found = self.store.get(Composition, sid) if sids.is_sid(sid, sids.COMPOSITION) else None
        if found is None:
            raise not_found(f"/Compositions/{sid}")
        return found

    def list(self, where: CompositionFilter, offset: int, limit: int) -> Page:
        return Page(
            self.store.list(Composition, where.query(offset, limit)),
            self.store.count(Composition, where.query()),
        )

    def delete(self, composition: Composition) -> None:
        """Remove a finished composition's media; the record stays, ``deleted``."""
        if not composition.is_finished:
            raise VideoError(
                53112,
                f"Composition {composition.sid} is {composition.status.value}; "
                "delete it once it has completed or failed",
            )
        composition.transition(CompositionStatus.DELETED)
        with contextlib.suppress(FileNotFoundError):
            Path(composition.path).unlink()
        self.store.save(composition)

    def url(self, composition: Composition) -> str:
        return f"{self.api_root}/Compositions/{composition.sid}"

    # -- hooks and settings ----------------------------------------------------------

    def get_hook(self, sid: str) -> CompositionHook:
        found = self.store.get(CompositionHook, sid) if sids.is_sid(sid, sids.HOOK) else None
        if found is None:
            raise not_found(f"/CompositionHooks/{sid}")
        return found

    def save_hook(self, hook: CompositionHook) -> CompositionHook:
        """Create or update ``hook``; its FriendlyName must be its own in the account."""
        same = self.store.find(CompositionHook, friendly_name=hook.friendly_name)
        if same is not None and same.sid != hook.sid:
            raise VideoError(
                20001,
                f"FriendlyName {hook.friendly_name!r} is CompositionHook {same.sid}'s; "
                "choose a name no other hook has",
                status=400,
            )
        self.store.save(hook)
        return hook

    def settings(self, which: str, account_sid: str) -> StorageSettings:
        found = self.store.get(StorageSettings, which)
        return found or StorageSettings(sid=which, account_sid=account_sid)

    # -- status callbacks --------------------------------------------------------------

    def _callback(
        self, composition: Composition, event: str, extra: dict[str, str] | None = None
    ) -> None:
        if self.status_callbacks is None:
            return
        room = self.store.get(Room, composition.room_sid)
        if room is None:
            return
        url = self.url(composition)
        params = {"CompositionSid": composition.sid, "CompositionUri": url, **(extra or {})}
        if event == "composition-available":
            params.update(
                MediaUri=f"{url}/Media",
                Duration=str(composition.duration),
                Size=str(composition.size),
            )
        if event == "composition-failed" and composition.error_code is not None:
            params["ErrorCode"] = str(composition.error_code)
        # The composition's own StatusCallback, not the room's (as Twilio sends them).
        target = dataclasses.replace(
            room,
            status_callback=composition.status_callback,
            status_callback_method=composition.status_callback_method,
        )
        self.status_callbacks.send(target, event, params)
