"""Composition and CompositionHook: a room's track recordings laid out into one file.

Twilio's Compositions API (https://www.twilio.com/docs/video/api/compositions-resource)
and Composition Hooks (https://www.twilio.com/docs/video/api/composition-hooks). A
Composition is enqueued, then processing, then completed (or failed); deleting it
removes its media and keeps the record ``deleted``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ..errors import VideoError
from .record import Record, utcnow


class CompositionStatus(str, enum.Enum):
    ENQUEUED = "enqueued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    DELETED = "deleted"
    FAILED = "failed"


_TRANSITIONS: dict[CompositionStatus, frozenset[CompositionStatus]] = {
    CompositionStatus.ENQUEUED: frozenset(
        {CompositionStatus.PROCESSING, CompositionStatus.FAILED, CompositionStatus.DELETED}
    ),
    # processing -> enqueued: a composition its server was killed in is retried.
    CompositionStatus.PROCESSING: frozenset(
        {
            CompositionStatus.ENQUEUED,
            CompositionStatus.COMPLETED,
            CompositionStatus.FAILED,
            CompositionStatus.DELETED,
        }
    ),
    CompositionStatus.COMPLETED: frozenset({CompositionStatus.DELETED}),
    CompositionStatus.FAILED: frozenset({CompositionStatus.DELETED}),
    CompositionStatus.DELETED: frozenset(),
}

FORMATS = ("mp4", "webm")
MEDIA_TYPES = {"mp4": "video/mp4", "webm": "video/webm"}


@dataclass
class CompositionSpec:
    """What a composition (or a hook's compositions) is made of: Twilio's create parameters."""

    video_layout: dict[str, Any] = field(default_factory=dict)
    audio_sources: list[str] = field(default_factory=list)
    audio_sources_excluded: list[str] = field(default_factory=list)
    resolution: str = "640x480"
    format: str = "webm"
    trim: bool = True
    status_callback: str | None = None
    status_callback_method: str = "POST"


@dataclass
class Composition(Record):
    """A Composition resource (``sid`` CJ...). ``transition`` is the only way its status
    changes."""

    kind: ClassVar[str] = "composition"

    sid: str
    account_sid: str
    room_sid: str
    path: str  # where the composed file is (or will be) on this server
    video_layout: dict[str, Any] = field(default_factory=dict)
    audio_sources: list[str] = field(default_factory=list)
    audio_sources_excluded: list[str] = field(default_factory=list)
    resolution: str = "640x480"
    format: str = "webm"
    trim: bool = True
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status: CompositionStatus = CompositionStatus.ENQUEUED
    hook_sid: str | None = None  # the CompositionHook that made it, if one did
    attempts: int = 0  # times processing began (a restart mid-way retries it)
    duration: int | None = None  # seconds, once completed
    size: int | None = None  # bytes, once completed
    bitrate: int | None = None  # kbps, once completed
    error_code: int | None = None  # Twilio's code of why it failed
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    date_completed: datetime | None = None
    date_deleted: datetime | None = None

    @classmethod
    def from_spec(cls, spec: CompositionSpec, **identity: Any) -> Composition:
        return cls(
            video_layout=spec.video_layout,
            audio_sources=spec.audio_sources,
            audio_sources_excluded=spec.audio_sources_excluded,
            resolution=spec.resolution,
            format=spec.format,
            trim=spec.trim,
            status_callback=spec.status_callback,
            status_callback_method=spec.status_callback_method,
            **identity,
        )

    @property
    def size_wh(self) -> tuple[int, int]:
        width, _, height = self.resolution.partition("x")
        return int(width), int(height)

    @property
    def is_finished(self) -> bool:
        return self.status in (
            CompositionStatus.COMPLETED,
            CompositionStatus.FAILED,
            CompositionStatus.DELETED,
        )

    def transition(self, status: CompositionStatus, now: datetime | None = None) -> None:
        """Move to ``status`` or raise 53112 naming the transition refused."""
        if status not in _TRANSITIONS[self.status]:
            raise VideoError(
                53112,
                f"Composition {self.sid} is {self.status.value}; it cannot become {status.value}",
            )
        self.status = status
        self.date_updated = now or utcnow()
        if status is CompositionStatus.DELETED:
            self.date_deleted = self.date_updated

    def complete(self, duration: float, size: int, now: datetime | None = None) -> None:
        """The file is written: ``duration`` seconds in ``size`` bytes."""
        self.transition(CompositionStatus.COMPLETED, now)
        self.date_completed = self.date_updated
        self.duration = round(duration)
        self.size = size
        self.bitrate = round(size * 8 / duration / 1000) if duration > 0 else 0

    def fail(self, code: int, now: datetime | None = None) -> None:
        self.transition(CompositionStatus.FAILED, now)
        self.date_completed = self.date_updated
        self.error_code = code


@dataclass
class CompositionHook(Record):
    """A CompositionHook resource (``sid`` HK...): compose every room that ends."""

    kind: ClassVar[str] = "composition_hook"

    sid: str
    account_sid: str
    friendly_name: str
    enabled: bool = True
    video_layout: dict[str, Any] = field(default_factory=dict)
    audio_sources: list[str] = field(default_factory=list)
    audio_sources_excluded: list[str] = field(default_factory=list)
    resolution: str = "640x480"
    format: str = "webm"
    trim: bool = True
    status_callback: str | None = None
    status_callback_method: str = "POST"
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)

    @property
    def spec(self) -> CompositionSpec:
        return CompositionSpec(
            video_layout=self.video_layout,
            audio_sources=self.audio_sources,
            audio_sources_excluded=self.audio_sources_excluded,
            resolution=self.resolution,
            format=self.format,
            trim=self.trim,
            status_callback=self.status_callback,
            status_callback_method=self.status_callback_method,
        )


@dataclass
class StorageSettings(Record):
    """CompositionSettings/Default or RecordingSettings/Default (``sid`` is which):
    where media is kept. This server keeps it on its own disk, so external (S3)
    storage and encryption cannot be turned on."""

    kind: ClassVar[str] = "storage_settings"

    sid: str  # "CompositionSettings" | "RecordingSettings"
    account_sid: str
    friendly_name: str = ""
    date_created: datetime = field(default_factory=utcnow)
