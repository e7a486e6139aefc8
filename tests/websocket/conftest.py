"""The media socket tests use the client tests' fixtures: a real server (one per
module, media in one worker process) and a ``join`` fixture whose options reach
``connect`` (``transport="websocket"``)."""

from __future__ import annotations

from ..client.conftest import join, loopback_only, video_server

__all__ = ["join", "loopback_only", "video_server"]
