"""What an RTP payload says about the frame it carries, without depacketizing it.

Keyframes: VP8's P bit in the first partition's first byte (RFC 7741 section
4.3, RFC 6386 section 9.1); H.264's IDR slice, alone, in a STAP-A or at the
start of a FU-A (RFC 6184 section 5.4). The VP8 payload descriptor (RFC 7741
section 4.2) carries a picture id and TL0PICIDX that a receiver expects to run
on without gaps; :class:`Vp8Descriptor` reads them and writes them anew.
"""

from __future__ import annotations

from collections.abc import Callable

H264_IDR = 5
H264_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def vp8_keyframe(payload: bytes) -> bool:
    """Whether this VP8 payload starts a keyframe (the first packet of one)."""
    descriptor = Vp8Descriptor.parse(payload)
    if descriptor is None or not descriptor.start or descriptor.partition != 0:
        return False
    header = descriptor.size
    return len(payload) > header and payload[header] & 0x01 == 0


def h264_keyframe(payload: bytes) -> bool:
    """Whether this H.264 payload carries an IDR slice (or starts one, for FU-A) or
    the SPS that comes before one: a decoder starts there."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == H264_STAP_A:
        i = 1
        while i + 2 < len(payload):
            size = (payload[i] << 8) | payload[i + 1]
            if payload[i + 2] & 0x1F in (H264_IDR, H264_SPS):
                return True
            i += 2 + size
        return False
    if nal_type == H264_FU_A:
        return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == H264_IDR
    return nal_type in (H264_IDR, H264_SPS)


def keyframe_detector(mime_type: str) -> Callable[[bytes], bool] | None:
    """The function telling keyframes of ``mime_type`` (None: every packet stands alone)."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return vp8_keyframe
    if mime == "video/h264":
        return h264_keyframe
    return None


class Vp8Descriptor:
    """The VP8 payload descriptor at the start of a payload (RFC 7741 section 4.2)."""

    __slots__ = (
        "key_index",
        "layer_sync",
        "non_reference",
        "partition",
        "picture_id",
        "picture_id_bits",
        "size",
        "start",
        "temporal_id",
        "tk_byte",
        "tl0_pic_index",
    )

    def __init__(self) -> None:
        self.start = False
        self.partition = 0
        self.non_reference = False
        self.picture_id: int | None = None
        self.picture_id_bits = 0
        self.tl0_pic_index: int | None = None
        self.tk_byte: int | None = None
        self.temporal_id: int | None = None
        self.layer_sync = False
        self.key_index: int | None = None
        self.size = 0

    @classmethod
    def parse(cls, payload: bytes) -> Vp8Descriptor | None:
        """The descriptor, or None when ``payload`` is too short to hold one."""
        if not payload:
            return None
        d = cls()
        first = payload[0]
        d.non_reference = bool(first & 0x20)
        d.start = bool(first & 0x10)
        d.partition = first & 0x07
        i = 1
        if first & 0x80:  # X: extension byte
            if len(payload) < 2:
                return None
            ext = payload[1]
            i = 2
            if ext & 0x80:  # I: picture id
                if len(payload) <= i:
                    return None
                if payload[i] & 0x80:  # M: 15 bits
                    if len(payload) <= i + 1:
                        return None
                    d.picture_id = ((payload[i] & 0x7F) << 8) | payload[i + 1]
                    d.picture_id_bits = 15
                    i += 2
                else:
                    d.picture_id = payload[i] & 0x7F
                    d.picture_id_bits = 7
                    i += 1
            if ext & 0x40:  # L: TL0PICIDX
                if len(payload) <= i:
                    return None
                d.tl0_pic_index = payload[i]
                i += 1
            if ext & 0x30:  # T or K: TID / Y / KEYIDX
                if len(payload) <= i:
                    return None
                d.tk_byte = payload[i]
                if ext & 0x20:
                    d.temporal_id = payload[i] >> 6
                    d.layer_sync = bool(payload[i] & 0x20)
                if ext & 0x10:
                    d.key_index = payload[i] & 0x1F
                i += 1
        d.size = i
        return d

    def encode(self) -> bytes:
        """The descriptor's bytes; a picture id is always written in 15 bits (M=1)
        so that rewriting it never changes its width midway through a stream."""
        first = (0x20 if self.non_reference else 0) | (0x10 if self.start else 0) | self.partition
        ext = 0
        tail = bytearray()
        if self.picture_id is not None:
            ext |= 0x80
            tail += bytes([0x80 | (self.picture_id >> 8) & 0x7F, self.picture_id & 0xFF])
        if self.tl0_pic_index is not None:
            ext |= 0x40
            tail.append(self.tl0_pic_index & 0xFF)
        if self.tk_byte is not None:
            ext |= (0x20 if self.temporal_id is not None else 0) | (
                0x10 if self.key_index is not None else 0
            )
            tail.append(self.tk_byte)
        if not ext:
            return bytes([first])
        return bytes([first | 0x80, ext]) + bytes(tail)
