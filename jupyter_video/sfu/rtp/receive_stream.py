"""The stream received from a publisher: one per publication (mediasoup's
``RtpStreamRecv``, LiveKit's ``buffer``).

:meth:`ReceiveStream.receive` is the per-packet work, synchronous: RTX unwrap,
sequence extension, loss and jitter, NACK bookkeeping, keyframe detection,
audio level, the ring. The RTCP toward the publisher (Receiver Reports, NACK,
PLI/FIR at most once per :data:`KEYFRAME_REQUEST_INTERVAL_MS`, REMB) is built
here and sent by the peer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import rtcp
from .bandwidth import MAX_BITRATE
from .codecs import keyframe_detector
from .nack import NackGenerator
from .packet import FIXED_HEADER, Packet
from .ring import RING_PACKETS, PacketRing

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
KEYFRAME_REQUEST_INTERVAL_MS = 1000
"""At most one PLI/FIR per second toward a publisher, as mediasoup relays them."""
DEFAULT_RTT_MS = 100
"""The round trip assumed toward a publisher before one is measured."""


@dataclass
class ReceiveParameters:
    """What the publisher's m-section negotiated for this stream."""

    kind: str
    mime_type: str
    clock_rate: int
    payload_type: int
    rtx_payload_type: int | None = None
    ssrc: int | None = None
    """From a=ssrc; None: learnt from the first packet routed here."""
    rtx_ssrc: int | None = None
    extensions: dict[int, str] = field(default_factory=dict)
    """Header extension id -> URI, as the publisher numbers them."""
    pli: bool = True
    """rtcp-fb nack pli negotiated (else FIR, ccm fir)."""


class ReceiveStream:
    """One publisher's stream of one track, packet by packet."""

    def __init__(
        self, parameters: ReceiveParameters, local_ssrc: int, ring_size: int = RING_PACKETS
    ) -> None:
        self.parameters = parameters
        self.local_ssrc = local_ssrc
        """The SSRC the SFU's RTCP toward the publisher is sent from."""
        self.ring = PacketRing(ring_size)
        self.nack = NackGenerator()
        self._is_keyframe: Callable[[bytes], bool] | None = keyframe_detector(parameters.mime_type)
        ids = {uri: ident for ident, uri in parameters.extensions.items()}
        self._audio_level_id = ids.get(AUDIO_LEVEL_URI) if parameters.kind == "audio" else None
        self._cycles = 0
        self._max_sequence = -1
        self._base_sequence: int | None = None
        self._skipped = 0
        self._transit: int | None = None
        self.jitter = 0.0
        self._expected_prior = 0
        self._received_prior = 0
        self._last_sr = 0
        self._last_sr_arrival_ms = 0
        self._last_keyframe_request_ms = -KEYFRAME_REQUEST_INTERVAL_MS
        self._fir_sequence = 0
        self.packets_received = 0
        self.bytes_received = 0
        self.retransmissions_received = 0
        self.padding_received = 0
        self.keyframes_received = 0
        self.keyframe_requests_sent = 0
        self.reported_rtt_ms: float | None = None
        """The peer's round trip from its Receiver Reports of what the SFU sends it
        (same transport), set by the peer; preferred to the NACK-measured one."""
        self.last_packet_ms = 0
        """Arrival of the last media packet (kept by the publication for simulcast)."""

    # ----------------------------------------------------------- per packet

    def receive(self, packet: Packet) -> Packet | None:
        """Account ``packet`` (from the primary or RTX SSRC); returns the media
        packet to forward, or None (a duplicate, padding, an RTX of nothing)."""
        params = self.parameters
        if packet.ssrc == params.rtx_ssrc or (
            packet.payload_type == params.rtx_payload_type and params.rtx_payload_type is not None
        ):
            if params.rtx_ssrc is None:
                params.rtx_ssrc = packet.ssrc
            unwrapped = self._unwrap(packet)
            if unwrapped is None:
                self.padding_received += 1  # RTX padding: bandwidth probes
                return None
            packet = unwrapped
            self.retransmissions_received += 1
        elif params.ssrc is None:
            params.ssrc = packet.ssrc
        elif packet.ssrc != params.ssrc:
            return None
        sequence = self._extend(packet.sequence)
        packet.extended_sequence = sequence
        self.packets_received += 1
        self.bytes_received += len(packet.data)
        recovered = self.nack.on_packet(sequence)
        if not recovered:
            self._update_jitter(packet)
        if sequence in self.ring:
            return None  # a retransmission of what arrived already
        if packet.padding_only:
            self.padding_received += 1
            if sequence == self._max_sequence:
                self._skipped += 1  # subscribers' numbering goes on without it
            return None
        packet.forward_sequence = sequence - self._skipped
        if self._is_keyframe is not None:
            if self._is_keyframe(packet.data[packet.payload_start : packet.payload_end]):
                packet.keyframe = True
                self.keyframes_received += 1
        elif params.kind == "audio":
            packet.keyframe = True  # every audio packet decodes alone
            if self._audio_level_id is not None:
                level = packet.extension(self._audio_level_id)
                if level:
                    packet.audio_level = level[0] & 0x7F
        self.ring.add(packet)
        return packet

    def _unwrap(self, packet: Packet) -> Packet | None:
        """The original packet inside an RTX one (RFC 4588 section 4): its sequence
        number in the first two payload bytes, the media SSRC and payload type."""
        start, end = packet.payload_start, packet.payload_end
        if end - start < 2 or self.parameters.ssrc is None:
            return None
        data = packet.data
        header = bytearray(data[:start])
        header[0] &= 0xDF  # the padding went with the RTX packet
        header[1] = (header[1] & 0x80) | self.parameters.payload_type
        header[2:4] = data[start : start + 2]
        header[8:FIXED_HEADER] = self.parameters.ssrc.to_bytes(4, "big")
        return Packet(bytes(header) + data[start + 2 : end], packet.arrival_ms)

    def _extend(self, sequence: int) -> int:
        """The sequence number with roll-overs counted (RFC 3550 appendix A.1)."""
        if self._max_sequence < 0:
            self._max_sequence = sequence
            self._base_sequence = sequence
            return sequence
        highest = self._max_sequence & 0xFFFF
        delta = (sequence - highest) & 0xFFFF
        if delta < 0x8000:  # ahead (or equal)
            if sequence < highest:
                self._cycles += 1 << 16
            extended = self._cycles + sequence
            self._max_sequence = max(self._max_sequence, extended)
            return extended
        extended = self._cycles + sequence  # behind: late or retransmitted
        if sequence > highest:
            extended -= 1 << 16  # from before the last roll-over
        return extended

    def _update_jitter(self, packet: Packet) -> None:
        # RFC 3550 appendix A.8, arrival in the stream's clock units.
        arrival = packet.arrival_ms * self.parameters.clock_rate // 1000
        transit = arrival - packet.timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16
        self._transit = transit

    @property
    def rtt_ms(self) -> float:
        """The round trip to the publisher NACKs are repeated after: from the peer's
        Receiver Reports where it receives from the SFU, else as NACK to
        retransmission measured it, else :data:`DEFAULT_RTT_MS`."""
        if self.reported_rtt_ms is not None:
            return self.reported_rtt_ms
        if self.nack.rtt_ms is not None:
            return self.nack.rtt_ms
        return DEFAULT_RTT_MS

    # ----------------------------------------------------------- RTCP toward the publisher

    def on_sender_report(self, ntp_time: int, arrival_ms: int) -> None:
        self._last_sr = rtcp.ntp_middle(ntp_time)
        self._last_sr_arrival_ms = arrival_ms

    def report_block(self, now_ms: int) -> rtcp.ReportBlock | None:
        """This stream's reception report (RFC 3550 section 6.4.1), None before any packet."""
        if self.parameters.ssrc is None or self._base_sequence is None:
            return None
        expected = self._max_sequence - self._base_sequence + 1
        received = self.packets_received - self.retransmissions_received
        lost = expected - received
        expected_interval = expected - self._expected_prior
        received_interval = received - self._received_prior
        self._expected_prior, self._received_prior = expected, received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (
            (lost_interval << 8) // expected_interval
        )
        delay = 0
        if self._last_sr:
            delay = (now_ms - self._last_sr_arrival_ms) * 65536 // 1000
        return rtcp.ReportBlock(
            ssrc=self.parameters.ssrc,
            fraction_lost=min(fraction, 255),
            packets_lost=lost,
            highest_sequence=self._max_sequence,
            jitter=int(self.jitter),
            last_sr=self._last_sr,
            delay_since_last_sr=delay,
        )

    def receiver_feedback(self, now_ms: int, bitrate: int = MAX_BITRATE) -> bytes:
        """The periodic RTCP for the publisher: a Receiver Report, and for video a
        REMB of ``bitrate`` (what its subscribers take: bandwidth.py)."""
        block = self.report_block(now_ms)
        if block is None:
            return b""
        data = rtcp.receiver_report(self.local_ssrc, [block])
        if self.parameters.kind == "video":
            ssrcs = [self.parameters.ssrc] if self.parameters.ssrc is not None else []
            data += rtcp.remb(self.local_ssrc, bitrate, ssrcs)
        return data

    def nack_feedback(self, now_ms: int) -> bytes:
        """A NACK for what is missing and due now (b"" when nothing is)."""
        if self.parameters.ssrc is None or self.parameters.kind != "video":
            return b""
        due = self.nack.due(now_ms, round(self.rtt_ms))
        if not due:
            return b""
        return rtcp.nack(self.local_ssrc, self.parameters.ssrc, due)

    def keyframe_request(self, now_ms: int) -> bytes | None:
        """A PLI (or FIR) for the publisher unless one went out less than
        :data:`KEYFRAME_REQUEST_INTERVAL_MS` ago (None then, or before any packet)."""
        ssrc = self.parameters.ssrc
        if ssrc is None or self.parameters.kind != "video":
            return None
        if now_ms - self._last_keyframe_request_ms < KEYFRAME_REQUEST_INTERVAL_MS:
            return None
        self._last_keyframe_request_ms = now_ms
        self.keyframe_requests_sent += 1
        if self.parameters.pli:
            return rtcp.pli(self.local_ssrc, ssrc)
        self._fir_sequence += 1
        return rtcp.fir(self.local_ssrc, ssrc, self._fir_sequence)

    def next_keyframe_request_ms(self) -> int:
        """When :meth:`keyframe_request` gives one again."""
        return self._last_keyframe_request_ms + KEYFRAME_REQUEST_INTERVAL_MS
