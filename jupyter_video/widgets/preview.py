"""PreviewWidget: check the camera and microphone, pick devices, then join."""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets as t

from . import _frontend
from .room import RoomWidget


class PreviewWidget(anywidget.AnyWidget):
    """Camera preview, device selection and a microphone level meter (0-10).

    A level that stays at 0 while you talk means another application holds the
    microphone. ``join(room)`` releases the devices and returns a RoomWidget
    that uses the chosen ones.
    """

    _esm = _frontend.esm()
    _widget = t.Unicode("preview").tag(sync=True)

    audio_device = t.Unicode(None, allow_none=True, help="Chosen microphone deviceId.").tag(
        sync=True
    )
    video_device = t.Unicode(None, allow_none=True, help="Chosen camera deviceId.").tag(
        sync=True
    )
    devices = t.List(t.Dict(), help="Cameras and microphones: kind, id, label.").tag(sync=True)
    level = t.Int(0, help="Microphone level, 0 (silence) to 10.").tag(sync=True)
    error = t.Dict(
        default_value=None, allow_none=True, help="Media error: name, message, remedy."
    ).tag(sync=True)

    def join(self, room: str = "lab", identity: str | None = None, **kwargs: Any) -> RoomWidget:
        """Release the preview's devices and return a RoomWidget using the chosen ones.

        Display the result to join (mobile browsers let one track hold a camera).
        """
        self.send({"command": "release"})
        return RoomWidget(
            room,
            identity,
            audio_device=self.audio_device,
            video_device=self.video_device,
            **kwargs,
        )
