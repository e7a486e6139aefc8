"""What one Python participant hears of another: loud audio frames, timed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import numpy as np

from jupyter_video.classroom import Seat

WAIT = 20.0
LOUD = 3000  # int16 peak: the 0.5-amplitude tone decodes far above it, silence far below


async def remote_track(listener: Seat, identity: str, kind: str, timeout: float = WAIT) -> Any:
    """The subscribed track of ``kind`` that ``listener`` receives from ``identity``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for participant in listener.room.participants.values():
            if participant.identity != identity:
                continue
            for publication in participant.tracks.values():
                if publication.kind == kind and publication.track is not None:
                    return publication.track
        await asyncio.sleep(0.05)
    raise AssertionError(f"{listener.identity} receives no {kind} from {identity}")


class Ear:
    """Every audio frame a track delivers, with the time it came and its peak."""

    def __init__(self, track: Any) -> None:
        self.heard: list[tuple[float, int]] = []
        self._task = asyncio.ensure_future(self._listen(track))

    async def _listen(self, track: Any) -> None:
        async for frame in track.frames():
            self.heard.append((time.monotonic(), int(np.abs(frame).max())))

    def loud_since(self, since: float) -> int:
        return sum(1 for at, peak in self.heard if at >= since and peak > LOUD)

    def frames_since(self, since: float) -> int:
        return sum(1 for at, _ in self.heard if at >= since)

    async def wait_loud(self, count: int = 20, timeout: float = WAIT) -> None:
        start = time.monotonic()
        while self.loud_since(start - 60) < count:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"heard {self.loud_since(0)} loud frames, wanted {count}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            self._task.exception()
