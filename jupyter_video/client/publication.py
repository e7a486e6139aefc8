"""Track publications: a track as published in a room, named by its SID (``MT...``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .track import LocalTrack, RemoteTrack

if TYPE_CHECKING:
    from .participant import RemoteParticipant


class LocalTrackPublication:
    """One of your tracks, published: ``track_sid`` is what others subscribe to."""

    def __init__(self, track: LocalTrack, track_sid: str) -> None:
        self.track = track
        self.track_sid = track_sid

    @property
    def track_name(self) -> str:
        return self.track.name

    @property
    def kind(self) -> str:
        return self.track.kind

    @property
    def is_enabled(self) -> bool:
        return self.track.is_enabled

    def __repr__(self) -> str:
        return f"<LocalTrackPublication {self.track_sid} {self.kind} {self.track_name!r}>"


class RemoteTrackPublication:
    """A track another participant publishes; ``track`` is set while you are subscribed."""

    def __init__(self, participant: RemoteParticipant, track_sid: str, track_name: str,
                 kind: str, is_enabled: bool = True, priority: str = "standard") -> None:
        self.participant = participant
        self.track_sid = track_sid
        self.track_name = track_name
        self.kind = kind
        self.is_enabled = is_enabled
        self.priority = priority
        self.track: RemoteTrack | None = None

    @property
    def is_subscribed(self) -> bool:
        return self.track is not None

    def __repr__(self) -> str:
        state = "subscribed" if self.is_subscribed else "not subscribed"
        return (f"<RemoteTrackPublication {self.track_sid} {self.kind} {self.track_name!r} "
                f"{state}>")
