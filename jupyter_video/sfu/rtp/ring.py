"""The recent packets of one publication, shared by all its subscriptions.

A new subscriber starts from the last keyframe's first packet at once instead
of waiting for the round trip of a PLI, and retransmissions asked of the SFU
come from here (as LiveKit's ``buffer`` and mediasoup's ``RtpStreamSend``
retransmission buffer keep them).
"""

from __future__ import annotations

from .packet import Packet

RING_PACKETS = 1024
"""About 3 s of 1 Mbit/s video: a keyframe and the second or so after it fit."""
RECENT_FRAMES = 30
"""Frames after a keyframe up to which a new subscriber starts from it (1 s at
30 fps): a later one asks for a fresh keyframe rather than be sent seconds of
old video in a burst."""


class PacketRing:
    """The last ``size`` packets by extended sequence number, and where the last
    keyframe begins."""

    __slots__ = (
        "_frame_start",
        "_frames_since_keyframe",
        "_last_timestamp",
        "_mask",
        "_max_frames",
        "_slots",
        "highest",
        "keyframe_start",
    )

    def __init__(self, size: int = RING_PACKETS, max_frames: int = RECENT_FRAMES) -> None:
        if size & (size - 1):
            raise ValueError(f"ring size {size} is not a power of two")
        self._slots: list[Packet | None] = [None] * size
        self._mask = size - 1
        self.highest = -1
        """The highest extended sequence number held (-1: none yet)."""
        self.keyframe_start: int | None = None
        """Extended sequence number of the first packet of the last keyframe."""
        self._frame_start = -1
        self._last_timestamp = -1
        self._frames_since_keyframe = 0
        self._max_frames = max_frames

    def add(self, packet: Packet) -> None:
        """Hold ``packet`` (its ``extended_sequence`` and ``keyframe`` set)."""
        sequence = packet.extended_sequence
        self._slots[sequence & self._mask] = packet
        if sequence > self.highest:
            if packet.timestamp != self._last_timestamp:
                self._frame_start = sequence  # a new frame begins with this packet
                self._last_timestamp = packet.timestamp
                self._frames_since_keyframe += 1
            self.highest = sequence
        if packet.keyframe:
            # SPS/PPS may precede the IDR slice in packets of the same timestamp.
            same_frame = packet.timestamp == self._last_timestamp
            self.keyframe_start = min(self._frame_start, sequence) if same_frame else sequence
            self._frames_since_keyframe = 0

    def get(self, sequence: int) -> Packet | None:
        """The packet of extended sequence number ``sequence``, if still held."""
        packet = self._slots[sequence & self._mask]
        if packet is None or packet.extended_sequence != sequence:
            return None
        return packet

    def __contains__(self, sequence: int) -> bool:
        return self.get(sequence) is not None

    def from_keyframe(self, recent: bool = True) -> list[Packet] | None:
        """The packets from the last keyframe on, in order (None: no keyframe held,
        or, when ``recent``, one more than ``max_frames`` ago)."""
        start = self.keyframe_start
        if start is None or self.highest - start > self._mask:
            return None
        if recent and self._frames_since_keyframe >= self._max_frames:
            return None
        held = (self.get(s) for s in range(start, self.highest + 1))
        return [p for p in held if p is not None]

    def clear(self) -> None:
        self._slots = [None] * (self._mask + 1)
        self.highest = -1
        self.keyframe_start = None
        self._frame_start = self._last_timestamp = -1
        self._frames_since_keyframe = 0
