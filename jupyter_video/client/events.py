"""Room events: callbacks (sync or async) and an ``async for`` stream.

twilio-video's Room is an EventEmitter (``room.on('participantConnected', fn)``);
here the names are snake_case and every event is one :class:`RoomEvent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..errors import VideoError
    from .participant import RemoteParticipant
    from .publication import RemoteTrackPublication
    from .track import RemoteTrack

log = logging.getLogger(__name__)

EVENT_NAMES = frozenset({
    "participant_connected",
    "participant_disconnected",
    "participant_reconnecting",
    "participant_reconnected",
    "track_published",
    "track_unpublished",
    "track_subscribed",
    "track_unsubscribed",
    "track_subscription_failed",
    "track_enabled",
    "track_disabled",
    "track_message",
    "dominant_speaker_changed",
    "disconnected",
    "reconnecting",
    "reconnected",
})


@dataclass(frozen=True)
class RoomEvent:
    """One thing that happened in a room; fields that do not apply are None."""

    name: str
    participant: RemoteParticipant | None = None
    publication: RemoteTrackPublication | None = None
    track: RemoteTrack | None = None
    message: str | bytes | None = None
    error: VideoError | None = None
    level: int | None = None
    """``network_quality_level_changed``: the new level, 0-5 (of ``participant``, or
    yours when that is None)."""


Listener = Callable[[RoomEvent], Any]

_END = object()  # closes every events() stream


class EventStream:
    """``async for event in room.events()``: a queue of this stream's own."""

    def __init__(self, emitter: EventEmitter) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._emitter = emitter

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> RoomEvent:
        item = await self.queue.get()
        if item is _END:
            self.queue.put_nowait(_END)  # stays ended
            self.close()
            raise StopAsyncIteration
        event: RoomEvent = item
        return event

    def close(self) -> None:
        """Stop receiving events."""
        with contextlib.suppress(ValueError):
            self._emitter._streams.remove(self.queue)


class EventEmitter:
    """``on``/``off`` listeners and ``events()`` streams for one room.

    A listener gets the :class:`RoomEvent`; a coroutine function's result is run as
    a task that :meth:`aclose` waits for (briefly) so none outlives the room.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self._streams: list[asyncio.Queue[Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def on(self, name: str, listener: Listener) -> Listener:
        """Call ``listener(event)`` on every ``name`` event; returns the listener."""
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown event {name!r}; expected one of {sorted(EVENT_NAMES)}")
        self._listeners.setdefault(name, []).append(listener)
        return listener

    def off(self, name: str, listener: Listener) -> None:
        """Stop calling ``listener`` for ``name``."""
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[name].remove(listener)

    def events(self) -> EventStream:
        """Every event from now on (the stream starts here, not at the first ``anext``),
        until and including ``disconnected``."""
        stream = EventStream(self)
        if self._closed:
            stream.queue.put_nowait(_END)
        else:
            self._streams.append(stream.queue)
        return stream

    def emit(self, name: str, **fields: Any) -> RoomEvent:
        """Deliver one event to listeners and streams."""
        event = RoomEvent(name, **fields)
        for listener in list(self._listeners.get(name, ())):
            try:
                result = listener(event)
            except Exception:
                log.exception("%s listener failed", name)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._listener_done)
        for queue in self._streams:
            queue.put_nowait(event)
        return event

    def _listener_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event listener failed", exc_info=task.exception())

    async def aclose(self, timeout: float = 5.0) -> None:
        """End the streams and let running async listeners finish (then cancel them)."""
        self._closed = True
        for queue in self._streams:
            queue.put_nowait(_END)
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
