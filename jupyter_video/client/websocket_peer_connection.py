"""A peer connection whose media travels over the server's media socket, not ICE.

:class:`WebSocketPeerConnection` stands in for aiortc's ``RTCPeerConnection``
in :class:`~.peer_connection.PeerConnection` (``connect(..., transport=
"websocket")``), as the browser's ``WebSocketPeerConnection`` stands in for
``RTCPeerConnection`` in twilio-video.js: the same offers and answers over
signaling (media socket SDP: m-sections, mids, codecs, ``a=msid``; no ICE), and
the media on ``{base_url}video/media`` (docs/media_socket.md): local tracks are
encoded here (aiortc's VP8 / H.264 / Opus encoders, whole frames), remote
frames decoded here into the receivers' tracks, data channels are channels of
the socket.

Only the part of ``RTCPeerConnection`` this package uses is here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import time
import uuid
from typing import Any

import av
import numpy as np
from aiortc import RTCSessionDescription
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from pyee.asyncio import AsyncIOEventEmitter
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .. import _aiortc as adapter
from ..errors import MediaError
from ..signaling import mediasocket as ms

log = logging.getLogger(__name__)

RECEIVED_FRAMES = 30
"""Decoded frames a receiver track holds for its reader (oldest dropped past it)."""
REPORT_INTERVAL = 1.0
VIDEO_BACKLOG = 256 * 1024
"""Bytes of video waiting to be sent past which they are dropped for a keyframe."""


def _now_ms() -> int:
    return int(time.monotonic() * 1000) & 0xFFFFFFFF


def _is_keyframe(mime_type: str, data: bytes) -> bool:
    mime = mime_type.lower()
    if mime == "video/vp8":
        return bool(data) and data[0] & 0x01 == 0  # RFC 6386 9.1: P bit clear
    if mime == "video/h264":
        return any(nal and nal[0] & 0x1F == 5 for nal in adapter.split_annexb(data))
    return True


def _audio_level(frame: av.AudioFrame) -> int:
    """RFC 6464's level of ``frame``: -dBov of its RMS (0 loudest, 127 silence)."""
    samples = frame.to_ndarray().astype(np.float64)
    rms = float(np.sqrt(np.mean(samples * samples))) / 32768 if samples.size else 0.0
    return 127 if rms <= 0 else min(127, max(0, round(-20 * math.log10(rms))))


def _parameters(codec: ms.Codec) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType=codec.mime_type, clockRate=codec.clock_rate,
                                 channels=codec.channels or None,
                                 payloadType=codec.payload_type)


# ------------------------------------------------------------------ tracks and channels


class SocketRemoteTrack(MediaStreamTrack):
    """A receiver's track: frames decoded from the socket."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._frames: collections.deque[av.VideoFrame | av.AudioFrame] = collections.deque(
            maxlen=RECEIVED_FRAMES)
        self._waiter: asyncio.Future[None] | None = None

    def put(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        self._frames.append(frame)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def stop(self) -> None:
        super().stop()
        self._wake()


class SocketSender:
    """``RTCRtpSender``'s ``track`` and ``replaceTrack``."""

    def __init__(self, track: MediaStreamTrack | None) -> None:
        self.track = track

    def replaceTrack(self, track: MediaStreamTrack | None) -> None:
        self.track = track


class SocketReceiver:
    def __init__(self, kind: str) -> None:
        self.track = SocketRemoteTrack(kind)


class SocketTransceiver:
    """``RTCRtpTransceiver``: an m-section, what we send and receive on it."""

    def __init__(self, kind: str, direction: str, track: MediaStreamTrack | None) -> None:
        self.kind = kind
        self.direction = direction
        self.currentDirection: str | None = None
        self.mid: str | None = None
        self.sender = SocketSender(track)
        self.receiver = SocketReceiver(kind)
        self.codec: ms.Codec | None = None
        self.stopped = False


class SocketDataChannel(AsyncIOEventEmitter):
    """``RTCDataChannel``: one data channel of the socket."""

    def __init__(self, pc: WebSocketPeerConnection, label: str, ordered: bool = True,
                 maxPacketLifeTime: int | None = None,
                 maxRetransmits: int | None = None) -> None:
        super().__init__()
        self.label = label
        self.ordered = ordered
        self.maxPacketLifeTime = maxPacketLifeTime
        self.maxRetransmits = maxRetransmits
        self.readyState = "connecting"
        self.channel: int | None = None
        self.answer = False
        self._pc = pc

    def _open(self) -> None:
        if self.readyState == "connecting":
            self.readyState = "open"
            self.emit("open")

    def send(self, data: str | bytes) -> None:
        if self.readyState != "open" or self.channel is None:
            raise MediaError(53405, f"data channel {self.label!r} is not open")
        self._pc._send_urgent(ms.data_message(self.channel, data, self.answer))

    def close(self) -> None:
        if self.readyState != "closed":
            self.readyState = "closed"
            self.emit("close")


# ------------------------------------------------------------------ the peer connection


class WebSocketPeerConnection(AsyncIOEventEmitter):
    """The part of ``RTCPeerConnection`` :mod:`.peer_connection` uses, over a media socket."""

    def __init__(self) -> None:
        super().__init__()
        self.localDescription: RTCSessionDescription | None = None
        self.remoteDescription: RTCSessionDescription | None = None
        self.connectionState = "new"
        self.sctp: object | None = None  # set once a data channel exists (m=application)
        self.error: MediaError | None = None
        """Why the media socket closed, when the server closed it."""
        self.close_code: int | None = None
        self._transceivers: list[SocketTransceiver] = []
        self._channels: list[SocketDataChannel] = []
        self._application_mid: str | None = None
        self._session_id = int(uuid.uuid4().int % 10**12)
        self._version = 0
        self._socket: ClientConnection | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._numbers = itertools.count(1)
        self._urgent: collections.deque[str | bytes] = collections.deque()
        self._video: collections.deque[bytes] = collections.deque()
        self._wakeup = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._sending: dict[SocketTransceiver, tuple[int, asyncio.Task[None]]] = {}
        self._keyframe_wanted: set[int] = set()
        self._incoming: dict[int, tuple[SocketTransceiver, Any, ms.Codec]] = {}
        self._incoming_data: dict[int, SocketDataChannel] = {}
        self._received: dict[int, list[int]] = {}  # channel -> [bytes, frames]
        self._assembler = ms.FrameAssembler()
        self.frames_sent = 0
        self.frames_received = 0
        self.bytes_received = 0  # binary, what acks say
        self._bitrates: dict[int, int] = {}  # our channel -> what the server says it may send

    # ----------------------------------------------------------- RTCPeerConnection

    def getTransceivers(self) -> list[SocketTransceiver]:
        return list(self._transceivers)

    def addTransceiver(self, trackOrKind: MediaStreamTrack | str,
                       direction: str = "sendrecv") -> SocketTransceiver:
        if isinstance(trackOrKind, str):
            transceiver = SocketTransceiver(trackOrKind, direction, None)
        else:
            transceiver = SocketTransceiver(trackOrKind.kind, direction, trackOrKind)
        self._transceivers.append(transceiver)
        return transceiver

    def createDataChannel(self, label: str, ordered: bool = True,
                          maxPacketLifeTime: int | None = None,
                          maxRetransmits: int | None = None) -> SocketDataChannel:
        channel = SocketDataChannel(self, label, ordered, maxPacketLifeTime, maxRetransmits)
        self._channels.append(channel)
        self.sctp = self.sctp or object()
        if self._socket is not None:
            self._open_data_channel(channel)
        return channel

    async def createOffer(self) -> RTCSessionDescription:
        used = {t.mid for t in self._transceivers} | {self._application_mid}
        numbers = (str(n) for n in itertools.count() if str(n) not in used)
        sections = []
        for transceiver in self._transceivers:
            if transceiver.mid is None:
                transceiver.mid = next(numbers)
            track = transceiver.sender.track
            sections.append(ms.Section(
                transceiver.kind, transceiver.mid, transceiver.direction,
                [transceiver.codec] if transceiver.codec else ms.default_codecs(transceiver.kind),
                msid=("-", track.id) if track is not None
                and transceiver.direction in ("sendrecv", "sendonly") else None))
        if self.sctp is not None:
            if self._application_mid is None:
                self._application_mid = next(numbers)
            sections.append(ms.Section("application", self._application_mid))
        return RTCSessionDescription(self._write(sections), "offer")

    async def createAnswer(self) -> RTCSessionDescription:
        assert self.remoteDescription is not None
        sections = []
        for media in ms.parse_sections(self.remoteDescription.sdp):
            if media.kind == "application":
                sections.append(ms.Section("application", media.mid, rejected=media.rejected))
                continue
            transceiver = self._by_mid(media.mid)
            if transceiver is None or media.rejected or not media.codecs:
                sections.append(ms.Section(media.kind, media.mid, "inactive", [], rejected=True))
                continue
            track = transceiver.sender.track
            sends = track is not None and transceiver.direction in ("sendrecv", "sendonly")
            sections.append(ms.Section(
                media.kind, media.mid, ms.answer_direction(media.direction, sends),
                [media.codecs[0]], msid=("-", track.id) if sends and track else None))
        return RTCSessionDescription(self._write(sections), "answer")

    def _write(self, sections: list[ms.Section]) -> str:
        self._version += 1
        return ms.write_sdp(sections, self._version, self._session_id)

    async def setLocalDescription(self, description: RTCSessionDescription) -> None:
        self.localDescription = description
        if description.type == "answer":
            self._negotiated(description.sdp, local=True)

    async def setRemoteDescription(self, description: RTCSessionDescription) -> None:
        if not ms.is_media_socket_sdp(description.sdp):
            raise ValueError("the server answered with ICE, not a media socket")
        if description.type == "offer":
            for media in ms.parse_sections(description.sdp):
                if media.kind == "application":
                    self._application_mid = media.mid
                elif self._by_mid(media.mid) is None:
                    transceiver = SocketTransceiver(media.kind, "recvonly", None)
                    transceiver.mid = media.mid
                    self._transceivers.append(transceiver)
        self.remoteDescription = description
        if description.type == "answer":
            self._negotiated(description.sdp, local=False)

    def _by_mid(self, mid: str) -> SocketTransceiver | None:
        return next((t for t in self._transceivers if t.mid == mid), None)

    def _negotiated(self, answer: str, local: bool) -> None:
        """An answer is applied: directions and codecs are current, senders follow."""
        for media in ms.parse_sections(answer):
            transceiver = self._by_mid(media.mid)
            if transceiver is None or media.kind == "application":
                continue
            direction = media.direction if local else {
                "sendonly": "recvonly", "recvonly": "sendonly"}.get(
                media.direction, media.direction)
            transceiver.currentDirection = "inactive" if media.rejected else direction
            if media.codecs:
                transceiver.codec = media.codecs[0]
        self._follow_senders()

    # ----------------------------------------------------------- the media socket

    async def open_media_socket(self, url: str, session: str) -> None:
        """Open ``{base_url}video/media`` (ws:// or wss://) as signaling session ``session``."""
        self.connectionState = "connecting"
        try:
            self._socket = await ws_connect(url, compression=None,
                                            max_size=2 * ms.MAX_MESSAGE_SIZE, max_queue=64)
        except (OSError, ValueError) as exc:
            self.connectionState = "failed"
            raise MediaError(53405, f"Cannot open the media socket {url}: {exc}") from exc
        await self._socket.send(ms.control_message("hello", session=session))
        self._spawn(self._read())
        self._spawn(self._write_loop())
        self._spawn(self._send_reports())
        self._spawn(self._send_acks())
        self.connectionState = "connected"
        for channel in self._channels:
            self._open_data_channel(channel)
        self._follow_senders()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_urgent(self, message: str | bytes) -> None:
        self._urgent.append(message)
        self._wakeup.set()

    async def _write_loop(self) -> None:
        """One writer: control, audio and data before video fragments (as the server)."""
        assert self._socket is not None
        while True:
            if self._urgent:
                message = self._urgent.popleft()
            elif self._video:
                message = self._video.popleft()
            else:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                await self._socket.send(message)
            except ConnectionClosed:
                return

    def _open_data_channel(self, channel: SocketDataChannel) -> None:
        if channel.channel is not None or channel.readyState == "closed":
            return
        channel.channel = next(self._numbers)
        self._assembler.opened_data_channels.add(channel.channel)
        self._send_urgent(ms.control_message(
            "data_channel", channel=channel.channel, label=channel.label,
            ordered=channel.ordered))
        channel._open()

    def _follow_senders(self) -> None:
        """A sending task per negotiated sending transceiver with a track."""
        if self._socket is None:
            return
        for transceiver in self._transceivers:
            track = transceiver.sender.track
            sending = (track is not None and transceiver.codec is not None
                       and transceiver.currentDirection in ("sendrecv", "sendonly"))
            current = self._sending.get(transceiver)
            if current is not None and (not sending or current[1].done()):
                current[1].cancel()
                self._send_urgent(ms.control_message("unpublish", channel=current[0]))
                del self._sending[transceiver]
                current = None
            if sending and current is None:
                assert track is not None and transceiver.codec is not None
                channel = next(self._numbers)
                self._send_urgent(ms.control_message(
                    "publish", channel=channel, mid=transceiver.mid,
                    codec=transceiver.codec.name))
                task = asyncio.ensure_future(self._send_track(channel, track, transceiver.codec))
                self._sending[transceiver] = (channel, task)

    async def _send_track(self, channel: int, track: MediaStreamTrack, codec: ms.Codec) -> None:
        """Encode ``track`` and send its frames on ``channel`` until it ends."""
        encoder = adapter.frame_encoder(codec.mime_type)
        sequence = 0
        self._keyframe_wanted.add(channel)
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            force = channel in self._keyframe_wanted
            self._keyframe_wanted.discard(channel)
            if channel in self._bitrates and track.kind == "video":
                encoder.target_bitrate = self._bitrates.pop(channel)
            # Encoding a video frame takes milliseconds: off the event loop, as aiortc does.
            level = _audio_level(frame) if isinstance(frame, av.AudioFrame) else 127
            payloads, timestamp = await loop.run_in_executor(None, encoder.encode, frame, force)
            step = 960 if track.kind == "audio" else 0
            for index, payload in enumerate(payloads):
                sequence += 1
                keyframe = _is_keyframe(codec.mime_type, payload) if track.kind == "video" else True
                messages = ms.frame_messages(channel, sequence, (timestamp or 0) + index * step,
                                             keyframe, payload, _now_ms(), audio_level=level)
                if track.kind == "video":
                    if sum(map(len, self._video)) > VIDEO_BACKLOG:
                        # The uplink is behind: what waits is old; start again on a keyframe.
                        self._video.clear()
                        self._keyframe_wanted.add(channel)
                        continue
                    self._video.extend(messages)
                else:
                    self._urgent.extend(messages)
                self.frames_sent += 1
            self._wakeup.set()

    async def _read(self) -> None:
        assert self._socket is not None
        try:
            while True:
                await self._reading.wait()
                message = await self._socket.recv()
                if isinstance(message, str):
                    self._on_control(ms.parse_control(message, ms.SERVER_CONTROL))
                else:
                    self.bytes_received += len(message)
                    self._on_binary(message)
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else None
            if self.error is None and self.close_code and self.close_code >= 4000:
                reason = closed.rcvd.reason if closed.rcvd else ""
                self.error = MediaError(53405, reason or "media socket closed")
        except ms.MediaSocketError as error:
            self.error = MediaError(53405, f"invalid message from the server: {error}")
        if self.connectionState != "closed":
            self.connectionState = "failed"
            self.emit("connectionstatechange")

    def _on_control(self, body: dict[str, Any]) -> None:
        kind = body["type"]
        channel = int(body.get("channel", 0))
        if kind == "subscribe":
            transceiver = self._by_mid(str(body["mid"]))
            codec = next((c for c in ms.default_codecs(str(body["kind"]))
                          if c.name.lower() == str(body["codec"]).lower()), None)
            if transceiver is None or codec is None:
                log.warning("media socket: subscribe to unknown mid or codec: %s", body)
                return
            self._incoming[channel] = (transceiver, get_decoder(_parameters(codec)), codec)
            self._assembler.media_channels.add(channel)
        elif kind == "unsubscribe":
            self._incoming.pop(channel, None)
            self._assembler.forget(channel)
        elif kind == "data_channel":
            data_channel = SocketDataChannel(self, str(body["label"]),
                                             bool(body.get("ordered", True)))
            data_channel.channel = channel
            data_channel.answer = True  # the server opened it: what we send answers
            self._incoming_data[channel] = data_channel
            self._assembler.data_channels.add(channel)
            self.sctp = self.sctp or object()
            self.emit("datachannel", data_channel)
            data_channel._open()
        elif kind == "keyframe_request":
            self._keyframe_wanted.add(channel)
        elif kind == "bitrate":
            self._bitrates[channel] = int(body["bitrate"])
        elif kind == "error":
            self.error = MediaError(int(body["code"]), str(body["message"]))

    def _on_binary(self, message: bytes) -> None:
        item = self._assembler.take(message)
        if isinstance(item, ms.Frame):
            incoming = self._incoming.get(item.channel)
            if incoming is None:
                return
            transceiver, decoder, codec = incoming
            counts = self._received.setdefault(item.channel, [0, 0])
            counts[0] += len(item.data)
            counts[1] += 1
            self.frames_received += 1
            try:
                frames = decoder.decode(JitterFrame(item.data, item.timestamp))
            except Exception as exc:  # a broken frame: ask for a keyframe
                log.debug("media socket: decoding failed: %s", exc)
                frames = []
            if not frames and codec.name.lower() != "opus":
                self._send_urgent(ms.control_message("keyframe_request", channel=item.channel))
            for frame in frames:
                transceiver.receiver.track.put(frame)
        elif item is not None:
            data_channel = (self._channel_by_number(item.channel) if item.answer
                            else self._incoming_data.get(item.channel))
            if data_channel is not None and data_channel.readyState == "open":
                data_channel.emit("message", item.message)

    def _channel_by_number(self, number: int) -> SocketDataChannel | None:
        return next((c for c in self._channels if c.channel == number), None)

    async def _send_acks(self) -> None:
        """What has arrived, every ACK_INTERVAL: the server's flow control."""
        acked = 0
        while True:
            await asyncio.sleep(ms.ACK_INTERVAL)
            if self.bytes_received != acked:
                acked = self.bytes_received
                self._send_urgent(ms.control_message("ack", bytes=acked,
                                                     ms=int(time.monotonic() * 1000)))

    async def _send_reports(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            for channel, counts in self._received.items():
                self._send_urgent(ms.control_message(
                    "receiver_report", channel=channel, bytes=counts[0], frames=counts[1]))
                counts[0] = counts[1] = 0

    def _pause_reading(self, paused: bool) -> None:
        """Stop (True) or resume reading the socket: a slow link, for tests."""
        if paused:
            self._reading.clear()
        else:
            self._reading.set()

    async def close(self) -> None:
        self.connectionState = "closed"
        for _, task in self._sending.values():
            task.cancel()
        if self._socket is not None:
            # Closing first lets the reader see the server's close code, if one came.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._socket.close(), 2.0)
        for task in list(self._tasks):
            task.cancel()
        for transceiver in self._transceivers:
            transceiver.receiver.track.stop()
        for channel in self._channels + list(self._incoming_data.values()):
            channel.close()
