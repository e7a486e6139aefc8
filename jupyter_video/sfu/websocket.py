"""The WebSocket transport's peer: a participant whose media travels over a media socket.

A :class:`WebSocketPeer` stands where a :class:`~.peer.Peer` stands in its room,
with the same methods: it is negotiated with SDP (the media socket dialect of
:mod:`jupyter_video.signaling.mediasocket`: m-sections, mids, codecs, track
ids, no ICE), and its media arrives as complete encoded frames on the socket
the control plane relays here (:class:`MediaSocketListener`). Its frames feed
the same :class:`~.publication.MediaPublication` a WebRTC publisher's do, so
WebRTC subscribers, recorders and other socket peers get them unchanged; the
frames of every publication it subscribes to reach it as they are (no decode,
no encode).

Backpressure (docs/media_socket.md): one writer per socket, fed by queues the
media path only appends to, so one slow socket never blocks forwarding:

- control first, then audio, then data, then video, one video fragment at a
  time, so audio and data pass a keyframe being sent;
- audio older than :data:`AUDIO_BUDGET` is dropped (never more than ~100 ms
  queued);
- a video subscription whose queue is older than :data:`VIDEO_BUDGET` (or over
  :data:`VIDEO_BUDGET_BYTES`) drops it and waits for the next keyframe, which
  it asks the publication for (at most one request per second per publication:
  :data:`~.publication.PLI_INTERVAL`);
- a socket that takes nothing for :data:`STALL_TIMEOUT` fails the peer with
  53405 (the control plane tells the participant and lets it go).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from ..errors import MediaError
from ..signaling import mediasocket as ms
from .interface import (
    ConnectionStateChanged,
    DataChannelOpened,
    Event,
    MediaSocketAddress,
    PeerState,
    RenegotiationNeeded,
    TrackReceived,
    relay_frame,
    relay_read,
)
from .publication import DataPublication, EncodedFrame, MediaPublication, is_keyframe
from .rtp.packet import Packet
from .socket_media_signaling import SOCKET_QUALITY_CHANNELS, SocketMediaSignaling

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

AUDIO_BUDGET = 0.1
"""Seconds audio may wait in a socket's queue before it is dropped."""
VIDEO_BUDGET = 0.5
"""Seconds a video subscription's oldest queued frame may wait before the queue is
dropped and the subscription waits for a keyframe."""
VIDEO_BUDGET_BYTES = 2 * 1024 * 1024
DATA_BUDGET_BYTES = 8 * 1024 * 1024
"""Bytes of data messages a socket may hold; past it the oldest are dropped (and the
socket stalls into 53405 soon after)."""
STALL_TIMEOUT = 5.0
"""Seconds a socket may take nothing while media waits, before the peer fails (53405)."""
SOCKET_TIMEOUT = 10.0
"""Seconds a negotiated peer may be without a media socket before it fails (53405)."""
REPORT_INTERVAL = 1.0
"""Seconds between two receiver reports to the participant about what it publishes."""
WRITE_BUFFER = 32 * 1024
"""Bytes written ahead to the relay before the writer waits: little, so that the
queues here (and their policy) hold what waits, not socket buffers."""
MIN_WINDOW = 6 * 1024
"""Bytes a socket may have in flight (sent, not yet acked by the participant) at
least; more when its measured delivery rate allows (:data:`WINDOW_SECONDS` of it).
TCP buffers grow to megabytes, seconds on a slow link: this keeps what waits here."""
WINDOW_SECONDS = 0.15
RATE_MEMORY = 2.0
"""Seconds over which the highest delivery rate is remembered (BBR's max filter)."""
RATE_SPAN = 0.25
"""Seconds of acks one delivery-rate sample spans at least."""
HEADROOM = 0.7
"""Share of a limiting link's delivery rate a publisher's media may take (keyframes
are several frames' worth: what is left lets them pass without a queue)."""
AUDIO_SHARE = 60_000
"""Bits/s a link's audio takes (32 kbit/s Opus, and 50 messages a second of headers)."""
MAX_BITRATE = 1_500_000
PROBE_AFTER = 5.0
"""Seconds without a limiting subscriber before a publisher may send more."""
"""Bits/s a socket publisher is told it may send when nothing limits it."""


def _now_ms() -> int:
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


def codec_parameters(codec: ms.Codec) -> RTCRtpCodecParameters:
    """The publication codec for a media socket codec."""
    parameters: dict[str, str | int | None] = {}
    for item in codec.fmtp.split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            parameters[key] = int(value) if value.isdigit() else value
    return RTCRtpCodecParameters(
        mimeType=codec.mime_type,
        clockRate=codec.clock_rate,
        channels=codec.channels or None,
        payloadType=codec.payload_type,
        parameters=parameters,
    )


def socket_codec(parameters: RTCRtpCodecParameters) -> ms.Codec:
    """The media socket codec a subscriber is offered for a publication's codec."""
    name = parameters.mimeType.split("/", 1)[1]
    fmtp = ";".join(f"{k}={v}" for k, v in parameters.parameters.items() if v is not None)
    return ms.Codec(parameters.payloadType or 96, name, parameters.clockRate,
                    parameters.channels or 0, fmtp)


# ------------------------------------------------------------------- sending


class MediaSocketSender:
    """The socket's one writer and the queues in front of it (module docstring)."""

    def __init__(self, on_stall: Callable[[], None]) -> None:
        self._on_stall = on_stall
        self._control: collections.deque[str] = collections.deque()
        self._audio: collections.deque[tuple[float, bytes]] = collections.deque()
        self._data: collections.deque[bytes] = collections.deque()
        self._data_bytes = 0
        self.data_dropped = 0
        self._video: dict[int, collections.deque[tuple[float, list[bytes]]]] = {}
        self._video_bytes: dict[int, int] = {}
        self._turns: collections.deque[int] = collections.deque()  # video round robin
        self._fragments: collections.deque[bytes] = collections.deque()  # frame being sent
        self._writer: asyncio.StreamWriter | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.audio_dropped = 0
        self.messages_sent = 0
        # Flow control (only once the participant acks; a client that never does
        # is limited by TCP alone).
        self.bytes_sent = 0
        self.bytes_acked = 0
        self.acking = False
        self._rates: collections.deque[tuple[float, float]] = collections.deque()
        self._acks: collections.deque[tuple[float, int]] = collections.deque()
        self._closed_since: float | None = None  # the window is closed since, no ack moved it
        self.window_limited_at = -RATE_MEMORY
        """When the window last held the writer back (the link, not the media, limited)."""

    def attach(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        self._wake()

    def detach(self) -> None:
        self._writer = None
        self._fragments.clear()  # the next socket starts on whole frames
        self._control.clear()  # it is told the current announcements again

    def close(self) -> None:
        self.detach()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # The media path calls these; none of them waits.

    def send_control(self, text: str) -> None:
        self._control.append(text)
        self._wake()

    def send_audio(self, messages: list[bytes]) -> None:
        now = time.monotonic()
        self._expire_audio(now)
        for message in messages:
            self._audio.append((now, message))
        self._wake()

    def send_data(self, message: bytes) -> None:
        self._data.append(message)
        self._data_bytes += len(message)
        while self._data_bytes > DATA_BUDGET_BYTES:
            self._data_bytes -= len(self._data.popleft())
            self.data_dropped += 1
        self._wake()

    def send_video(self, channel: int, messages: list[bytes]) -> None:
        queue = self._video.get(channel)
        if queue is None:
            queue = self._video[channel] = collections.deque()
            self._video_bytes[channel] = 0
            self._turns.append(channel)
        queue.append((time.monotonic(), messages))
        self._video_bytes[channel] += sum(len(m) for m in messages)
        self._wake()

    def video_over_budget(self, channel: int) -> bool:
        """Whether ``channel``'s queued video waited too long or holds too much."""
        queue = self._video.get(channel)
        if not queue:
            return False
        return (time.monotonic() - queue[0][0] > VIDEO_BUDGET
                or self._video_bytes[channel] > VIDEO_BUDGET_BYTES)

    def drop_video(self, channel: int) -> int:
        """Drop ``channel``'s queued frames (not the one being sent); how many."""
        queue = self._video.get(channel)
        if not queue:
            return 0
        dropped = len(queue)
        queue.clear()
        self._video_bytes[channel] = 0
        return dropped

    def acked(self, total: int, at_ms: float | None = None) -> None:
        """The participant has received ``total`` binary bytes of this socket, by its
        clock ``at_ms`` (acks may arrive bunched: the rate is taken from its clock,
        over spans of at least RATE_SPAN)."""
        now = time.monotonic()
        total = min(total, self.bytes_sent)
        clock = at_ms / 1000 if at_ms is not None else now
        self._acks.append((clock, total))
        while len(self._acks) > 2 and clock - self._acks[1][0] >= RATE_SPAN:
            self._acks.popleft()
        first_clock, first_total = self._acks[0]
        if clock - first_clock >= RATE_SPAN and total > first_total:
            self._rates.append((now, (total - first_total) / (clock - first_clock)))
        while self._rates and now - self._rates[0][0] > RATE_MEMORY:
            self._rates.popleft()
        if total > self.bytes_acked:
            self._closed_since = None  # progress: the window is judged anew
        self.bytes_acked = max(self.bytes_acked, total)
        self.acking = True
        self._wake()

    @property
    def delivery_rate(self) -> float | None:
        """The highest rate (bytes/s) acks showed lately, None before any."""
        return max((rate for _, rate in self._rates), default=None)

    def _window(self) -> float:
        rate = self.delivery_rate
        return max(MIN_WINDOW, rate * WINDOW_SECONDS) if rate is not None else MIN_WINDOW * 4

    def _window_open(self) -> bool:
        if not self.acking or self.bytes_sent - self.bytes_acked < self._window():
            self._closed_since = None
            return True
        self.window_limited_at = time.monotonic()
        if self._closed_since is None:
            self._closed_since = self.window_limited_at
        return False

    def forget_channel(self, channel: int) -> None:
        self._video.pop(channel, None)
        self._video_bytes.pop(channel, None)
        with contextlib.suppress(ValueError):
            self._turns.remove(channel)

    # The writer.

    def _expire_audio(self, now: float) -> None:
        while self._audio and now - self._audio[0][0] > AUDIO_BUDGET:
            self._audio.popleft()
            self.audio_dropped += 1

    def _next(self) -> str | bytes | None:
        if self._control:
            return self._control.popleft()
        self._expire_audio(time.monotonic())
        if self._audio:  # audio first, past the window too: it is a tenth of a slow link
            return self._audio.popleft()[1]
        if not self._window_open():
            return None  # an ack wakes the writer
        if self._data:
            message = self._data.popleft()
            self._data_bytes -= len(message)
            return message
        if self._fragments:
            return self._fragments.popleft()
        for _ in range(len(self._turns)):
            channel = self._turns[0]
            self._turns.rotate(-1)
            queue = self._video[channel]
            if queue:
                _, messages = queue.popleft()
                self._video_bytes[channel] -= sum(len(m) for m in messages)
                self._fragments.extend(messages)
                return self._fragments.popleft()
        return None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _run(self) -> None:
        while True:
            writer = self._writer
            message = self._next() if writer is not None else None
            if writer is None or message is None:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    if writer is not None and self.acking and not self._window_open():
                        # Waiting for an ack: none for STALL_TIMEOUT is a stalled reader
                        # (new media waking the writer meanwhile does not reset that).
                        assert self._closed_since is not None
                        left = self._closed_since + STALL_TIMEOUT - time.monotonic()
                        await asyncio.wait_for(self._waiter, max(0.0, left))
                    else:
                        await self._waiter
                except asyncio.TimeoutError:
                    self._task = None
                    self._on_stall()
                    return
                finally:
                    self._waiter = None
                continue
            try:
                writer.write(relay_frame(message))
                self.messages_sent += 1
                if isinstance(message, bytes):
                    self.bytes_sent += len(message)
                if writer.transport.get_write_buffer_size() > WRITE_BUFFER:
                    await asyncio.wait_for(writer.drain(), STALL_TIMEOUT)
            except asyncio.TimeoutError:
                self._task = None
                self._on_stall()
                return
            except (ConnectionError, RuntimeError):
                if self._writer is writer:
                    self.detach()


# ------------------------------------------------------------------ subscriptions


class SocketSubscription:
    """One audio or video publication forwarded to a socket peer on one channel."""

    wants_frames = True
    """Whole encoded frames: the publication assembles them from its packets."""

    def __init__(self, subscriber_sid: str, publication: MediaPublication,
                 peer: WebSocketPeer) -> None:
        self.subscriber_sid = subscriber_sid
        self.publication = publication
        self.peer = peer
        self.section: _SocketSection | None = None
        self.channel: int | None = None
        self.waiting_for_keyframe = publication.kind == "video"
        self.frames_forwarded = 0
        self.frames_dropped = 0
        self.frames_dropped_for_backpressure = 0
        """Frames queued and dropped because the socket did not drain (the
        downlink's loss for its network quality, socket_media_signaling.py)."""
        self.switched_off = False
        self._sequence = 0

    def start(self, channel: int) -> None:
        """Forward on ``channel`` (announced to the participant), from a keyframe."""
        self.channel = channel
        if self.switched_off:
            return  # switch_on starts it
        self._forward()

    def _forward(self) -> None:
        self.waiting_for_keyframe = self.publication.kind == "video"
        self.publication.subscriptions.append(self)
        recent = list(self.publication.recent)
        if recent:
            for frame in recent:  # starts on the kept keyframe, no request round trip
                self.push(frame)
        else:
            self.publication.request_keyframe()

    def send_packet(self, packet: Packet, now: int, ntp: int) -> bool:
        return False  # frames only (wants_frames)

    def bandwidth_wanted(self, now: int) -> int | None:
        return None  # the WebSocket's own flow control paces it

    def resync(self) -> None:
        self.waiting_for_keyframe = self.publication.kind == "video"

    def push(self, frame: EncodedFrame) -> bool:
        """Queue ``frame`` for the participant; False when it was dropped."""
        channel = self.channel
        if channel is None or not frame.data:
            return False
        sender = self.peer.sender
        if self.publication.kind == "audio":
            self._sequence += 1
            sender.send_audio(ms.frame_messages(
                channel, self._sequence, frame.timestamp, True, frame.data, _now_ms()))
            self.frames_forwarded += 1
            return True
        if not self.waiting_for_keyframe and sender.video_over_budget(channel):
            lost = sender.drop_video(channel)
            self.frames_dropped += lost
            self.frames_dropped_for_backpressure += lost
            self.waiting_for_keyframe = True
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                self.publication.request_keyframe()
                return False
            self.waiting_for_keyframe = False
        self._sequence += 1
        sender.send_video(channel, ms.frame_messages(
            channel, self._sequence, frame.timestamp, frame.keyframe, frame.data, _now_ms()))
        self.frames_forwarded += 1
        return True

    def switch_off(self) -> None:
        """Out of the publication's fan-out: its frames cost this subscriber nothing."""
        self.switched_off = True
        if self in self.publication.subscriptions:
            self.publication.subscriptions.remove(self)
        if self.channel is not None:
            self.peer.sender.drop_video(self.channel)  # what is queued is stale by now

    def switch_on(self) -> None:
        """Back in the fan-out, from the kept keyframe (or the next, asked for)."""
        self.switched_off = False
        if self.channel is not None and self not in self.publication.subscriptions:
            self._forward()

    def end(self) -> None:
        if self in self.publication.subscriptions:
            self.publication.subscriptions.remove(self)
        if self.channel is not None:
            self.peer.sender.forget_channel(self.channel)
        self.channel = None


class SocketDataSubscription:
    """A data publication relayed to a socket peer on one data channel."""

    def __init__(self, subscriber_sid: str, publication: DataPublication,
                 peer: WebSocketPeer, channel: int) -> None:
        self.subscriber_sid = subscriber_sid
        self.publication = publication
        self.peer = peer
        self.channel = channel
        publication.subscriptions.append(self)

    def send(self, message: str | bytes) -> None:
        self.peer.sender.send_data(ms.data_message(self.channel, message))

    def end(self) -> None:
        if self in self.publication.subscriptions:
            self.publication.subscriptions.remove(self)


# ------------------------------------------------------------------ the peer


class _SocketSection:
    """What one m-section carries: the participant's publication, our subscription."""

    def __init__(self, kind: str, mid: str) -> None:
        self.kind = kind
        self.mid = mid
        self.codec: ms.Codec | None = None
        self.rejected = False
        self.publication: MediaPublication | None = None
        self.subscription: SocketSubscription | None = None


class _Inbound:
    """A channel the participant sends frames on, and what its receiver report says."""

    def __init__(self, mid: str) -> None:
        self.mid = mid
        self.first_timestamp: int | None = None
        self.bytes = 0
        self.frames = 0
        self.delay_sum = 0
        self.delay_mean: float | None = None
        self.reported_frames = 0  # the last report's frames and delay trend
        self.reported_trend_ms = 0.0
        self.bitrate: int | None = None  # what the participant was last told it may send
        self.limited_at = 0.0


class WebSocketPeer:
    """A participant's media socket peer connection, its publications and subscriptions."""

    def __init__(self, participant_sid: str, room: Room, report: Callable[[Event], None]) -> None:
        self.participant_sid = participant_sid
        self.room = room
        self.state = PeerState.NEW
        self.subscriptions: dict[str, SocketSubscription | SocketDataSubscription] = {}
        self.sender = MediaSocketSender(self._on_stall)
        self.receiver_reports: dict[int, dict[str, Any]] = {}
        """The participant's last receiver report per subscription channel."""
        self.key = secrets.token_urlsafe(18)
        """The participant's credential for its media socket, in our descriptions."""
        self._report = report
        self._sections: list[_SocketSection] = []
        self._version = 0
        self._changed = False  # subscriptions changed since our last offer
        self._channels = itertools.count(1)
        self._announced: dict[int, str] = {}  # our channel -> its subscribe/data_channel
        self._inbound: dict[int, _Inbound] = {}  # participant's media channels
        self._data_in: dict[int, DataPublication] = {}
        self._assembler = ms.FrameAssembler()
        self._active_speaker: int | None = None
        self.media_signaling: SocketMediaSignaling | None = None
        """The quality channels, once granted (socket_media_signaling.py)."""
        self._stream: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._reports: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------- state machine

    def _move_to(self, state: PeerState, error_code: int | None = None) -> None:
        """The one place the peer's state changes; reports every change."""
        if state == self.state or self.state in (PeerState.CLOSED, PeerState.FAILED):
            return
        self.state = state
        self._report(ConnectionStateChanged(self.participant_sid, state, error_code))

    def _watch(self) -> None:
        """Fail unless a socket attaches within SOCKET_TIMEOUT."""
        if self._watchdog is None and self._stream is None:
            self._watchdog = asyncio.get_running_loop().call_later(
                SOCKET_TIMEOUT, self._fail, ms.MEDIA_FAILED,
                f"no media socket for {SOCKET_TIMEOUT:.0f} s: open {{base_url}}video/media "
                "with the signaling session")

    def _fail(self, code: int, message: str) -> None:
        """Tell the participant (when the socket still takes it), close, report FAILED."""
        logger.info("media socket of %s failed: %s %s", self.participant_sid, code, message)
        if self._stream is not None:
            # Ahead of whatever is queued: the relay closes the socket with its code.
            with contextlib.suppress(Exception):
                self._stream.write(
                    relay_frame(ms.control_message("error", code=code, message=message)))
        self._detach()
        self._move_to(PeerState.FAILED, code)

    def _on_stall(self) -> None:
        self._fail(ms.MEDIA_FAILED, f"the media socket took nothing for {STALL_TIMEOUT:.0f} s")

    # ----------------------------------------------------------- negotiation

    def _section(self, kind: str, mid: str) -> _SocketSection:
        for section in self._sections:
            if section.mid == mid:
                return section
        section = _SocketSection(kind, mid)
        self._sections.append(section)
        return section

    async def apply_offer(self, sdp: str) -> str:
        """Apply the participant's offer and return our answer."""
        if not ms.is_media_socket_sdp(sdp):
            raise MediaError(53403, "This participant negotiated a media socket: offer "
                                    "media socket SDP (x-jupyter-video-transport), not ICE")
        try:
            offered = ms.parse_sections(sdp)
        except ValueError as exc:
            raise MediaError(53403, f"Server is unable to apply a remote offer: {exc}") from exc
        answer = []
        for media in offered:
            section = self._section(media.kind, media.mid)
            if media.kind == "application":
                answer.append(ms.Section("application", media.mid, rejected=media.rejected))
                continue
            if media.kind not in ("audio", "video") or media.rejected or not media.codecs:
                section.rejected = True
                answer.append(ms.Section(media.kind, media.mid, "inactive", [], rejected=True))
                continue
            section.codec = media.codecs[0]
            sends = media.direction in ("sendrecv", "sendonly") and media.msid is not None
            if sends and media.msid is not None:
                self._publish(section, media.msid)
            else:
                section.publication = None
            answer.append(self._answer_section(section, media.direction))
        self._watch()
        self._version += 1
        return ms.write_sdp(answer, self._version, credential=(self.participant_sid, self.key))

    def _publish(self, section: _SocketSection, msid: tuple[str, str]) -> None:
        track_id = msid[1]
        if section.publication is not None and section.publication.track_id == track_id:
            return
        assert section.codec is not None
        publication = self.room.media_publication(self.participant_sid, track_id, section.kind)
        if publication.codec is None:
            publication.attach_frame_source(
                codec_parameters(section.codec), lambda: self._ask_keyframe(publication))
        section.publication = publication
        self._report(TrackReceived(
            participant_sid=self.participant_sid, track_id=track_id,
            kind=section.kind,  # type: ignore[arg-type]
            stream_id=msid[0], mid=section.mid, codec=publication.codec.mimeType
            if publication.codec else None))

    def _answer_section(self, section: _SocketSection, offered: str) -> ms.Section:
        subscription = section.subscription
        sending = subscription is not None
        assert section.codec is not None
        return ms.Section(
            section.kind, section.mid, ms.answer_direction(offered, sending), [section.codec],
            msid=(subscription.publication.publisher_sid, subscription.publication.track_id)
            if subscription is not None else None)

    async def create_offer(self) -> str:
        """An offer carrying every subscription (new ones get an m-section)."""
        for waiting in self.subscriptions.values():
            if (isinstance(waiting, SocketSubscription) and waiting.section is None
                    and waiting.publication.ready):
                self._place(waiting)
        sections = []
        for section in self._sections:
            if section.kind == "application" or section.rejected or section.codec is None:
                sections.append(ms.Section(section.kind, section.mid, "inactive", [],
                                           rejected=section.kind != "application"))
                continue
            subscription = section.subscription
            sending, receiving = subscription is not None, section.publication is not None
            direction = {(True, True): "sendrecv", (True, False): "sendonly",
                         (False, True): "recvonly", (False, False): "inactive"}[
                (sending, receiving)]
            sections.append(ms.Section(
                section.kind, section.mid, direction, [section.codec],
                msid=(subscription.publication.publisher_sid, subscription.publication.track_id)
                if subscription is not None else None))
        self._changed = False
        self._version += 1
        return ms.write_sdp(sections, self._version, credential=(self.participant_sid, self.key))

    def _place(self, subscription: SocketSubscription) -> None:
        """Give ``subscription`` an m-section: a free one of its kind and codec, or a new one."""
        publication = subscription.publication
        assert publication.codec is not None
        codec = socket_codec(publication.codec)
        for section in self._sections:
            if (section.subscription is None and section.kind == publication.kind
                    and not section.rejected and section.codec is not None
                    and section.codec.name.lower() == codec.name.lower()):
                break
        else:
            used = {s.mid for s in self._sections}
            mid = next(str(n) for n in itertools.count(len(self._sections)) if str(n) not in used)
            section = self._section(publication.kind, mid)
            section.codec = codec
        section.subscription = subscription
        subscription.section = section

    async def apply_answer(self, sdp: str) -> None:
        """Apply the participant's answer: subscriptions it accepted start."""
        try:
            answered = {s.mid: s for s in ms.parse_sections(sdp)}
        except ValueError as exc:
            raise MediaError(53403, f"Server is unable to apply a remote answer: {exc}") from exc
        for section in self._sections:
            subscription = section.subscription
            media = answered.get(section.mid)
            if subscription is None or subscription.channel is not None or media is None:
                continue
            if media.rejected or media.direction not in ("recvonly", "sendrecv"):
                continue
            self._start(subscription, section)
        if self.needs_negotiation():
            self._report(RenegotiationNeeded(self.participant_sid))

    def _start(self, subscription: SocketSubscription, section: _SocketSection) -> None:
        channel = next(self._channels)
        publication = subscription.publication
        assert section.codec is not None
        self._announce(channel, ms.control_message(
            "subscribe", channel=channel, mid=section.mid, track_sid=publication.track_sid,
            track_id=publication.track_id, kind=publication.kind, codec=section.codec.name))
        subscription.start(channel)

    def _announce(self, channel: int, text: str) -> None:
        self._announced[channel] = text
        if text.startswith('{"type":"data_channel"'):
            self._assembler.opened_data_channels.add(channel)
        self.sender.send_control(text)

    async def add_ice_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A media socket has no ICE: candidates are ignored."""

    def needs_negotiation(self) -> bool:
        return self._changed or self.pending_subscriptions()

    def pending_subscriptions(self) -> bool:
        return any(
            isinstance(s, SocketSubscription) and s.section is None and s.publication.ready
            for s in self.subscriptions.values()
        )

    # ----------------------------------------------------------- subscribing

    def subscribe(self, publication: MediaPublication | DataPublication) -> bool:
        """Start forwarding ``publication`` here; True when an offer is needed."""
        assert publication.track_sid is not None
        if publication.track_sid in self.subscriptions:
            return False
        if isinstance(publication, DataPublication):
            channel = next(self._channels)
            source = publication.channel
            self._announce(channel, ms.control_message(
                "data_channel", channel=channel, label=publication.track_id,
                ordered=source.ordered if source is not None else True))
            self.subscriptions[publication.track_sid] = SocketDataSubscription(
                self.participant_sid, publication, self, channel)
            return False
        self.subscriptions[publication.track_sid] = SocketSubscription(
            self.participant_sid, publication, self)
        return publication.ready

    def unsubscribe(self, track_sid: str) -> bool:
        """Stop forwarding ``track_sid`` here; True when an offer is needed."""
        subscription = self.subscriptions.pop(track_sid, None)
        if subscription is None:
            return False
        channel = subscription.channel
        subscription.end()
        if channel is not None:
            self._announced.pop(channel, None)
            kind = "unsubscribe" if isinstance(subscription, SocketSubscription) else None
            if kind is not None:
                self.sender.send_control(ms.control_message(kind, channel=channel))
        if isinstance(subscription, SocketDataSubscription):
            return False
        section = subscription.section
        if section is None:
            return False
        section.subscription = None
        self._changed = True
        return True

    # ----------------------------------------------------------- media signaling

    def grant_active_speaker(self, label: str) -> bool:
        """Open the ``active_speaker`` channel (a data channel on the socket)."""
        channel = next(self._channels)
        self._active_speaker = channel
        self._announce(channel, ms.control_message("data_channel", channel=channel, label=label))
        return False

    def open_data_channel(self, label: str) -> int:
        """Open a data channel of the SFU's on the socket; its number."""
        channel = next(self._channels)
        self._announce(channel, ms.control_message("data_channel", channel=channel, label=label))
        return channel

    def grant_quality(self, channel: str, label: str) -> bool:
        """Open the MSP quality channel ``channel`` (labelled ``label``) on the
        socket; False when this peer has none of that name."""
        if channel not in SOCKET_QUALITY_CHANNELS:
            return False
        if self.media_signaling is None:
            self.media_signaling = SocketMediaSignaling(self)
        self.media_signaling.grant(channel, label)
        return True

    def inbound_counts(self) -> list[tuple[str, int, float]]:
        """(kind, frames, one-way delay trend in ms) of each channel the participant
        publishes on, as the last receiver report said."""
        out = []
        for inbound in self._inbound.values():
            section = next((s for s in self._sections if s.mid == inbound.mid), None)
            if section is not None:
                out.append((section.kind, inbound.reported_frames, inbound.reported_trend_ms))
        return out

    def tell_active_speaker(self, participant_sid: str | None) -> None:
        if self._active_speaker is not None and self._stream is not None:
            self.sender.send_data(ms.data_message(self._active_speaker, json.dumps(
                {"type": "active_speaker", "participant": participant_sid})))

    # ----------------------------------------------------------- the socket

    def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Take media from and to a (new) relayed socket."""
        if self.state in (PeerState.CLOSED, PeerState.FAILED):
            writer.close()
            return
        self._detach()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._stream = writer
        self._assembler = ms.FrameAssembler()
        self._assembler.opened_data_channels = {
            c for c, text in self._announced.items() if text.startswith('{"type":"data_channel"')}
        self._inbound.clear()
        self._data_in.clear()
        self.sender.detach()
        self.sender.send_control(ms.control_message("welcome", version=ms.VERSION))
        self.sender.attach(writer)
        for text in self._announced.values():
            self.sender.send_control(text)
        for subscription in self.subscriptions.values():
            if isinstance(subscription, SocketSubscription) and subscription.channel is not None:
                subscription.waiting_for_keyframe = subscription.publication.kind == "video"
                subscription.publication.request_keyframe()
        if self._active_speaker is not None:
            self.tell_active_speaker(self.room.dominant_speaker)
        self._reader = asyncio.ensure_future(self._read(reader, writer))
        self._reports = asyncio.ensure_future(self._send_reports())
        self._move_to(PeerState.CONNECTED)

    def _detach(self) -> None:
        for task in (self._reader, self._reports):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._reader = self._reports = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.sender.detach()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (message := await relay_read(reader)) is not None:
                if isinstance(message, str):
                    self._on_control(ms.parse_control(message, ms.CLIENT_CONTROL))
                else:
                    self._on_binary(message)
        except ms.MediaSocketError as error:
            self._fail(error.code, error.message)
            return
        except (ConnectionError, ValueError) as exc:
            logger.info("media socket of %s ended: %s", self.participant_sid, exc)
        if self._stream is writer:  # closed by the participant: it may open another
            self._reader = None
            self._detach()
            self._move_to(PeerState.CONNECTING)
            self._watch()

    def _on_binary(self, message: bytes) -> None:
        item = self._assembler.take(message)
        if isinstance(item, ms.Frame):
            self._on_frame(item)
        elif item is not None and not item.answer:
            publication = self._data_in.get(item.channel)
            if publication is not None:
                publication.receive(item.message)
        elif item is not None and self.media_signaling is not None \
                and self.media_signaling.owns(item.channel):
            self.media_signaling.on_message(item.channel, item.message)
        # Other answers: twilio-video's "ready" on a data track's channel.

    def _on_frame(self, frame: ms.Frame) -> None:
        inbound = self._inbound[frame.channel]
        inbound.bytes += len(frame.data)
        inbound.frames += 1
        inbound.delay_sum += (_now_ms() - frame.sent_ms) & 0xFFFFFFFF
        publication = next((s.publication for s in self._sections if s.mid == inbound.mid), None)
        if publication is None or publication.codec is None:
            return  # its offer is not applied yet
        if publication.kind == "video":
            keyframe = frame.keyframe and is_keyframe(publication.codec.mimeType, frame.data)
            if frame.keyframe != keyframe:
                raise ms.MediaSocketError(
                    ms.INVALID_MESSAGE, f"channel {frame.channel}: frame {frame.sequence} is "
                    "flagged as a keyframe but is not one")
        elif frame.audio_level < 127:
            publication.speech.add(frame.audio_level)  # as ssrc-audio-level does
        if inbound.first_timestamp is None:
            inbound.first_timestamp = frame.timestamp
        publication.receive_frame(
            frame.data, (frame.timestamp - inbound.first_timestamp) & 0xFFFFFFFF)

    def _on_control(self, body: dict[str, Any]) -> None:
        kind = body["type"]
        channel = int(body.get("channel", 0))
        if kind == "publish":
            self._inbound[channel] = _Inbound(str(body["mid"]))
            self._assembler.media_channels.add(channel)
        elif kind == "unpublish":
            self._inbound.pop(channel, None)
            self._assembler.forget(channel)
        elif kind == "data_channel":
            publication = self.room.data_publication(self.participant_sid, str(body["label"]))
            self._data_in[channel] = publication
            self._assembler.data_channels.add(channel)
            self._report(DataChannelOpened(self.participant_sid, str(body["label"])))
        elif kind == "keyframe_request":
            for subscription in self.subscriptions.values():
                if isinstance(subscription, SocketSubscription) and subscription.channel == channel:
                    subscription.publication.request_keyframe()
        elif kind == "receiver_report":
            self.receiver_reports[channel] = body
        elif kind == "ack":
            at = body.get("ms")
            clock = float(at) if isinstance(at, int | float) else None
            self.sender.acked(int(body["bytes"]), clock)

    def _ask_keyframe(self, publication: MediaPublication) -> None:
        for channel, inbound in self._inbound.items():
            section = next((s for s in self._sections if s.mid == inbound.mid), None)
            if section is not None and section.publication is publication:
                self.sender.send_control(ms.control_message("keyframe_request", channel=channel))

    async def _send_reports(self) -> None:
        """A receiver report per published channel each second: bytes, frames and how
        the one-way delay moved (its mean against the last second's: > 0 is a queue
        building up somewhere)."""
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            for channel, inbound in self._inbound.items():
                if not inbound.frames:
                    continue
                mean = inbound.delay_sum / inbound.frames
                trend = mean - inbound.delay_mean if inbound.delay_mean is not None else 0.0
                self.sender.send_control(ms.control_message(
                    "receiver_report", channel=channel, bytes=inbound.bytes,
                    frames=inbound.frames, delay_trend_ms=round(trend, 1)))
                inbound.delay_mean = mean
                inbound.reported_frames, inbound.reported_trend_ms = inbound.frames, trend
                inbound.bytes = inbound.frames = inbound.delay_sum = 0
            self._send_bitrate_hints()

    def _send_bitrate_hints(self) -> None:
        """Tell the participant what its video may send: what the slowest socket
        subscriber's link delivered while it was the limit (less audio and some
        headroom), and more again once none was for PROBE_AFTER (x1.25)."""
        now = time.monotonic()
        for channel, inbound in self._inbound.items():
            section = next((s for s in self._sections if s.mid == inbound.mid), None)
            publication = section.publication if section is not None else None
            if publication is None or publication.kind != "video":
                continue
            limits = []
            for subscription in publication.subscriptions:
                if not isinstance(subscription, SocketSubscription):
                    continue
                sender = subscription.peer.sender
                rate = sender.delivery_rate
                if rate is not None and now - sender.window_limited_at < RATE_MEMORY:
                    limits.append(HEADROOM * rate * 8 - AUDIO_SHARE)
            previous = inbound.bitrate or MAX_BITRATE
            if limits:
                inbound.limited_at = now
                wanted = max(60_000.0, min(limits))
                change = wanted < 0.85 * previous
            else:  # probe upwards, slowly: each new bitrate costs the encoder a keyframe
                wanted = min(MAX_BITRATE, previous * 1.25)
                change = inbound.bitrate is not None and now - inbound.limited_at > PROBE_AFTER
                if change:
                    inbound.limited_at = now
            if change and int(wanted) != inbound.bitrate:
                inbound.bitrate = int(wanted)
                self.sender.send_control(ms.control_message(
                    "bitrate", channel=channel, bitrate=inbound.bitrate))

    # ----------------------------------------------------------- closing

    async def close(self) -> None:
        """End every subscription and the socket."""
        for subscription in self.subscriptions.values():
            subscription.end()
        self.subscriptions.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.media_signaling is not None:
            self.media_signaling.close()
        self._detach()
        self.sender.close()
        self._move_to(PeerState.CLOSED)


# ------------------------------------------------------------------ the listener


class MediaSocketListener:
    """The Unix socket the control plane relays media sockets to, one key per socket."""

    def __init__(self) -> None:
        self._directory: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._keys: dict[str, WebSocketPeer] = {}

    async def address_for(self, peer: WebSocketPeer) -> MediaSocketAddress:
        """Where to relay ``peer``'s next socket (its key is good for one connection)."""
        if self._server is None:
            self._directory = tempfile.mkdtemp(prefix="jupyter-video-media-")
            path = os.path.join(self._directory, "media.sock")
            self._server = await asyncio.start_unix_server(self._connected, path)
            os.chmod(path, 0o600)
        for key in [k for k, p in self._keys.items() if p is peer]:
            del self._keys[key]
        key = secrets.token_hex(16)
        self._keys[key] = peer
        assert self._directory is not None
        return MediaSocketAddress(os.path.join(self._directory, "media.sock"), key, peer.key)

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WRITE_BUFFER)
        try:
            key = await asyncio.wait_for(relay_read(reader), SOCKET_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            key = None
        peer = self._keys.pop(key, None) if isinstance(key, str) else None
        if peer is None:
            writer.close()
            return
        peer.attach(reader, writer)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._directory is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._directory, "media.sock"))
                os.rmdir(self._directory)
            self._directory = None
