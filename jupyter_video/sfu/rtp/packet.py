"""An RTP packet's header, parsed once on arrival (RFC 3550 section 5.1).

A :class:`Packet` keeps the bytes it came in and the offsets of what a
forwarder reads or rewrites: the fixed header fields, the header extension
block (RFC 8285) and the payload without padding. It is made once per packet
received and shared by every subscriber's send stream.
"""

from __future__ import annotations

import struct

RTP_VERSION = 2
FIXED_HEADER = 12
ONE_BYTE_PROFILE = 0xBEDE
"""RFC 8285 section 4.2: one-byte header extensions (ids 1-14)."""
TWO_BYTE_PROFILE = 0x1000
"""RFC 8285 section 4.3: two-byte header extensions (the low 4 bits are app bits)."""

_HEADER = struct.Struct("!BBHII")


class Packet:
    """One RTP packet: its bytes and what its header says."""

    __slots__ = (
        "arrival_ms",
        "audio_level",
        "data",
        "extended_sequence",
        "extension_end",
        "extension_profile",
        "extension_start",
        "forward_sequence",
        "keyframe",
        "marker",
        "payload_end",
        "payload_start",
        "payload_type",
        "sequence",
        "ssrc",
        "timestamp",
    )

    def __init__(self, data: bytes, arrival_ms: int = 0) -> None:
        """Parse ``data``; ValueError when it is not an RTP packet."""
        if len(data) < FIXED_HEADER:
            raise ValueError(f"RTP packet of {len(data)} bytes is shorter than its header")
        first, second, self.sequence, self.timestamp, self.ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"RTP version {first >> 6}, expected 2")
        self.data = data
        self.arrival_ms = arrival_ms
        self.marker = bool(second & 0x80)
        self.payload_type = second & 0x7F
        offset = FIXED_HEADER + 4 * (first & 0x0F)  # CSRCs
        self.extension_profile = 0
        self.extension_start = self.extension_end = offset
        if first & 0x10:
            if len(data) < offset + 4:
                raise ValueError("RTP header extension truncated")
            self.extension_profile = (data[offset] << 8) | data[offset + 1]
            words = (data[offset + 2] << 8) | data[offset + 3]
            self.extension_start = offset + 4
            offset = self.extension_end = self.extension_start + 4 * words
        end = len(data)
        if first & 0x20:  # padding: the last byte counts it (RFC 3550 section 5.1)
            end -= data[-1]
        if offset > end:
            raise ValueError("RTP header or padding longer than the packet")
        self.payload_start = offset
        self.payload_end = end
        self.extended_sequence = self.sequence
        """The sequence number with its roll-overs counted (set by the receive stream)."""
        self.forward_sequence = self.sequence
        """The publication's own numbering, without the padding it dropped (set by
        the receive stream): what subscribers' sequence numbers follow."""
        self.keyframe = False
        """Whether this packet starts a keyframe (set by the receive stream)."""
        self.audio_level: int | None = None

    @property
    def payload(self) -> bytes:
        return self.data[self.payload_start : self.payload_end]

    @property
    def padding_only(self) -> bool:
        """A packet with nothing but padding (a browser probing bandwidth)."""
        return self.payload_start == self.payload_end

    def extensions(self) -> list[tuple[int, bytes]]:
        """The header extension elements as (id, value), in order."""
        return parse_extensions(
            self.data, self.extension_profile, self.extension_start, self.extension_end
        )

    def extension(self, extension_id: int) -> bytes | None:
        """The value of header extension ``extension_id``, if the packet has it."""
        if self.extension_profile == 0:
            return None
        for found, value in self.extensions():
            if found == extension_id:
                return value
        return None


def parse_extensions(data: bytes, profile: int, start: int, end: int) -> list[tuple[int, bytes]]:
    """RFC 8285 elements between ``start`` and ``end`` of ``data``."""
    elements: list[tuple[int, bytes]] = []
    i = start
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            byte = data[i]
            if byte == 0:  # padding between elements
                i += 1
                continue
            ident, length = byte >> 4, (byte & 0x0F) + 1
            if ident == 15:  # reserved: stop parsing (RFC 8285 section 4.2)
                break
            elements.append((ident, data[i + 1 : i + 1 + length]))
            i += 1 + length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE:
        while i + 1 < end:
            ident = data[i]
            if ident == 0:
                i += 1
                continue
            length = data[i + 1]
            elements.append((ident, data[i + 2 : i + 2 + length]))
            i += 2 + length
    return elements


def extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """The header extension (profile, length and elements, padded to 32 bits) for
    ``elements``: one-byte form when every id and length allows it, else two-byte."""
    if not elements:
        return b""
    if all(0 < i < 15 and 0 < len(v) <= 16 for i, v in elements):
        profile = ONE_BYTE_PROFILE
        body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements)
    else:
        profile = TWO_BYTE_PROFILE
        body = b"".join(bytes([i, len(v)]) + v for i, v in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", profile, len(body) // 4) + body


def build(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
    extensions: bytes = b"",
) -> bytes:
    """An RTP packet; ``extensions`` as :func:`extension_block` makes it."""
    first = 0x80 | (0x10 if extensions else 0)
    second = (0x80 if marker else 0) | payload_type
    return _HEADER.pack(first, second, sequence, timestamp, ssrc) + extensions + payload
