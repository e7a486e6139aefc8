"""Frames on demand: RTP packets to complete encoded frames (for recorders and
WebSocket subscribers) and encoded frames to RTP payloads (from WebSocket
publishers), for VP8 (RFC 7741), H.264 (RFC 6184, non-interleaved mode) and
Opus (RFC 7587: one packet, one frame).

Only a publication that has something needing frames runs a
:class:`FrameAssembler`, once for all of them.
"""

from __future__ import annotations

from collections.abc import Iterator

from .codecs import H264_FU_A, H264_STAP_A, Vp8Descriptor
from .packet import Packet

MAX_PAYLOAD = 1200
"""RTP payload bytes per packet: fits a 1500-byte MTU with SRTP, IP, UDP and TURN."""
_START_CODE = b"\x00\x00\x00\x01"


def vp8_depayload(payload: bytes) -> bytes:
    descriptor = Vp8Descriptor.parse(payload)
    return b"" if descriptor is None else payload[descriptor.size :]


def h264_depayload(payload: bytes) -> bytes:
    """Annex B NAL units of one payload (a FU-A fragment's start code goes with its start)."""
    if not payload:
        return b""
    nal_type = payload[0] & 0x1F
    if nal_type == H264_STAP_A:
        out = bytearray()
        i = 1
        while i + 2 <= len(payload):
            size = (payload[i] << 8) | payload[i + 1]
            out += _START_CODE + payload[i + 2 : i + 2 + size]
            i += 2 + size
        return bytes(out)
    if nal_type == H264_FU_A:
        if len(payload) < 2:
            return b""
        if payload[1] & 0x80:  # start: rebuild the NAL header from FU indicator and header
            return _START_CODE + bytes([(payload[0] & 0xE0) | (payload[1] & 0x1F)]) + payload[2:]
        return payload[2:]
    return _START_CODE + payload


class FrameAssembler:
    """Collects a stream's packets into frames: a frame is complete at its marker
    bit (video) or at once (audio), when no packet of it is missing."""

    __slots__ = ("_depayload", "_expected", "_keyframe", "_parts", "_timestamp", "_video")

    def __init__(self, mime_type: str) -> None:
        mime = mime_type.lower()
        self._video = mime.startswith("video/")
        self._depayload = (
            vp8_depayload if mime == "video/vp8" else h264_depayload if mime == "video/h264"
            else None
        )
        self._parts: list[bytes] = []
        self._timestamp = -1
        self._expected = -1
        self._keyframe = False

    def push(self, packet: Packet) -> tuple[bytes, int, bool] | None:
        """Add ``packet`` (in order of arrival); returns (frame, RTP timestamp,
        keyframe) when it completes one."""
        payload = packet.data[packet.payload_start : packet.payload_end]
        if not self._video:
            return payload, packet.timestamp, True
        sequence = packet.forward_sequence
        if packet.timestamp != self._timestamp:
            self._parts = []
            self._timestamp = packet.timestamp
            self._keyframe = packet.keyframe
            self._expected = sequence if self._starts_frame(payload) else -1
        elif packet.keyframe:
            self._keyframe = True
        if sequence != self._expected:
            self._expected = -1  # a packet of this frame is missing (or late): skip it
            return None
        self._expected = sequence + 1
        assert self._depayload is not None
        self._parts.append(self._depayload(payload))
        if not packet.marker:
            return None
        frame, self._parts = b"".join(self._parts), []
        self._expected = -1
        return frame, packet.timestamp, self._keyframe

    def _starts_frame(self, payload: bytes) -> bool:
        if self._depayload is vp8_depayload:
            descriptor = Vp8Descriptor.parse(payload)
            return descriptor is not None and descriptor.start and descriptor.partition == 0
        if payload and payload[0] & 0x1F == H264_FU_A:
            return len(payload) > 1 and bool(payload[1] & 0x80)
        return True


class FramePacketizer:
    """Encoded frames to RTP payloads, one frame's payloads at a time."""

    def __init__(self, mime_type: str) -> None:
        self.mime_type = mime_type.lower()
        self._picture_id = 0

    def payloads(self, frame: bytes) -> list[bytes]:
        if self.mime_type == "video/vp8":
            return list(self._vp8(frame))
        if self.mime_type == "video/h264":
            return [p for nal in split_annexb(frame) for p in _h264_payloads(nal)]
        return [frame]

    def _vp8(self, frame: bytes) -> Iterator[bytes]:
        picture_id = self._picture_id
        self._picture_id = (picture_id + 1) & 0x7FFF
        size = MAX_PAYLOAD - 4
        for offset in range(0, max(len(frame), 1), size):
            start = 0x10 if offset == 0 else 0
            # X, then I with a 15-bit picture id (M=1)
            descriptor = bytes([0x80 | start, 0x80, 0x80 | picture_id >> 8, picture_id & 0xFF])
            yield descriptor + frame[offset : offset + size]


def _h264_payloads(nal: bytes) -> Iterator[bytes]:
    if len(nal) <= MAX_PAYLOAD:
        yield nal
        return
    indicator = (nal[0] & 0xE0) | H264_FU_A
    nal_type = nal[0] & 0x1F
    body = nal[1:]
    size = MAX_PAYLOAD - 2
    for offset in range(0, len(body), size):
        header = nal_type
        if offset == 0:
            header |= 0x80
        if offset + size >= len(body):
            header |= 0x40
        yield bytes([indicator, header]) + body[offset : offset + size]


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    nals = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        following = data.find(b"\x00\x00\x01", start)
        end = len(data) if following < 0 else following
        nal = data[start:end]
        if following >= 0 and nal.endswith(b"\x00"):
            nal = nal[:-1]  # the leading zero of a 4-byte start code
        if nal:
            nals.append(nal)
        i = following
    return nals
