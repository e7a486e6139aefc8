"""Tracks: what a participant sends (numpy frames, files, data) and receives.

Local audio and video tracks are aiortc ``MediaStreamTrack``\\ s whose ``id`` is
the id announced in ``participant.tracks`` and written in the offer's
``a=msid`` (twilio-video's MediaTrackSender id). A local data track is an
RTCDataChannel per room, labelled with its id (docs/signaling.md section 8).

Remote audio and video tracks keep only the newest decoded frame
(:class:`LatestSlot`): a slow consumer gets the latest picture, never a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fractions
import inspect
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import av
import numpy as np
from aiortc import RTCDataChannel
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

if TYPE_CHECKING:
    from aiortc.contrib.media import MediaPlayer

log = logging.getLogger(__name__)

T = TypeVar("T")

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_PTIME = 0.020  # 20 ms per audio frame, as WebRTC sends Opus
MAX_BUFFERED_MESSAGES = 1024

FrameSource = (
    Iterable[np.ndarray]
    | AsyncIterable[np.ndarray]
    | Callable[[], np.ndarray | Awaitable[np.ndarray]]
)


class TrackKind(str, enum.Enum):
    """What a track carries."""

    AUDIO = "audio"
    VIDEO = "video"
    DATA = "data"


# --------------------------------------------------------------------------- latest-frame slot

class LatestSlot(Generic[T]):
    """One slot holding the newest item: writers overwrite, readers wait for a newer one.

    Each item gets a sequence number; ``get(after=n)`` returns the newest item whose
    number is above ``n``, so a reader that falls behind skips to the present.
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._seq = 0
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def seq(self) -> int:
        """Number of the newest item (0: none yet)."""
        return self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        """Replace the held item with ``item``."""
        if self._closed:
            return
        self._item = item
        self._seq += 1
        self._wake()

    def close(self) -> None:
        """No more items: waiting and future readers get ``None``."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def get(self, after: int = 0) -> tuple[int, T] | None:
        """The newest item numbered above ``after`` (waiting for one), or None once closed."""
        while self._seq <= after or self._item is None:
            if self._closed:
                return None
            await self._changed.wait()
        return self._seq, self._item


# --------------------------------------------------------------------------- local tracks

class _EnabledState:
    """``enable()``/``disable()`` with listeners (the local participant sends its state)."""

    def __init__(self) -> None:
        self.is_enabled = True
        self._enabled_listeners: list[Callable[[], None]] = []

    def enable(self) -> None:
        """Send media again; remote participants see ``track_enabled``."""
        self._set_enabled(True)

    def disable(self) -> None:
        """Send black frames or silence; remote participants see ``track_disabled``."""
        self._set_enabled(False)

    def _set_enabled(self, enabled: bool) -> None:
        if enabled == self.is_enabled:
            return
        self.is_enabled = enabled
        for listener in list(self._enabled_listeners):
            listener()


class LocalMediaTrack(MediaStreamTrack, _EnabledState):
    """Base of local audio and video tracks: paced ``recv()`` for aiortc's sender."""

    kind: str

    def __init__(self, name: str | None = None) -> None:
        MediaStreamTrack.__init__(self)
        _EnabledState.__init__(self)
        self.name = name or self.id

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._next_frame()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame if self.is_enabled else self._muted(frame)

    async def _next_frame(self) -> Any:
        raise NotImplementedError

    def _muted(self, frame: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} name={self.name!r}>"


async def _next_item(source: Any) -> Any:
    """The next item of an iterator, async iterator or callable; None when it ended."""
    try:
        if hasattr(source, "__anext__"):
            return await source.__anext__()
        if hasattr(source, "__next__"):
            return next(source)
        item = source()
        return await item if inspect.isawaitable(item) else item
    except (StopIteration, StopAsyncIteration):
        return None


def _iterate(source: FrameSource) -> Any:
    if hasattr(source, "__aiter__"):
        return source.__aiter__()
    if hasattr(source, "__iter__"):
        return iter(source)
    if callable(source):
        return source
    raise TypeError("frames must be an iterable, an async iterable or a callable")


class LocalVideoTrack(LocalMediaTrack):
    """Video you publish: numpy RGB frames (``from_frames``) or a media file (``from_file``)."""

    kind = "video"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self._source: Any = None
        self._player: MediaPlayer | None = None
        self.fps = 30.0
        self._start: float | None = None
        self._pts = 0

    @classmethod
    def from_frames(cls, frames: FrameSource, fps: float = 30, name: str | None = None,
                    ) -> LocalVideoTrack:
        """A track sending ``frames`` (HxWx3 uint8 RGB arrays from an iterable, async
        iterable or callable) at ``fps``; it ends when they do."""
        track = cls(name)
        track._source = _iterate(frames)
        track.fps = float(fps)
        return track

    @classmethod
    def from_file(cls, path: str, name: str | None = None) -> LocalVideoTrack:
        """A track playing the video of a media file (aiortc ``MediaPlayer``)."""
        from aiortc.contrib.media import MediaPlayer

        track = cls(name)
        track._player = MediaPlayer(path)
        if track._player.video is None:
            raise ValueError(f"{path} has no video stream")
        return track

    async def _next_frame(self) -> av.VideoFrame | None:
        if self._player is not None:
            assert self._player.video is not None
            try:
                played = await self._player.video.recv()
            except MediaStreamError:
                return None
            assert isinstance(played, av.VideoFrame)
            return played
        array = await _next_item(self._source)
        if array is None:
            return None
        frame = av.VideoFrame.from_ndarray(_rgb(array), format="rgb24")
        await self._pace()
        frame.pts = self._pts
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def _pace(self) -> None:
        # like aiortc's VideoStreamTrack.next_timestamp: one frame every 1/fps seconds
        if self._start is None:
            self._start = time.monotonic()
            self._pts = 0
            return
        self._pts += int(VIDEO_CLOCK_RATE / self.fps)
        delay = self._start + self._pts / VIDEO_CLOCK_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def _muted(self, frame: av.VideoFrame) -> av.VideoFrame:
        black = av.VideoFrame.from_ndarray(
            np.zeros((frame.height, frame.width, 3), np.uint8), format="rgb24")
        black.pts, black.time_base = frame.pts, frame.time_base
        return black

    def stop(self) -> None:
        super().stop()
        if self._player is not None and self._player.video is not None:
            self._player.video.stop()


def _rgb(array: Any) -> np.ndarray:
    frame = np.asarray(array)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"video frames must be HxWx3 uint8 arrays, got {frame.shape} "
                         f"{frame.dtype}")
    return np.ascontiguousarray(frame)


class LocalAudioTrack(LocalMediaTrack):
    """Audio you publish: numpy samples (``from_array``) or a media file (``from_file``)."""

    kind = "audio"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self._samples: np.ndarray | None = None
        self._player: MediaPlayer | None = None
        self.sample_rate = 48000
        self._position = 0
        self._start: float | None = None

    @classmethod
    def from_array(cls, samples: np.ndarray, sample_rate: int = 48000,
                   name: str | None = None) -> LocalAudioTrack:
        """A track playing ``samples`` once in real time: shape (n,) mono or
        (n, channels), int16 or float in [-1, 1]; it ends after the last sample."""
        data = np.asarray(samples)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2 or data.shape[1] not in (1, 2):
            raise ValueError(f"audio samples must be (n,) or (n, 1|2), got {data.shape}")
        if data.dtype.kind == "f":
            data = (np.clip(data, -1.0, 1.0) * 32767).astype(np.int16)
        track = cls(name)
        track._samples = np.ascontiguousarray(data.astype(np.int16))
        track.sample_rate = int(sample_rate)
        return track

    @classmethod
    def from_file(cls, path: str, name: str | None = None) -> LocalAudioTrack:
        """A track playing the audio of a media file (aiortc ``MediaPlayer``)."""
        from aiortc.contrib.media import MediaPlayer

        track = cls(name)
        track._player = MediaPlayer(path)
        if track._player.audio is None:
            raise ValueError(f"{path} has no audio stream")
        return track

    async def _next_frame(self) -> av.AudioFrame | None:
        if self._player is not None:
            assert self._player.audio is not None
            try:
                played = await self._player.audio.recv()
            except MediaStreamError:
                return None
            assert isinstance(played, av.AudioFrame)
            return played
        assert self._samples is not None
        step = int(self.sample_rate * AUDIO_PTIME)
        if self._position >= len(self._samples):
            return None
        chunk = self._samples[self._position:self._position + step]
        if len(chunk) < step:
            chunk = np.concatenate([chunk, np.zeros((step - len(chunk), chunk.shape[1]),
                                                    np.int16)])
        if self._start is None:
            self._start = time.monotonic()
        else:
            delay = self._start + self._position / self.sample_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        frame = _audio_frame(chunk, self.sample_rate)
        frame.pts = self._position
        self._position += step
        return frame

    def _muted(self, frame: av.AudioFrame) -> av.AudioFrame:
        channels = len(frame.layout.channels)
        silent = _audio_frame(np.zeros((frame.samples, channels), np.int16), frame.sample_rate)
        silent.pts = frame.pts
        return silent

    def stop(self) -> None:
        super().stop()
        if self._player is not None and self._player.audio is not None:
            self._player.audio.stop()


def _audio_frame(chunk: np.ndarray, sample_rate: int) -> av.AudioFrame:
    layout = "mono" if chunk.shape[1] == 1 else "stereo"
    frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = sample_rate
    frame.time_base = fractions.Fraction(1, sample_rate)
    return frame


class LocalDataTrack(_EnabledState):
    """Messages you publish: ``send(str | bytes)`` to everyone subscribed.

    Published as an RTCDataChannel labelled with ``id``; ``ordered``,
    ``max_packet_life_time`` (ms) and ``max_retransmits`` are its options.
    """

    kind = "data"

    def __init__(self, name: str | None = None, *, ordered: bool = True,
                 max_packet_life_time: int | None = None,
                 max_retransmits: int | None = None) -> None:
        super().__init__()
        self.id = str(uuid.uuid4())
        self.name = name or self.id
        self.ordered = ordered
        self.max_packet_life_time = max_packet_life_time
        self.max_retransmits = max_retransmits
        self._channels: list[RTCDataChannel] = []
        self._unsent: dict[RTCDataChannel, list[str | bytes]] = {}

    def send(self, data: str | bytes) -> None:
        """Send one message on every room the track is published in (queued until the
        channel opens; dropped when the track is not published anywhere)."""
        if not isinstance(data, str | bytes):
            raise TypeError(f"data track messages are str or bytes, not {type(data).__name__}")
        for channel in self._channels:
            if channel.readyState == "open":
                channel.send(data)
            elif channel.readyState == "connecting":
                self._unsent.setdefault(channel, []).append(data)

    def _attach(self, channel: RTCDataChannel) -> None:
        self._channels.append(channel)

        @channel.on("open")
        def _flush() -> None:
            for data in self._unsent.pop(channel, []):
                channel.send(data)

    def _detach(self, channel: RTCDataChannel) -> None:
        with contextlib.suppress(ValueError):
            self._channels.remove(channel)
        self._unsent.pop(channel, None)
        channel.close()

    def _set_enabled(self, enabled: bool) -> None:
        self.is_enabled = True  # twilio-video: data tracks are always enabled

    def __repr__(self) -> str:
        return f"<LocalDataTrack id={self.id} name={self.name!r}>"


LocalTrack = LocalAudioTrack | LocalVideoTrack | LocalDataTrack


# --------------------------------------------------------------------------- remote tracks

class RemoteTrack:
    """A track received from another participant, named by its publication's ``sid``."""

    kind: str

    def __init__(self, sid: str, name: str) -> None:
        self.sid = sid
        self.name = name
        self.is_enabled = True

    def _end(self) -> None:
        """Unsubscribed: readers stop."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sid={self.sid} name={self.name!r}>"


class RemoteMediaTrack(RemoteTrack):
    """Audio or video: the newest decoded frame, as numpy arrays."""

    def __init__(self, sid: str, name: str) -> None:
        super().__init__(sid, name)
        self._slot: LatestSlot[Any] = LatestSlot()

    def _deliver(self, frame: Any) -> None:
        self._slot.put(frame)

    def _end(self) -> None:
        self._slot.close()

    @property
    def frames_received(self) -> int:
        """How many frames arrived since the subscription started (consumed or not)."""
        return self._slot.seq

    async def frames(self) -> AsyncGenerator[np.ndarray, None]:
        """The newest frame (at once if there is one), then each time the newest after
        it, waiting for a newer one; ends when unsubscribed.

        Frames that arrive while the consumer is busy are skipped, never queued.
        """
        seen = 0
        while True:
            got = await self._slot.get(after=seen)
            if got is None:
                return
            seen, frame = got
            yield self._to_array(frame)

    def _to_array(self, frame: Any) -> np.ndarray:
        raise NotImplementedError


class RemoteVideoTrack(RemoteMediaTrack):
    """Video from another participant: ``frames()`` yields HxWx3 uint8 RGB arrays."""

    kind = "video"

    def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
        return frame.to_ndarray(format="rgb24")


class RemoteAudioTrack(RemoteMediaTrack):
    """Audio from another participant: ``frames()`` yields (samples, channels) int16
    arrays at ``sample_rate`` (48 kHz stereo from aiortc's Opus decoder)."""

    kind = "audio"
    sample_rate = 48000

    def _to_array(self, frame: av.AudioFrame) -> np.ndarray:
        self.sample_rate = frame.sample_rate
        channels = len(frame.layout.channels)
        samples = frame.to_ndarray()
        if frame.format.is_planar:
            return np.ascontiguousarray(samples.T)
        return samples.reshape(-1, channels)


class RemoteDataTrack(RemoteTrack):
    """Messages from another participant: ``messages()`` and the ``track_message`` event.

    Messages that arrive before anyone iterates are kept (up to 1024) for the first
    ``messages()`` iterator.
    """

    kind = "data"

    def __init__(self, sid: str, name: str) -> None:
        super().__init__(sid, name)
        self._backlog: deque[str | bytes] = deque(maxlen=MAX_BUFFERED_MESSAGES)
        self._readers: list[asyncio.Queue[str | bytes | None]] = []
        self._ended = False

    def _deliver(self, message: str | bytes) -> None:
        if not self._readers:
            self._backlog.append(message)
        for queue in self._readers:
            queue.put_nowait(message)

    def _end(self) -> None:
        self._ended = True
        for queue in self._readers:
            queue.put_nowait(None)

    async def messages(self) -> AsyncGenerator[str | bytes, None]:
        """Every message in order, until unsubscribed."""
        queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        while self._backlog:
            queue.put_nowait(self._backlog.popleft())
        if self._ended:
            queue.put_nowait(None)
        self._readers.append(queue)
        try:
            while (message := await queue.get()) is not None:
                yield message
        finally:
            self._readers.remove(queue)
