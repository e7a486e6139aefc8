"""The RTCP packets the SFU reads and writes, as bytes (RFC 3550 section 6,
RFC 4585 feedback, RFC 5104 FIR, draft-alvestrand-rmcat-remb).

Builders return one packet each; a compound packet is their concatenation.
:func:`packets` walks a compound packet without building objects for the
parts the SFU does not read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

SR = 200
RR = 201
SDES = 202
BYE = 203
RTPFB = 205
PSFB = 206

NACK_FMT = 1
PLI_FMT = 1
FIR_FMT = 4
REMB_FMT = 15

_SSRC = struct.Struct("!I")
_TWO_SSRC = struct.Struct("!II")
_SR_INFO = struct.Struct("!IIIII")  # ssrc, ntp msw, ntp lsw, rtp timestamp, packets ; octets apart
_BLOCK = struct.Struct("!IBBHIIII")  # ssrc, fraction, lost(24: 8+16), ext seq, jitter, lsr, dlsr


def _header(count: int, packet_type: int, body_length: int) -> bytes:
    return struct.pack("!BBH", 0x80 | count, packet_type, body_length // 4)


@dataclass
class ReportBlock:
    """One reception report (RFC 3550 section 6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Lost since the last report, in 1/256."""
    packets_lost: int
    highest_sequence: int
    """Extended highest sequence number received."""
    jitter: int
    last_sr: int
    """Middle 32 bits of the NTP time of the last SR received from ``ssrc``."""
    delay_since_last_sr: int
    """In 1/65536 s."""

    def encode(self) -> bytes:
        lost = max(-(1 << 23), min(self.packets_lost, (1 << 23) - 1)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            self.fraction_lost,
            lost >> 16,
            lost & 0xFFFF,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def decode(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, fraction, lost_high, lost_low, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(
            data, offset
        )
        lost = (lost_high << 16) | lost_low
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, fraction, lost, highest, jitter, lsr, dlsr)


def sender_report(
    ssrc: int,
    ntp_time: int,
    rtp_timestamp: int,
    packets: int,
    octets: int,
    reports: Sequence[ReportBlock] = (),
) -> bytes:
    """An SR: ``ntp_time`` is 64-bit NTP (seconds << 32 | fraction)."""
    body = _SR_INFO.pack(
        ssrc, ntp_time >> 32, ntp_time & 0xFFFFFFFF, rtp_timestamp & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
    ) + _SSRC.pack(octets & 0xFFFFFFFF)
    body += b"".join(r.encode() for r in reports)
    return _header(len(reports), SR, len(body)) + body


def receiver_report(ssrc: int, reports: Sequence[ReportBlock]) -> bytes:
    body = _SSRC.pack(ssrc) + b"".join(r.encode() for r in reports)
    return _header(len(reports), RR, len(body)) + body


def nack(sender_ssrc: int, media_ssrc: int, sequences: Sequence[int]) -> bytes:
    """A Generic NACK (RFC 4585 section 6.2.1) for ``sequences`` (16-bit)."""
    items = bytearray()
    ordered = sorted({s & 0xFFFF for s in sequences})
    i = 0
    while i < len(ordered):
        pid = ordered[i]
        mask = 0
        i += 1
        while i < len(ordered) and (ordered[i] - pid) & 0xFFFF <= 16:
            mask |= 1 << (((ordered[i] - pid) & 0xFFFF) - 1)
            i += 1
        items += struct.pack("!HH", pid, mask)
    body = _TWO_SSRC.pack(sender_ssrc, media_ssrc) + bytes(items)
    return _header(NACK_FMT, RTPFB, len(body)) + body


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """A Picture Loss Indication (RFC 4585 section 6.3.1)."""
    return _header(PLI_FMT, PSFB, 8) + _TWO_SSRC.pack(sender_ssrc, media_ssrc)


def fir(sender_ssrc: int, media_ssrc: int, sequence: int) -> bytes:
    """A Full Intra Request (RFC 5104 section 4.3.1)."""
    entry = _SSRC.pack(media_ssrc) + bytes([sequence & 0xFF]) + b"\0\0\0"
    body = _TWO_SSRC.pack(sender_ssrc, 0) + entry
    return _header(FIR_FMT, PSFB, len(body)) + body


def remb(sender_ssrc: int, bitrate: int, ssrcs: Sequence[int]) -> bytes:
    """Receiver Estimated Maximum Bitrate: 6-bit exponent, 18-bit mantissa."""
    exponent = 0
    mantissa = max(0, bitrate)
    while mantissa >= 1 << 18:
        mantissa >>= 1
        exponent += 1
    body = (
        _TWO_SSRC.pack(sender_ssrc, 0)
        + b"REMB"
        + struct.pack("!BBH", len(ssrcs), (exponent << 2) | (mantissa >> 16), mantissa & 0xFFFF)
        + b"".join(_SSRC.pack(s) for s in ssrcs)
    )
    return _header(REMB_FMT, PSFB, len(body)) + body


def packets(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(packet type, count or format, start, end) of each packet of a compound
    RTCP packet; ``start`` is where the body after the 4-byte header begins."""
    i = 0
    while i + 4 <= len(data):
        first = data[i]
        length = 4 * (((data[i + 2] << 8) | data[i + 3]) + 1)
        end = i + length
        if first >> 6 != 2 or end > len(data):
            return
        yield data[i + 1], first & 0x1F, i + 4, end
        i = end


def report_blocks(
    data: bytes, packet_type: int, count: int, start: int, end: int
) -> list[ReportBlock]:
    """The reception reports of an SR or RR."""
    offset = start + (24 if packet_type == SR else 4)
    blocks = []
    for _ in range(count):
        if offset + 24 > end:
            break
        blocks.append(ReportBlock.decode(data, offset))
        offset += 24
    return blocks


def sender_info(data: bytes, start: int) -> tuple[int, int, int]:
    """(sender SSRC, NTP time, RTP timestamp) of an SR."""
    ssrc, msw, lsw, timestamp, _ = _SR_INFO.unpack_from(data, start)
    return ssrc, (msw << 32) | lsw, timestamp


def media_ssrc(data: bytes, start: int) -> int:
    """The media source SSRC a feedback packet (RTPFB / PSFB) is about."""
    return int(_SSRC.unpack_from(data, start + 4)[0])


def nacked(data: bytes, start: int, end: int) -> list[int]:
    """The sequence numbers a Generic NACK asks for."""
    lost = []
    for offset in range(start + 8, end - 3, 4):
        pid, mask = struct.unpack_from("!HH", data, offset)
        lost.append(pid)
        for bit in range(16):
            if mask & (1 << bit):
                lost.append((pid + bit + 1) & 0xFFFF)
    return lost


def fir_ssrcs(data: bytes, start: int, end: int) -> list[int]:
    """The SSRCs a FIR asks keyframes of."""
    return [int(_SSRC.unpack_from(data, o)[0]) for o in range(start + 8, end - 7, 8)]


def remb_bitrate(data: bytes, start: int, end: int) -> tuple[int, list[int]] | None:
    """(bitrate, SSRCs) of a REMB, None when the PSFB is another application's."""
    if end - start < 16 or data[start + 8 : start + 12] != b"REMB":
        return None
    count = data[start + 12]
    exponent = data[start + 13] >> 2
    mantissa = ((data[start + 13] & 0x03) << 16) | (data[start + 14] << 8) | data[start + 15]
    ssrcs = [int(_SSRC.unpack_from(data, start + 16 + 4 * k)[0]) for k in range(count)
             if start + 20 + 4 * k <= end]
    return mantissa << exponent, ssrcs


def ntp_middle(ntp_time: int) -> int:
    """The middle 32 bits of a 64-bit NTP time (what LSR carries)."""
    return (ntp_time >> 16) & 0xFFFFFFFF
