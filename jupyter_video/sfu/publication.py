"""Publications: one participant's track, as the SFU receives it.

A media publication receives the publisher's RTP packets (diverted from aiortc
before its receivers, see :func:`jupyter_video._aiortc.divert_srtp`) into its
:class:`~.rtp.receive_stream.ReceiveStream` and hands each packet to every
subscription at once: no jitter buffer, no depayloading, no decoding. Frames
are made only on demand: while a recorder or a frame-based subscriber (a
WebSocket peer) is attached, the publication assembles each frame once, after
the packets went out. A WebSocket publisher's frames are packetized once and
take the same path. Keyframe requests from subscribers are relayed to the
publisher at most once per :data:`PLI_INTERVAL` (as mediasoup does). A data
publication relays the messages of the publisher's data channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from aiortc import RTCDataChannel
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from . import sdp
from .data_relay import DataAdmission, MessageBudget
from .interface import DataLimits
from .rtp import packet as rtp_packet
from .rtp.bandwidth import publisher_bitrate
from .rtp.clock import now_ms, ntp_now
from .rtp.counters import forwarding_counts
from .rtp.frames import FrameAssembler, FramePacketizer, split_annexb
from .rtp.packet import Packet
from .rtp.receive_stream import ReceiveParameters, ReceiveStream
from .rtp.ring import PacketRing

if TYPE_CHECKING:
    from .recording import TrackRecorder
    from .rtp.layers import LayerForwarder

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90000
AUDIO_CLOCK_RATE = 48000
PLI_INTERVAL = 1.0
"""Seconds between two keyframe requests sent to one publisher for one publication."""
NACK_INTERVAL = 0.02
"""Seconds between two looks at what is still missing, while something is."""
LAYER_TIMEOUT_MS = 1000
"""A simulcast layer that sent nothing for this long is off (the publisher's
bandwidth estimate dropped it): forwarding moves to the best layer still sending."""


class EncodedFrame(NamedTuple):
    """One complete encoded frame and its RTP timestamp."""

    data: bytes
    timestamp: int
    keyframe: bool


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """Whether ``data`` (a whole encoded frame, H.264 in Annex B) decodes on its own."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # RFC 6386 section 9.1: P bit (bit 0 of the frame tag) is 0 for key frames.
        return len(data) > 0 and data[0] & 0x01 == 0
    if mime == "video/h264":
        return any(nal[0] & 0x1F == 5 for nal in split_annexb(data))
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


class MediaSink(Protocol):
    """A media subscription as its publication sees it: packets (WebRTC) or
    frames (a WebSocket peer), told apart by ``wants_frames``."""

    wants_frames: bool
    waiting_for_keyframe: bool

    def send_packet(self, packet: Packet, now: int, ntp: int) -> bool: ...

    def push(self, frame: EncodedFrame) -> bool: ...

    def resync(self) -> None: ...

    def bandwidth_wanted(self, now: int) -> int | None:
        """What the subscriber's link can take (bit/s), None: all it gets."""
        ...

    def end(self) -> None: ...


class MessageSink(Protocol):
    """A data subscription as its publication sees it."""

    def send(self, message: str | bytes) -> None: ...

    def end(self) -> None: ...


RtcpSend = Callable[[bytes], bool]
"""Sends one RTCP packet to the publisher (False: not connected)."""


class MediaPublication:
    """A published audio or video track, forwarded packet by packet."""

    def __init__(self, publisher_sid: str, track_id: str, kind: str) -> None:
        self.publisher_sid = publisher_sid
        self.track_id = track_id
        self.kind = kind
        self.track_sid: str | None = None
        self.codec: RTCRtpCodecParameters | None = None
        self._enabled = True
        self.subscriptions: list[MediaSink] = []
        self.recorders: list[TrackRecorder] = []
        self.frames_received = 0
        self.frames_forwarded = 0
        self.keyframe_requests_sent = 0
        self.speech = SpeechActivity()
        """How loud the publisher spoke since the room last looked (audio only)."""
        self.stream: ReceiveStream | None = None
        """The stream forwarded (of a simulcast publication: the layer chosen)."""
        self.layers: list[ReceiveStream] = []
        """Every stream received: simulcast layers, lowest first (one without)."""
        self._layer_of: dict[int, ReceiveStream] = {}
        """SSRC (media and RTX) -> its simulcast layer."""
        self._simulcast = False
        """Whether packets go to layers by SSRC (SIM) or by RID (learnt into ``_layer_of``)."""
        self._layer_of_rid: dict[str, ReceiveStream] = {}
        self._rid_ids: tuple[int | None, int | None] = (None, None)
        """The publisher's ids of the RID and repaired-RID header extensions."""
        self.ring = PacketRing()
        self.extensions: dict[int, str] = {}
        """The publisher's header extension ids -> URIs."""
        self._send_rtcp: RtcpSend | None = None
        self._assembler: FrameAssembler | None = None
        self._nack_timer: asyncio.TimerHandle | None = None
        self._last_pli = -PLI_INTERVAL
        self._pli_timer: asyncio.TimerHandle | None = None
        self._on_ready: list[Callable[[MediaPublication], None]] = []
        self._frame_source_keyframe: Callable[[], None] | None = None
        self._packetizer: FramePacketizer | None = None
        self._sequence = random.getrandbits(15)
        self.forwarder: LayerForwarder | None = None
        self.priority = "standard"
        """The publisher's priority of the track (Track Priority API)."""
        """The subscriptions given a layer of their own (sfu/bandwidth.py), if any."""

    @property
    def ready(self) -> bool:
        """Whether the codec is negotiated, so subscribers can be offered it."""
        return self.codec is not None

    @property
    def clock_rate(self) -> int:
        return AUDIO_CLOCK_RATE if self.kind == "audio" else VIDEO_CLOCK_RATE

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, enabled: bool) -> None:
        if enabled and not self._enabled:
            for subscription in self.subscriptions:
                subscription.resync()  # the packets held back leave no gap
        self._enabled = enabled

    def when_ready(self, callback: Callable[[MediaPublication], None]) -> None:
        """Call ``callback`` once the publisher's media is negotiated."""
        if self.ready:
            callback(self)
        else:
            self._on_ready.append(callback)

    def attach(
        self,
        codecs: list[RTCRtpCodecParameters],
        extensions: dict[int, str],
        send_rtcp: RtcpSend,
        local_ssrc: int,
    ) -> None:
        """Receive the publisher's RTP: ``codecs`` negotiated (preferred first, RTX
        among them), ``extensions`` its header extension ids, ``send_rtcp`` toward it."""
        media = [c for c in codecs if not c.mimeType.lower().endswith("/rtx")]
        codec = media[0]
        rtx = next(
            (c for c in codecs if c.mimeType.lower().endswith("/rtx")
             and c.parameters.get("apt") == codec.payloadType),
            None,
        )
        self.codec = codec
        self.extensions = dict(extensions)
        self._send_rtcp = send_rtcp
        self.stream = ReceiveStream(
            ReceiveParameters(
                kind=self.kind,
                mime_type=codec.mimeType,
                clock_rate=codec.clockRate,
                payload_type=codec.payloadType or 0,
                rtx_payload_type=rtx.payloadType if rtx is not None else None,
                extensions=self.extensions,
                pli=any(f.type == "nack" and f.parameter == "pli" for f in codec.rtcpFeedback)
                or not any(f.type == "ccm" for f in codec.rtcpFeedback),
            ),
            local_ssrc,
        )
        self.layers = [self.stream]
        self._layer_of = {}
        self._layer_of_rid = {}
        self._simulcast = False
        self.ring = self.stream.ring
        self._became_ready()

    def set_layers(self, layers: list[tuple[int, int | None]]) -> None:
        """The SSRCs the publisher's SDP announced: (media, RTX) per simulcast layer,
        lowest first (``a=ssrc-group:SIM``), or one pair without simulcast."""
        stream = self.stream
        if stream is None or not layers:
            return
        if len(layers) == 1:
            media, rtx = layers[0]
            stream.parameters.ssrc = stream.parameters.ssrc or media
            stream.parameters.rtx_ssrc = stream.parameters.rtx_ssrc or rtx
            return
        if [layer.parameters.ssrc for layer in self.layers] == [m for m, _ in layers]:
            return  # the same layers again (a renegotiation)
        self.layers = [
            ReceiveStream(dataclasses.replace(stream.parameters, ssrc=media, rtx_ssrc=rtx),
                          stream.local_ssrc)
            for media, rtx in layers
        ]
        self._layer_of = {}
        self._layer_of_rid = {}
        self._simulcast = True
        for layer, (media, rtx) in zip(self.layers, layers, strict=True):
            self._layer_of[media] = layer
            if rtx is not None:
                self._layer_of[rtx] = layer
        self.stream = self.layers[0]  # until a better layer's keyframe comes
        self.ring = self.stream.ring

    def set_rid_layers(self, rids: list[str]) -> None:
        """RID simulcast (``a=simulcast:send``, RFC 8853, as Chrome offers it for
        ``sendEncodings`` with ``rid``s): one layer per RID, in the order listed,
        taken as lowest first (Chrome lists ``sendEncodings`` in their order, and
        apps give them lowest first, as ``scaleResolutionDownBy`` 4, 2, 1). No SSRC
        is announced: each layer's media and RTX SSRCs are learnt from the first
        packets naming it in the RID / repaired-RID header extension (RFC 8852)."""
        stream = self.stream
        ids = {uri: ident for ident, uri in self.extensions.items()}
        rid_ids = (ids.get(sdp.RID_URI), ids.get(sdp.REPAIRED_RID_URI))
        if stream is None or rid_ids[0] is None or len(rids) < 2:
            return  # no RID extension negotiated: the first SSRC that comes is the track
        if list(self._layer_of_rid) == rids and self._rid_ids == rid_ids:
            return  # the same layers again (a renegotiation)
        self._rid_ids = rid_ids
        self.layers = [
            ReceiveStream(dataclasses.replace(stream.parameters, ssrc=None, rtx_ssrc=None),
                          stream.local_ssrc)
            for _ in rids
        ]
        self._layer_of_rid = dict(zip(rids, self.layers, strict=True))
        self._layer_of = {}
        self._simulcast = True
        self.stream = self.layers[0]
        self.ring = self.stream.ring

    def _layer_of_new_ssrc(self, packet: Packet) -> ReceiveStream | None:
        """The layer of an SSRC not routed yet: by its RID (or, for RTX, the RID it
        repairs), learnt for the packets after it; without RIDs the forwarded layer."""
        if not self._layer_of_rid:
            return self.stream
        rid_id, repaired_id = self._rid_ids
        for ident, rtx in ((rid_id, False), (repaired_id, True)):
            value = packet.extension(ident) if ident is not None else None
            layer = self._layer_of_rid.get(value.decode(errors="replace")) if value else None
            if layer is None:
                continue
            parameters = layer.parameters
            if rtx:
                parameters.rtx_ssrc = packet.ssrc
            elif parameters.ssrc is None:
                parameters.ssrc = packet.ssrc
            elif parameters.ssrc != packet.ssrc:
                return None  # the RID moved to another SSRC: a new sender; not this one
            self._layer_of[packet.ssrc] = layer
            return layer
        return None  # no RID on it: nothing says which layer it is (yet)

    def attach_frame_source(
        self, codec: RTCRtpCodecParameters, request_keyframe: Callable[[], None]
    ) -> None:
        """Take encoded frames from a source other than RTP (a media socket): it
        calls :meth:`receive_frame`, and ``request_keyframe`` asks it for a keyframe
        (rate-limited here, as a PLI is)."""
        self.codec = codec
        self._frame_source_keyframe = request_keyframe
        self._packetizer = FramePacketizer(codec.mimeType)
        self._became_ready()

    def _became_ready(self) -> None:
        callbacks, self._on_ready = self._on_ready, []
        for callback in callbacks:
            callback(self)

    # ----------------------------------------------------------- packets in

    def receive_packet(self, packet: Packet) -> None:
        """One RTP packet from the publisher (primary or RTX), already parsed."""
        if self._simulcast:
            stream = self._layer_of.get(packet.ssrc) or self._layer_of_new_ssrc(packet)
        else:
            stream = self.stream
        if stream is None:
            return
        forwarding_counts.packets_received += 1
        recovered, retransmitted = stream.nack.recovered, stream.retransmissions_received
        media = stream.receive(packet)
        forwarding_counts.packets_recovered += stream.nack.recovered - recovered
        forwarding_counts.retransmissions_received += (
            stream.retransmissions_received - retransmitted)
        if stream.nack.missing and self._nack_timer is None and self.kind == "video":
            self._send_nacks()  # (audio is never asked again: nack_feedback)
        if stream.nack.keyframe_needed:
            stream.nack.keyframe_needed = False
            self.request_keyframe()
        if media is None:
            return
        if self._simulcast:
            stream.last_packet_ms = packet.arrival_ms
            if self.forwarder is not None:
                self.forwarder.forward(stream, media)
            if stream is not self.stream and not self._switch_layer(stream, media):
                return
        if media.audio_level is not None:
            self.speech.add(media.audio_level)
        self._forward(media)

    def _switch_layer(self, layer: ReceiveStream, packet: Packet) -> bool:
        """Whether to forward from ``layer`` from ``packet`` on instead of the layer
        forwarded so far: a higher one, or any while the current one is off; at a
        keyframe of it (one is asked for until it comes)."""
        current = self.stream
        assert current is not None
        better = (
            self.layers.index(layer) > self.layers.index(current)
            or packet.arrival_ms - current.last_packet_ms > LAYER_TIMEOUT_MS
        )
        if not better:
            return False
        if not packet.keyframe:
            request = layer.keyframe_request(now_ms())
            if request is not None and self._send_rtcp is not None:
                self._send_rtcp(request)
            return False
        self.stream = layer
        self.ring = layer.ring
        self._assembler = None  # another sequence space
        for subscription in self.subscriptions:
            subscription.resync()
        return True

    def _forward(self, packet: Packet) -> None:
        """The fan-out: every packet subscriber, then (only if something needs them)
        the frames."""
        if packet.marker or self.kind == "audio":
            self.frames_received += 1
        if not self._enabled:
            return
        wants_frames = bool(self.recorders)
        if self.subscriptions:
            now, ntp = now_ms(), ntp_now()
            ends_frame = packet.marker or self.kind == "audio"
            for subscription in self.subscriptions:
                if subscription.wants_frames:
                    wants_frames = True
                elif subscription.send_packet(packet, now, ntp) and ends_frame:
                    self.frames_forwarded += 1
        if wants_frames:
            self._assemble(packet)
        else:
            self._assembler = None

    def _assemble(self, packet: Packet) -> None:
        assert self.codec is not None
        if self._assembler is None:
            self._assembler = FrameAssembler(self.codec.mimeType)
        done = self._assembler.push(packet)
        if done is not None:
            forwarding_counts.frames_depacketized += 1
            self._deliver_frame(EncodedFrame(*done))

    def _deliver_frame(self, frame: EncodedFrame) -> None:
        assert self.codec is not None
        for recorder in self.recorders:
            recorder.push(self.codec, frame)
        for subscription in self.subscriptions:
            if subscription.wants_frames and subscription.push(frame):
                self.frames_forwarded += 1

    def frames_from_keyframe(self, recent: bool = True) -> list[EncodedFrame]:
        """The frames of the ring from its last keyframe on: what a new frame-based
        subscriber (``recent``: only a keyframe of the last second) or a recorder
        (however old the keyframe the ring holds) starts with."""
        packets = self.ring.from_keyframe(recent) if self.kind == "video" else None
        if not packets or self.codec is None:
            return []
        assembler = FrameAssembler(self.codec.mimeType)
        frames = []
        for packet in packets:
            done = assembler.push(packet)
            if done is not None:
                frames.append(EncodedFrame(*done))
        return frames

    @property
    def recent(self) -> list[EncodedFrame]:
        return self.frames_from_keyframe()

    # ----------------------------------------------------------- frames in

    def receive_frame(self, data: bytes, timestamp: int) -> None:
        """One complete encoded frame from a frame source: straight to frame-based
        sinks, packetized once for the others (and the ring)."""
        assert self.codec is not None and self._packetizer is not None
        keyframe = is_keyframe(self.codec.mimeType, data)
        if self._enabled and (self.recorders or any(s.wants_frames for s in self.subscriptions)):
            self._deliver_frame(EncodedFrame(data, timestamp, keyframe))
        payloads = self._packetizer.payloads(data)
        forwarding_counts.packets_packetized += len(payloads)
        for i, payload in enumerate(payloads):
            self._sequence += 1
            packet = Packet(rtp_packet.build(
                self.codec.payloadType or 0, self._sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                0, payload, marker=i == len(payloads) - 1,
            ))
            packet.extended_sequence = packet.forward_sequence = self._sequence
            packet.keyframe = self.kind == "audio" or (keyframe and i == 0)
            if self.kind == "video":
                self.ring.add(packet)
            self._forward_packets_only(packet)

    def _forward_packets_only(self, packet: Packet) -> None:
        if packet.marker or self.kind == "audio":
            self.frames_received += 1
        if not self._enabled or not self.subscriptions:
            return
        now, ntp = now_ms(), ntp_now()
        for subscription in self.subscriptions:
            sent = not subscription.wants_frames and subscription.send_packet(packet, now, ntp)
            if sent and (packet.marker or self.kind == "audio"):
                self.frames_forwarded += 1

    # ----------------------------------------------------------- RTCP toward the publisher

    def _send_nacks(self) -> None:
        self._nack_timer = None
        send = self._send_rtcp
        if send is None:
            return
        now = now_ms()
        missing = False
        for stream in self.layers:
            before = stream.nack.asked
            nack = stream.nack_feedback(now)
            if nack and send(nack):
                forwarding_counts.nacks_sent += stream.nack.asked - before
            missing = missing or bool(stream.nack.missing)
        if missing:
            self._nack_timer = asyncio.get_running_loop().call_later(
                NACK_INTERVAL, self._send_nacks)

    def receiver_feedback(self) -> bytes:
        """The periodic RTCP for the publisher (Receiver Reports, REMB)."""
        now = now_ms()
        bitrate = publisher_bitrate(s.bandwidth_wanted(now) for s in self.subscriptions)
        return b"".join(stream.receiver_feedback(now, bitrate) for stream in self.layers)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most once per PLI_INTERVAL."""
        has_source = self._send_rtcp is not None or self._frame_source_keyframe is not None
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
        if self.stream is None or self._send_rtcp is None:
            return
        request = self.stream.keyframe_request(now_ms())
        if request is None:
            return  # nothing received yet: no SSRC to name
        self._last_pli = asyncio.get_running_loop().time()
        if self._send_rtcp(request):
            self.keyframe_requests_sent += 1
            forwarding_counts.plis_sent += 1

    def request_layer_keyframe(self, layer: ReceiveStream) -> None:
        """A PLI for one simulcast layer (rate-limited per layer by the stream)."""
        request = layer.keyframe_request(now_ms())
        if request is not None and self._send_rtcp is not None and self._send_rtcp(request):
            forwarding_counts.plis_sent += 1

    def close(self) -> None:
        """Stop forwarding: every subscription is released, every recording ended."""
        for subscription in list(self.subscriptions):
            subscription.end()
        if self.forwarder is not None:
            self.forwarder.close()
        for recorder in self.recorders:
            recorder.end()
        self.recorders.clear()
        for timer in (self._pli_timer, self._nack_timer):
            if timer is not None:
                timer.cancel()
        self._pli_timer = self._nack_timer = None
        self._send_rtcp = None
        self._frame_source_keyframe = None
        self.stream = None  # what still arrives for it (in flight, a reused sender) is dropped
        self.layers = []
        self._layer_of = {}
        self._layer_of_rid = {}
        self._simulcast = False


class DataPublication:
    """A published data track: the publisher's data channel, relayed."""

    kind = "data"

    def __init__(
        self, publisher_sid: str, track_id: str, admission: DataAdmission | None = None
    ) -> None:
        self.publisher_sid = publisher_sid
        self.track_id = track_id
        self.track_sid: str | None = None
        self.enabled = True
        self.channel: RTCDataChannel | None = None
        self.subscriptions: list[MessageSink] = []
        self.messages_received = 0
        self.admission = admission or DataAdmission(  # none given: no limits
            DataLimits(0, 0), MessageBudget(0, 1), f"participant {publisher_sid} track {track_id}")
        """The size and rate limits its messages pass (sfu/data_relay.py)."""

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
        if not self.admission.admit(message) or not self.enabled:
            return
        for subscription in self.subscriptions:
            subscription.send(message)

    def request_keyframe(self) -> None:
        return None

    def close(self) -> None:
        for subscription in list(self.subscriptions):
            subscription.end()


Publication = MediaPublication | DataPublication
