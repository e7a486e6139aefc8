"""Helpers of the end-to-end client tests: tokens, room names, an event recorder."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable

from jupyter_video.client import Room, RoomEvent
from jupyter_video.tokens import AccessToken, VideoGrant

from ..server_process import ServerProcess

LOOPBACK = ["127.0.0.1"]
WAIT = 20.0  # seconds any one expected event may take


def token(server: ServerProcess, identity: str, ttl: int = 600,
          valid_until: int | None = None) -> str:
    """An Access Token for ``identity``, any room, signed with the server's API key."""
    creds = server.credentials()
    access = AccessToken(creds["account_sid"], creds["api_key_sid"], creds["api_key_secret"],
                         identity=identity, ttl=ttl, valid_until=valid_until)
    access.add_grant(VideoGrant())
    return access.to_jwt()


def room_name() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


class Recorder:
    """Every event of one room, from the moment it is made, with a way to wait for one."""

    def __init__(self, room: Room) -> None:
        self.events: list[RoomEvent] = []
        self._changed = asyncio.Event()
        self._stream = room.events()
        self._task = asyncio.ensure_future(self._record())

    async def _record(self) -> None:
        async for event in self._stream:
            self.events.append(event)
            self._changed.set()

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    async def wait(self, name: str, where: Callable[[RoomEvent], bool] = lambda e: True,
                   timeout: float = WAIT) -> RoomEvent:
        """The first recorded ``name`` event matching ``where`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.name == name and where(event):
                    return event
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {name} event in {timeout}s; got {self.names()}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


def subscribed_to(kind: str) -> Callable[[RoomEvent], bool]:
    """Matches events whose track is of ``kind``."""
    return lambda event: event.track is not None and event.track.kind == kind
