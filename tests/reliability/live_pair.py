"""Two real Python participants that keep exchanging video and data in one room,
on an event loop of their own (a thread), while a test attacks the server from
the outside with synchronous clients.

``LivePair.healthy()`` is what every attack test asserts afterwards: both
participants still connected under the SIDs they joined with, and frames and
messages still arriving both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np

from jupyter_video._aiortc import use_host_addresses
from jupyter_video.client import (
    LocalDataTrack,
    LocalVideoTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    Room,
    RoomEvent,
    RoomState,
    connect,
)

from ..client.participants import LOOPBACK, token
from ..server_process import ServerProcess

T = TypeVar("T")
SHAPE = (96, 128)  # small frames: two encoders and decoders share 2 cores with the server
FPS = 10


def frames(level: int) -> Iterator[np.ndarray]:
    """A flat frame of one red level: what arrives is checked to be the sender's."""
    frame = np.empty((*SHAPE, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = level, 255 - level, 128
    while True:
        yield frame


class Side:
    """One participant: what it received from the other."""

    def __init__(self, identity: str, level: int) -> None:
        self.identity = identity
        self.level = level
        self.room: Room | None = None
        self.sid = ""
        self.chat = LocalDataTrack(name="chat")
        self.frames = 0
        self.bad_frames = 0
        self.messages = 0
        self.tasks: list[asyncio.Task[None]] = []


class LivePair:
    """Alice and Bob in ``room``: video at 10 fps and a data message every 100 ms each way."""

    def __init__(self, server: ServerProcess, room: str) -> None:
        self.server = server
        self.room = room
        self.alice = Side("alice", 60)
        self.bob = Side("bob", 200)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> LivePair:
        self._thread.start()
        self.run(self._join())
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self._leave(), timeout=20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    async def _join(self) -> None:
        use_host_addresses(LOOPBACK)
        for side in (self.alice, self.bob):
            side.room = await connect(
                token(self.server, side.identity), self.room, self.server.url,
                ice_host_addresses=LOOPBACK,
                tracks=[LocalVideoTrack.from_frames(frames(side.level), fps=FPS), side.chat],
            )
            side.sid = side.room.local_participant.sid
            side.room.on("track_subscribed", lambda event, side=side: self._received(side, event))
            for participant in side.room.participants.values():
                for publication in participant.tracks.values():
                    if publication.track is not None:
                        self._received(side, RoomEvent("track_subscribed",
                                                       track=publication.track))
            side.tasks.append(asyncio.ensure_future(self._chatter(side)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(s.frames >= 5 and s.messages >= 5 for s in (self.alice, self.bob)):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the pair never exchanged media: {self.counts()}")

    def _received(self, side: Side, event: RoomEvent) -> None:
        if isinstance(event.track, RemoteVideoTrack):
            side.tasks.append(asyncio.ensure_future(self._watch(side, event.track)))
        elif isinstance(event.track, RemoteDataTrack):
            side.tasks.append(asyncio.ensure_future(self._listen(side, event.track)))

    async def _watch(self, side: Side, track: RemoteVideoTrack) -> None:
        other = self.bob if side is self.alice else self.alice
        async for frame in track.frames():
            red = float(frame[..., 0].mean())
            if abs(red - other.level) <= 12 and frame.shape[:2] == SHAPE:
                side.frames += 1
            else:
                side.bad_frames += 1

    async def _listen(self, side: Side, track: RemoteDataTrack) -> None:
        async for _ in track.messages():
            side.messages += 1

    async def _chatter(self, side: Side) -> None:
        number = 0
        while True:
            await asyncio.sleep(0.1)
            number += 1
            with contextlib.suppress(Exception):
                side.chat.send(f"{side.identity} {number}")

    async def _leave(self) -> None:
        for side in (self.alice, self.bob):
            for task in side.tasks:
                task.cancel()
            if side.room is not None:
                await side.room.disconnect()
        use_host_addresses(None)

    def counts(self) -> dict[str, int]:
        return {
            f"{side.identity}_{what}": getattr(side, what)
            for side in (self.alice, self.bob)
            for what in ("frames", "bad_frames", "messages")
        }

    def healthy(self, within: float = 15.0) -> dict[str, int]:
        """Assert both are still in the room under their SIDs and media keeps flowing
        both ways (new frames and messages within ``within`` seconds); the counts."""
        before = self.counts()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            now = self.counts()
            if all(now[f"{s}_{w}"] >= before[f"{s}_{w}"] + 5
                   for s in ("alice", "bob") for w in ("frames", "messages")):
                break
            time.sleep(0.1)
        now = self.counts()
        for side in (self.alice, self.bob):
            assert side.room is not None and side.room.state is RoomState.CONNECTED, side.identity
            assert side.room.local_participant.sid == side.sid
        assert all(now[f"{s}_{w}"] >= before[f"{s}_{w}"] + 5
                   for s in ("alice", "bob") for w in ("frames", "messages")), (before, now)
        return now
