"""The two clocks of the packet path: a monotonic millisecond clock for
intervals, and NTP wall time for Sender Reports (RFC 3550 section 4)."""

from __future__ import annotations

import time

_NTP_UNIX_EPOCH_NS = 2_208_988_800 * 1_000_000_000
"""1970-01-01 on the NTP timescale (from 1900-01-01), in nanoseconds."""


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def ntp_now() -> int:
    """64-bit NTP time: seconds << 32 | fraction, integer arithmetic only."""
    seconds, nanoseconds = divmod(time.time_ns() + _NTP_UNIX_EPOCH_NS, 1_000_000_000)
    return (seconds << 32) | (nanoseconds << 32) // 1_000_000_000
