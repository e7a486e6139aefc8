"""The numbering of a room's status callbacks, kept with the room's records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .record import Record


@dataclass
class StatusCallbackSequence(Record):
    """The ``SequenceNumber`` a room's next status callback carries.

    Kept in the store so that it continues across a server restart: a receiver that
    orders or de-duplicates by it (as Twilio documents) never sees it start over.
    """

    kind: ClassVar[str] = "status_callback_sequence"

    sid: str  # the room's SID
    next: int = 0
