"""Which packets to ask a publisher for again (RFC 4585 Generic NACK), and when.

As mediasoup's ``NackGenerator``: a gap in the sequence numbers is asked for at
once, then again every round trip, at most :data:`MAX_RETRIES` times; packets
too far behind are given up, and a gap too large to repair asks for a
keyframe instead.
"""

from __future__ import annotations

from .clock import now_ms as monotonic_ms

MAX_RETRIES = 10
MAX_AGE = 1000
"""Sequence numbers behind the newest packet after which a gap is given up."""
MAX_MISSING = 500
"""More missing packets than this: repairing costs more than a keyframe."""
MIN_INTERVAL_MS = 20
"""The least time between two NACKs for one packet (a round trip on loopback is ~0)."""


class NackGenerator:
    """The missing packets of one received stream (extended sequence numbers)."""

    __slots__ = ("asked", "highest", "keyframe_needed", "missing", "recovered", "rtt_ms")

    def __init__(self) -> None:
        self.highest: int | None = None
        self.missing: dict[int, list[int]] = {}
        """Missing sequence number -> [times asked, when last asked (ms)]."""
        self.keyframe_needed = False
        """Set when a gap was too large to repair: the caller sends a PLI and clears it."""
        self.recovered = 0
        """Packets that arrived after being counted missing (retransmitted or late)."""
        self.asked = 0
        """Sequence numbers NACKed so far (each retry counted)."""
        self.rtt_ms: float | None = None
        """The round trip as NACK to retransmission measured it (smoothed), None
        before one was: only packets asked for once count (Karn's rule: after a
        retry, which NACK an arrival answers is unknown)."""

    def on_packet(self, sequence: int, now_ms: int | None = None) -> bool:
        """Note a packet's arrival (at ``now_ms``, the clock :meth:`due` is given;
        read when a gap fills and None); True when it fills a gap."""
        highest = self.highest
        if highest is None:
            self.highest = sequence
            return False
        if sequence > highest:
            if sequence - highest - 1 + len(self.missing) > MAX_MISSING:
                self.missing.clear()
                self.keyframe_needed = True
            else:
                for lost in range(highest + 1, sequence):
                    self.missing[lost] = [0, -1 << 30]
            self.highest = sequence
            if self.missing:
                oldest = sequence - MAX_AGE
                for old in [s for s in self.missing if s < oldest]:
                    del self.missing[old]
            return False
        state = self.missing.pop(sequence, None)
        if state is not None:
            self.recovered += 1
            if state[0] == 1:
                sample = max((monotonic_ms() if now_ms is None else now_ms) - state[1], 0)
                rtt = self.rtt_ms
                self.rtt_ms = sample if rtt is None else rtt + (sample - rtt) / 8
            return True
        return False

    def due(self, now_ms: int, rtt_ms: int) -> list[int]:
        """The sequence numbers to NACK now (each counted as asked once more)."""
        if not self.missing:
            return []
        interval = max(rtt_ms, MIN_INTERVAL_MS)
        asking = []
        for sequence, state in list(self.missing.items()):
            if state[0] >= MAX_RETRIES:
                del self.missing[sequence]
            elif now_ms - state[1] >= interval:
                state[0] += 1
                state[1] = now_ms
                asking.append(sequence)
        self.asked += len(asking)
        return asking

    def reset(self) -> None:
        self.highest = None
        self.missing.clear()
