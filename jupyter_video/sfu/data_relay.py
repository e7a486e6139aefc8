"""What the data relay lets through: the size and rate limits of data track messages.

Every message a publisher sends on a data track (over its data channel or its
media socket) passes :meth:`DataAdmission.admit` once, before it is copied to any
subscriber. A message over the size limit, or beyond the rate of its publisher
(one :class:`MessageBudget` per participant, shared by all its data tracks), is
dropped there, so one participant's flood costs the others nothing but the
check. Drops are counted (``MediaStats`` -> ``/video/metrics``) and logged at
most once per :data:`LOG_INTERVAL` per publication, with the counts since.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .interface import DataLimits

logger = logging.getLogger(__name__)

LOG_INTERVAL = 10.0
"""Seconds between two warnings about one publication's dropped messages."""


@dataclass
class DataRelayCounts:
    """Totals of this process's data relay, since it started."""

    relayed: int = 0
    too_large: int = 0
    over_rate: int = 0


data_relay_counts = DataRelayCounts()


class MessageBudget:
    """A token bucket: ``rate`` messages a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        """Spend one message; False when the budget is spent (the message is dropped)."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def message_size(message: str | bytes) -> int:
    """Bytes on the wire: a text message goes as UTF-8 (RFC 8831 section 6.6)."""
    if isinstance(message, bytes):
        return len(message)
    return len(message) if message.isascii() else len(message.encode())


class DataAdmission:
    """The limits one data publication's messages pass (its publisher's budget shared)."""

    def __init__(self, limits: DataLimits, budget: MessageBudget, what: str) -> None:
        self.limits = limits
        self.budget = budget
        self.what = what  # "participant PA... track chat", for the log
        self.too_large = 0
        self.over_rate = 0
        self._logged_at = -LOG_INTERVAL
        self._unlogged = 0
        self._largest = 0

    def admit(self, message: str | bytes) -> bool:
        """Whether ``message`` is forwarded (counted either way)."""
        most = self.limits.max_message_bytes
        size = message_size(message) if most > 0 else 0
        if size > most > 0:
            self.too_large += 1
            data_relay_counts.too_large += 1
            self._largest = max(self._largest, size)
            self._dropped()
            return False
        if not self.budget.take():
            self.over_rate += 1
            data_relay_counts.over_rate += 1
            self._dropped()
            return False
        data_relay_counts.relayed += 1
        return True

    def _dropped(self) -> None:
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_INTERVAL:
            return
        self._logged_at = now
        limits = self.limits
        logger.warning(
            "data relay: %d message(s) of %s not forwarded (in all: %d over %d bytes, "
            "largest %d; %d beyond %g a second, burst %d): VideoApp.max_data_message_bytes, "
            "VideoApp.data_messages_per_second and data_message_burst set the limits",
            self._unlogged, self.what, self.too_large, limits.max_message_bytes,
            self._largest, self.over_rate, limits.messages_per_second, limits.burst)
        self._unlogged = 0
