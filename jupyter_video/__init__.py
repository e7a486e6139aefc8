"""jupyter_video: live video rooms inside Jupyter, compatible with Twilio Programmable Video.

The participant SDK (``connect``, ``LocalVideoTrack``, ...) is imported on first
use, so that ``import jupyter_video`` stays light where only tokens or
credentials are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .account import Credentials, load_credentials
from .errors import VideoError
from .tokens import AccessToken, VideoGrant

if TYPE_CHECKING:
    from .classroom import Classroom
    from .client import (
        LocalAudioTrack,
        LocalDataTrack,
        LocalVideoTrack,
        RemoteAudioTrack,
        RemoteDataTrack,
        RemoteVideoTrack,
        Room,
        RoomEvent,
        connect,
    )
    from .compositions.client import ComposedVideo, compose
    from .recording import TrackRecording, recordings
    from .widgets import PreviewWidget, RoomMonitor, RoomWidget

__version__ = "0.1.0"

_LAZY = {
    name: "jupyter_video.client"
    for name in (
        "LocalAudioTrack",
        "LocalDataTrack",
        "LocalVideoTrack",
        "RemoteAudioTrack",
        "RemoteDataTrack",
        "RemoteVideoTrack",
        "Room",
        "RoomEvent",
        "connect",
    )
}
_LAZY.update({name: "jupyter_video.recording" for name in ("TrackRecording", "recordings")})
_LAZY["Classroom"] = "jupyter_video.classroom"
_LAZY.update({name: "jupyter_video.compositions.client" for name in ("ComposedVideo", "compose")})
# The widgets import anywidget and ipywidgets: only when a notebook asks for them.
_LAZY.update(
    {name: "jupyter_video.widgets" for name in ("RoomWidget", "PreviewWidget", "RoomMonitor")}
)

__all__ = [
    "AccessToken",
    "Classroom",
    "ComposedVideo",
    "Credentials",
    "LocalAudioTrack",
    "LocalDataTrack",
    "LocalVideoTrack",
    "PreviewWidget",
    "RemoteAudioTrack",
    "RemoteDataTrack",
    "RemoteVideoTrack",
    "Room",
    "RoomEvent",
    "RoomMonitor",
    "RoomWidget",
    "TrackRecording",
    "VideoError",
    "VideoGrant",
    "__version__",
    "compose",
    "connect",
    "credentials",
    "recordings",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_video' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import VideoApp

    return [{"module": "jupyter_video.server.app", "app": VideoApp}]


def credentials() -> Credentials:
    """This user's server credentials and URL (account, API key, base URL)."""
    return load_credentials()
