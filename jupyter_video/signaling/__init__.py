"""Signaling protocols spoken by twilio-video.js 2.x, sans-I/O.

``tcmp``: the TCMP v2 framing (hello / welcome / msg / heartbeat / bye) and a
session state machine per end; ``rsp``: the RSP v2 bodies (connect, update,
sync, disconnect; connected, update, synced, disconnected, error) as typed,
validated dataclasses. docs/signaling.md describes the protocol with captures.
"""

from jupyter_video.signaling import rsp, tcmp

__all__ = ["rsp", "tcmp"]
