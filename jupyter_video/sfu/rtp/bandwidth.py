"""What REMB tells a publisher it may send, from what its subscribers take.

One publication's packets go to every subscriber alike (no per-subscriber layer
choice here), so one rate serves them all. The policy: a subscriber that takes
what it gets (its Receiver Reports show at most :data:`CONGESTED_FRACTION_LOST`)
wants all of it; a congested one wants what its own feedback says it can take.
The publisher is told the most any subscriber wants, capped at
:data:`MAX_BITRATE`: a subscriber on a bad link never holds the others below
what they take; only when every subscriber is congested does the publisher slow
down, to what the best of them can take, never below :data:`MIN_BITRATE`.

Subscribers' REMB alone is not the measure: a receiver's estimate follows the
rate it receives (libwebrtc's AIMD allows ~1.5x of it), so passing it upstream
would hold a publisher's ramp-up to the receivers' slow growth.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_BITRATE = 3_000_000
"""The most a publisher is told to send: a 720p30 camera's VP8 at full quality."""
MIN_BITRATE = 150_000
"""The least: below it video is not worth sending, and audio must still pass."""
CONGESTED_FRACTION_LOST = 26
"""Loss above 10 % (of 256) in a Receiver Report: the subscriber's link is
congested (GCC's loss-based controller decreases above 10 %, holds from 2 %)."""
REMB_FRESH_MS = 5000
"""A subscriber's REMB older than this says nothing of now."""


class SubscriberBandwidth:
    """What one subscriber's RTCP says of its downlink for one send stream."""

    __slots__ = ("_last_octets", "_last_report_ms", "fraction_lost", "received_bps",
                 "remb_bps", "remb_ms")

    def __init__(self) -> None:
        self.remb_bps: int | None = None
        self.remb_ms = 0
        self.fraction_lost = 0
        self.received_bps: int | None = None
        """What was sent between its last two Receiver Reports, less what it lost."""
        self._last_report_ms: int | None = None
        self._last_octets = 0

    def on_remb(self, bitrate: int, now_ms: int) -> None:
        self.remb_bps, self.remb_ms = bitrate, now_ms

    def on_receiver_report(self, fraction_lost: int, octets_sent: int, now_ms: int) -> None:
        self.fraction_lost = fraction_lost
        if self._last_report_ms is not None and now_ms > self._last_report_ms:
            sent_bps = (octets_sent - self._last_octets) * 8000 // (now_ms - self._last_report_ms)
            self.received_bps = sent_bps * (256 - fraction_lost) // 256
        self._last_report_ms, self._last_octets = now_ms, octets_sent

    def wanted(self, now_ms: int) -> int | None:
        """None: the subscriber takes what comes; else the bit rate it can take
        (its fresh REMB, or what it received less half its loss: GCC's rule)."""
        if self.fraction_lost <= CONGESTED_FRACTION_LOST:
            return None
        candidates = []
        if self.remb_bps is not None and now_ms - self.remb_ms <= REMB_FRESH_MS:
            candidates.append(self.remb_bps)
        if self.received_bps is not None:
            candidates.append(self.received_bps * (512 - self.fraction_lost) // 512)
        return min(candidates) if candidates else None


def publisher_bitrate(wanted: Iterable[int | None]) -> int:
    """What REMB tells the publisher, from each subscriber's :meth:`SubscriberBandwidth.wanted`
    (none at all: :data:`MAX_BITRATE`)."""
    best = 0
    for rate in wanted:
        if rate is None:
            return MAX_BITRATE
        best = max(best, rate)
    if best == 0:
        return MAX_BITRATE
    return max(MIN_BITRATE, min(MAX_BITRATE, best))
