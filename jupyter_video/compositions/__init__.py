"""Compositions: a room's track recordings as one video file (Twilio's Compositions API).

- :mod:`.layout`: Twilio's VideoLayout, checked, and which source shows where, when.
- :mod:`.composer`: PyAV decoding, drawing, mixing and encoding (mp4 or webm).
- :mod:`.pool`: composer processes, a few at a time, so live rooms never wait on one.
- :mod:`.client`: ``jupyter_video.compose(room)`` from a kernel.

The control plane's side (REST, records, callbacks, hooks) is
``jupyter_video.server.compositions``; nothing here knows about tokens or REST.
"""

from .composer import CompositionError, Job, Result, TrackFile, compose
from .layout import parse_layout, parse_resolution
from .pool import ComposerPool

__all__ = [
    "ComposerPool",
    "CompositionError",
    "Job",
    "Result",
    "TrackFile",
    "compose",
    "parse_layout",
    "parse_resolution",
]
