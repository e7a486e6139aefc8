"""Publications: one participant's track, as the SFU receives it.

A media publication takes complete encoded frames from the publisher's
``RTCRtpReceiver`` (no decoding, see :mod:`.adapter`) and hands each one to
every subscription. Keyframe requests from subscribers are relayed to the
publisher as a PLI, at most one per :data:`PLI_INTERVAL` (as mediasoup does).
A data publication relays the messages of the publisher's data channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from aiortc import RTCDataChannel, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .. import _aiortc as adapter

if TYPE_CHECKING:
    from .recording import TrackRecorder

logger = logging.getLogger(__name__)

PLI_INTERVAL = 1.0
"""Seconds between two PLIs sent to one publisher for one publication."""
RECENT_FRAMES = 30
"""Frames kept from the last keyframe on (1 s at 30 fps, what a subscriber queue holds)."""


class EncodedFrame(NamedTuple):
    """One complete encoded frame and its RTP timestamp (from 0 at the first frame).

    A tuple, not a frozen dataclass: one is made per frame and per subscriber
    (its own timestamps), and a tuple is made in a third of the time.
    """

    data: bytes
    timestamp: int
    keyframe: bool


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether ``data`` (a depayloaded frame) can be decoded on its own."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # RFC 6386 section 9.1: P bit (bit 0 of the frame tag) is 0 for key frames.
        return len(data) > 0 and data[0] & 0x01 == 0
    if mime == "video/h264":
        # An IDR slice (NAL unit type 5) starts a decodable sequence.
        return any(nal[0] & 0x1F == 5 for nal in adapter.split_annexb(data))
    return True


SPEECH_LEVEL = 60
"""``ssrc-audio-level`` (-dBov) at or under which a packet counts as speech."""
SILENT_LEVEL = 127


class SpeechActivity:
    """A publication's speech over one interval, from each packet's ``ssrc-audio-level``.

    Every packet counts, not the latest one: a sample of the newest level every
    half second missed a voice between its samples (Chromium's fake microphone
    beeps 20 ms out of each 500, and the dominant speaker never switched to it).
    """

    __slots__ = ("loudness", "packets")

    def __init__(self) -> None:
        self.packets = 0
        self.loudness = 0

    def add(self, level: int) -> None:
        self.packets += 1
        if level <= SPEECH_LEVEL:
            self.loudness += SILENT_LEVEL - level

    def take(self) -> float:
        """The mean loudness above silence per packet since the last take (0: no speech)."""
        score = self.loudness / self.packets if self.packets else 0.0
        self.packets = self.loudness = 0
        return score


class FrameSink(Protocol):
    """A media subscription as its publication sees it (over RTP or a media socket)."""

    waiting_for_keyframe: bool

    def push(self, frame: EncodedFrame) -> bool: ...

    def end(self) -> None: ...


class MessageSink(Protocol):
    """A data subscription as its publication sees it."""

    def send(self, message: str | bytes) -> None: ...

    def end(self) -> None: ...


class MediaPublication:
    """A published audio or video track, forwarded frame by frame."""

    def __init__(self, publisher_sid: str, track_id: str, kind: str) -> None:
        self.publisher_sid = publisher_sid
        self.track_id = track_id
        self.kind = kind
        self.track_sid: str | None = None
        self.codec: RTCRtpCodecParameters | None = None
        self.enabled = True
        self.subscriptions: list[FrameSink] = []
        self.recorders: list[TrackRecorder] = []
        self.frames_received = 0
        self.frames_forwarded = 0
        self.keyframe_requests_sent = 0
        self.speech = SpeechActivity()
        """How loud the publisher spoke since the room last looked (audio only)."""
        self._transceiver: RTCRtpTransceiver | None = None
        self._last_pli = -PLI_INTERVAL
        self._pli_timer: asyncio.TimerHandle | None = None
        self._pli_tasks: set[asyncio.Future[bool]] = set()
        self._on_ready: list[Callable[[MediaPublication], None]] = []
        self._frame_source_keyframe: Callable[[], None] | None = None
        self.recent: list[EncodedFrame] = []
        """The last keyframe and the frames after it (video, at most RECENT_FRAMES)."""

    @property
    def ready(self) -> bool:
        """Whether the codec is negotiated, so subscribers can be offered it."""
        return self.codec is not None

    @property
    def clock_rate(self) -> int:
        return adapter.AUDIO_CLOCK_RATE if self.kind == "audio" else adapter.VIDEO_CLOCK_RATE

    def when_ready(self, callback: Callable[[MediaPublication], None]) -> None:
        """Call ``callback`` once the publisher's media is negotiated."""
        if self.ready:
            callback(self)
        else:
            self._on_ready.append(callback)

    def attach(self, transceiver: RTCRtpTransceiver, started: bool = False) -> None:
        """Start taking encoded frames from the publisher's receiver (``started``:
        one that carried another publication before)."""
        self._transceiver = transceiver
        self.codec = adapter.negotiated_codecs(transceiver)[0]
        if started:
            adapter.retarget_encoded_frames(transceiver.receiver, self._on_frame)
        else:
            adapter.tap_encoded_frames(transceiver.receiver, self._on_frame)
        adapter.count_nacks(receiver=transceiver.receiver)
        if self.kind == "audio":
            adapter.on_audio_level(transceiver.receiver, self._on_audio_level)
        callbacks, self._on_ready = self._on_ready, []
        for callback in callbacks:
            callback(self)

    def attach_frame_source(
        self, codec: RTCRtpCodecParameters, request_keyframe: Callable[[], None]
    ) -> None:
        """Take encoded frames from a source other than an RTP receiver (a media
        socket): it calls :meth:`receive_frame`, and ``request_keyframe`` asks it for
        a keyframe (rate-limited here, as a PLI is)."""
        self.codec = codec
        self._frame_source_keyframe = request_keyframe
        callbacks, self._on_ready = self._on_ready, []
        for callback in callbacks:
            callback(self)

    def receive_frame(self, data: bytes, timestamp: int) -> None:
        """One complete encoded frame from a frame source, RTP ``timestamp`` from 0."""
        assert self.codec is not None
        self._on_frame(self.codec, data, timestamp)

    def _on_frame(self, codec: RTCRtpCodecParameters, data: bytes, timestamp: int) -> None:
        self.frames_received += 1
        frame = EncodedFrame(data, timestamp, is_keyframe(codec.mimeType, data))
        if self.kind == "video":
            self._keep_for_new_subscribers(frame)
        if not self.enabled or not (self.subscriptions or self.recorders):
            return
        for recorder in self.recorders:
            recorder.push(codec, frame)
        for subscription in self.subscriptions:
            if subscription.push(frame):
                self.frames_forwarded += 1

    def _keep_for_new_subscribers(self, frame: EncodedFrame) -> None:
        """Keep the last keyframe and the frames since, while they are few: a new
        subscriber starts from them at once instead of waiting for a PLI's keyframe."""
        if frame.keyframe:
            self.recent = [frame]
        elif self.recent:
            if len(self.recent) < RECENT_FRAMES:
                self.recent.append(frame)
            else:
                self.recent = []  # too old a keyframe: new subscribers ask for one

    def _on_audio_level(self, level: int) -> None:
        self.speech.add(level)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per PLI_INTERVAL."""
        has_source = self._transceiver is not None or self._frame_source_keyframe is not None
        if self.kind != "video" or not has_source or self._pli_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_pli + PLI_INTERVAL - loop.time()
        if wait <= 0:
            self._send_pli()
        else:
            self._pli_timer = loop.call_later(wait, self._send_pli)

    def _send_pli(self) -> None:
        self._pli_timer = None
        if self._frame_source_keyframe is not None:
            self._last_pli = asyncio.get_running_loop().time()
            self.keyframe_requests_sent += 1
            self._frame_source_keyframe()
            return
        if self._transceiver is None:
            return
        self._last_pli = asyncio.get_running_loop().time()
        self.keyframe_requests_sent += 1
        task = asyncio.ensure_future(adapter.send_pli(self._transceiver.receiver))
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)

    def close(self) -> None:
        """Stop forwarding: every subscription is released, every recording ended."""
        for subscription in list(self.subscriptions):
            subscription.end()
        for recorder in self.recorders:
            recorder.end()
        self.recorders.clear()
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        self._transceiver = None
        self._frame_source_keyframe = None


class DataPublication:
    """A published data track: the publisher's data channel, relayed."""

    kind = "data"

    def __init__(self, publisher_sid: str, track_id: str) -> None:
        self.publisher_sid = publisher_sid
        self.track_id = track_id
        self.track_sid: str | None = None
        self.enabled = True
        self.channel: RTCDataChannel | None = None
        self.subscriptions: list[MessageSink] = []
        self.messages_received = 0

    @property
    def ready(self) -> bool:
        return True

    def when_ready(self, callback: Callable[[DataPublication], None]) -> None:
        callback(self)

    def attach(self, channel: RTCDataChannel) -> None:
        """Relay the messages of the publisher's ``channel``."""
        self.channel = channel
        channel.on("message", self.receive)

    def receive(self, message: str | bytes) -> None:
        """Relay one message of the publisher's (a data channel's, a media socket's)."""
        self.messages_received += 1
        if not self.enabled:
            return
        for subscription in self.subscriptions:
            subscription.send(message)

    def request_keyframe(self) -> None:
        return None

    def close(self) -> None:
        for subscription in list(self.subscriptions):
            subscription.end()


Publication = MediaPublication | DataPublication
