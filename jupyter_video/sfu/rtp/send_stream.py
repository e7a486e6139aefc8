"""The stream sent to one subscriber: one per send slot (mediasoup's
``RtpStreamSend`` with its ``SeqManager``, LiveKit's ``downtrack`` and
``rtpmunger``).

A slot outlives subscriptions: when it carries another publication (or the
same track republished) :meth:`SendStream.switch_source` makes the next packet
continue the subscriber's sequence numbers, timestamps and VP8 picture ids
where the last source left them. :meth:`SendStream.forward` is the per-packet
work: rewrite SSRC, payload type, sequence number, timestamp, header extensions
(the subscriber's ids, the subscriber's mid) and the VP8 descriptor, keep the
result for retransmission. The RTCP of the stream (Sender Reports, answers to
NACK and Receiver Reports) is here too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import rtcp
from .bandwidth import SubscriberBandwidth
from .codecs import Vp8Descriptor
from .packet import FIXED_HEADER, Packet, extension_block, parse_extensions

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
COPIED_EXTENSIONS = frozenset(
    {
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "urn:3gpp:video-orientation",
        "urn:ietf:params:rtp-hdrext:toffset",
    }
)
"""Extensions that describe the media and go on to subscribers as they came.
Transport-wide ones (transport-cc, abs-send-time) describe the publisher's hop
and are not forwarded; abs-send-time is written anew for the subscriber's."""
MAX_TIMESTAMP_JUMP_S = 5
"""A source's timestamp moving on by more than this between two packets (or back)
means a new source under the same SSRC (a track republished on the same sender):
the subscriber's timestamps are re-anchored, as at a change of source."""
HISTORY_PACKETS = 512
"""Packets kept per subscriber for its NACKs (~1.5 s of 1 Mbit/s video)."""

_SEQ_TS_SSRC = struct.Struct("!HII")


@dataclass
class SendParameters:
    """What the subscriber's m-section negotiated for this slot."""

    kind: str
    mime_type: str
    clock_rate: int
    payload_type: int
    ssrc: int
    """The SSRC announced in the SFU's SDP for this m-section (aiortc's sender's)."""
    rtx_payload_type: int | None = None
    rtx_ssrc: int | None = None
    mid: str | None = None
    extensions: dict[str, int] = field(default_factory=dict)
    """Header extension URI -> id, as the subscriber numbers them."""


class SendStream:
    """One subscriber's stream on one send slot."""

    def __init__(self, parameters: SendParameters, first_sequence: int = 0) -> None:
        self.parameters = parameters
        self._vp8 = parameters.mime_type.lower() == "video/vp8"
        self._mid_element = (
            (parameters.extensions[MID_URI], parameters.mid.encode())
            if parameters.mid and MID_URI in parameters.extensions
            else None
        )
        self._abs_send_time_id = parameters.extensions.get(ABS_SEND_TIME_URI)
        self._max_step = MAX_TIMESTAMP_JUMP_S * parameters.clock_rate
        # The per-packet extension block in the one-byte form when the ids allow it
        # (RFC 8285 4.2, what browsers negotiate): built from bytes made once.
        one_byte = all(0 < i < 15 for i in parameters.extensions.values()) and (
            self._mid_element is None or 0 < len(self._mid_element[1]) <= 16
        )
        self._one_byte = one_byte
        self._mid_bytes = b""
        if one_byte and self._mid_element is not None:
            ident, value = self._mid_element
            self._mid_bytes = bytes(((ident << 4) | (len(value) - 1),)) + value
        self._abs_send_time_header = (
            bytes(((self._abs_send_time_id << 4) | 2,))
            if one_byte and self._abs_send_time_id is not None else b""
        )
        self._translate: dict[int, int] = {}
        self._sequence_offset = 0
        self._timestamp_offset = 0
        self._picture_id_offset = 0
        self._tl0_offset = 0
        self._switching = True
        self.last_sequence = (first_sequence - 1) & 0xFFFF
        """The subscriber's sequence number of the last packet sent."""
        self._last_forward_sequence = -1
        self.last_timestamp: int | None = None
        self._last_sent_ms = 0
        self._last_picture_id: int | None = None
        self._last_tl0: int | None = None
        self._history: list[bytes | None] = [None] * HISTORY_PACKETS
        self._rtx_sequence = first_sequence
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmitted = 0
        self.nacked = 0
        self.nacks_unanswered = 0
        self.rtt_ms: float | None = None
        self.bandwidth = SubscriberBandwidth()
        """The subscriber's REMB and reports, for the publisher's REMB (bandwidth.py)."""
        self.fraction_lost = 0
        self.packets_lost = 0

    # ----------------------------------------------------------- sources

    def switch_source(self, extensions: dict[int, str]) -> None:
        """The next packet forwarded comes from a new source (or the same source
        after a pause): continue the subscriber's numbering from there.
        ``extensions`` are the source's header extension ids -> URIs."""
        ours = self.parameters.extensions
        self._translate = {
            ident: ours[uri]
            for ident, uri in extensions.items()
            if uri in COPIED_EXTENSIONS and uri in ours
        }
        self._switching = True

    def _start_source(self, packet: Packet, now_ms: int) -> None:
        self._switching = False
        self._sequence_offset = (self.last_sequence + 1 - packet.forward_sequence) & 0xFFFF
        if self.last_timestamp is None:
            self._timestamp_offset = 0
        else:
            # Continue by the wall time that passed, at least one tick: a receiver drops
            # frames whose timestamps run backwards as late.
            elapsed = max(1, (now_ms - self._last_sent_ms) * self.parameters.clock_rate // 1000)
            self._timestamp_offset = (self.last_timestamp + elapsed - packet.timestamp) & 0xFFFFFFFF
        if self._vp8:
            descriptor = Vp8Descriptor.parse(packet.payload)
            if descriptor is not None and descriptor.picture_id is not None:
                last = self._last_picture_id
                self._picture_id_offset = 0 if last is None else (
                    (last + 1 - descriptor.picture_id) & 0x7FFF
                )
            if descriptor is not None and descriptor.tl0_pic_index is not None:
                last_tl0 = self._last_tl0
                self._tl0_offset = 0 if last_tl0 is None else (
                    (last_tl0 + 1 - descriptor.tl0_pic_index) & 0xFF
                )

    # ----------------------------------------------------------- per packet

    def forward(self, packet: Packet, now_ms: int, ntp_time: int = 0) -> bytes:
        """The subscriber's copy of ``packet``, remembered for its NACKs."""
        if self._switching:
            self._start_source(packet, now_ms)
        params = self.parameters
        sequence = (packet.forward_sequence + self._sequence_offset) & 0xFFFF
        timestamp = (packet.timestamp + self._timestamp_offset) & 0xFFFFFFFF
        last = self.last_timestamp
        if last is not None and packet.forward_sequence > self._last_forward_sequence:
            step = (timestamp - last) & 0xFFFFFFFF
            if step > self._max_step:  # backwards (step >= 2**31) or too far ahead
                elapsed = max(1, (now_ms - self._last_sent_ms) * params.clock_rate // 1000)
                self._timestamp_offset = (last + elapsed - packet.timestamp) & 0xFFFFFFFF
                timestamp = (packet.timestamp + self._timestamp_offset) & 0xFFFFFFFF
        data = packet.data
        payload = data[packet.payload_start : packet.payload_end]
        if self._vp8:
            payload = self._rewrite_vp8(payload)
        extensions = self._extensions(packet, ntp_time)
        first = 0x90 if extensions else 0x80
        second = (data[1] & 0x80) | params.payload_type
        out = (
            bytes((first, second))
            + _SEQ_TS_SSRC.pack(sequence, timestamp, params.ssrc)
            + extensions
            + payload
        )
        self._history[sequence % HISTORY_PACKETS] = out
        if packet.forward_sequence > self._last_forward_sequence:
            self._last_forward_sequence = packet.forward_sequence
            self.last_sequence = sequence
            self.last_timestamp = timestamp
            self._last_sent_ms = now_ms
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return out

    def _extensions(self, packet: Packet, ntp_time: int) -> bytes:
        if not self._one_byte:
            return self._extension_block(packet, ntp_time)
        body = self._mid_bytes
        if self._abs_send_time_header and ntp_time:
            # 6.18 fixed point seconds, the low 24 bits (abs-send-time's definition)
            body += self._abs_send_time_header + ((ntp_time >> 14) & 0xFFFFFF).to_bytes(3, "big")
        if self._translate and packet.extension_profile:
            translate = self._translate
            for ident, value in parse_extensions(
                packet.data, packet.extension_profile, packet.extension_start, packet.extension_end
            ):
                ours = translate.get(ident)
                if ours is not None and 0 < len(value) <= 16:
                    body += bytes(((ours << 4) | (len(value) - 1),)) + value
        if not body:
            return b""
        padding = -len(body) % 4
        return (
            b"\xbe\xde" + ((len(body) + padding) // 4).to_bytes(2, "big") + body
            + b"\x00" * padding
        )

    def _extension_block(self, packet: Packet, ntp_time: int) -> bytes:
        elements: list[tuple[int, bytes]] = []
        if self._mid_element is not None:
            elements.append(self._mid_element)
        if self._abs_send_time_id is not None and ntp_time:
            # 6.18 fixed point seconds, the low 24 bits (abs-send-time's definition)
            send_time = ((ntp_time >> 14) & 0xFFFFFF).to_bytes(3, "big")
            elements.append((self._abs_send_time_id, send_time))
        if self._translate and packet.extension_profile:
            translate = self._translate
            for ident, value in parse_extensions(
                packet.data, packet.extension_profile, packet.extension_start, packet.extension_end
            ):
                ours = translate.get(ident)
                if ours is not None:
                    elements.append((ours, value))
        return extension_block(elements)

    def _rewrite_vp8(self, payload: bytes) -> bytes:
        if (
            not self._picture_id_offset and not self._tl0_offset and len(payload) > 4
            and payload[0] & 0x80 and payload[1] & 0x80 and payload[2] & 0x80
        ):
            # Nothing to rewrite (X, I and a 15-bit picture id): only note where it is.
            self._last_picture_id = ((payload[2] & 0x7F) << 8) | payload[3]
            if payload[1] & 0x40:
                self._last_tl0 = payload[4]
            return payload
        descriptor = Vp8Descriptor.parse(payload)
        if descriptor is None:
            return payload
        if descriptor.picture_id is not None:
            descriptor.picture_id = (descriptor.picture_id + self._picture_id_offset) & 0x7FFF
            self._last_picture_id = descriptor.picture_id
        if descriptor.tl0_pic_index is not None:
            descriptor.tl0_pic_index = (descriptor.tl0_pic_index + self._tl0_offset) & 0xFF
            self._last_tl0 = descriptor.tl0_pic_index
        unchanged = (
            (descriptor.picture_id is None or descriptor.picture_id_bits == 15)
            and self._picture_id_offset == 0
            and self._tl0_offset == 0
        )
        if unchanged:
            return payload
        return descriptor.encode() + payload[descriptor.size :]

    # ----------------------------------------------------------- RTCP from the subscriber

    def retransmissions(self, sequences: list[int]) -> list[bytes]:
        """Answers to a NACK from the history: RTX packets where RTX is negotiated
        (RFC 4588), else the packets again."""
        params = self.parameters
        answers = []
        for sequence in sequences:
            self.nacked += 1
            sent = self._history[sequence % HISTORY_PACKETS]
            if sent is None or (sent[2] << 8 | sent[3]) != sequence:
                self.nacks_unanswered += 1
                continue
            self.retransmitted += 1
            if params.rtx_payload_type is None or params.rtx_ssrc is None:
                answers.append(sent)
                continue
            original = Packet(sent)
            header = bytearray(sent[: original.payload_start])
            header[1] = (header[1] & 0x80) | params.rtx_payload_type
            header[2:FIXED_HEADER] = _SEQ_TS_SSRC.pack(
                self._rtx_sequence, original.timestamp, params.rtx_ssrc
            )
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
            answers.append(bytes(header) + sent[2:4] + original.payload)
        return answers

    def on_receiver_report(self, block: rtcp.ReportBlock, ntp_time: int) -> None:
        """Take the subscriber's report on this stream: loss, and the round trip
        from LSR and DLSR (RFC 3550 section 6.4.1)."""
        self.fraction_lost = block.fraction_lost
        self.packets_lost = block.packets_lost
        ntp_ms = (ntp_time >> 32) * 1000 + ((ntp_time & 0xFFFFFFFF) * 1000 >> 32)
        self.bandwidth.on_receiver_report(block.fraction_lost, self.octets_sent, ntp_ms)
        if block.last_sr:
            since = rtcp.ntp_middle(ntp_time) - block.last_sr - block.delay_since_last_sr
            rtt = since & 0xFFFFFFFF
            if rtt < 1 << 31:
                self.rtt_ms = rtt * 1000 / 65536

    def sender_report(self, now_ms: int, ntp_time: int) -> bytes:
        """This stream's SR: the RTP time of ``now_ms`` and the real counts (b"" before
        anything was sent)."""
        if self.last_timestamp is None:
            return b""
        elapsed = (now_ms - self._last_sent_ms) * self.parameters.clock_rate // 1000
        return rtcp.sender_report(
            self.parameters.ssrc,
            ntp_time,
            self.last_timestamp + elapsed,
            self.packets_sent,
            self.octets_sent,
        )
