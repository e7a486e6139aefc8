"""The room monitor's series: per participant, per direction, what its peer measured.

Each participant's client (the widget's twilio-video room, a kernel's aiortc
peer connection) reports a sample every few seconds on its classroom channel:
send and receive bitrate, packet loss, jitter and frame rate. Uplink loss is
what the SFU's receiver reports back to the sender (RTCP receiver reports,
``remote-inbound-rtp``), so a lossy uplink shows on the sender's own row.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any

SERIES_LENGTH = 600  # samples kept per room (10 minutes of 5 participants at 5 s)
LOSS_WARNING = 0.05  # fraction of packets lost above which the teacher is warned
WARNING_WINDOW = 15.0  # seconds of samples a warning looks at
SPEAKER_WINDOW = 10.0  # seconds a reported dominant speaker stays "speaking"

FIELDS = ("bitrate_kbps", "packet_loss", "jitter_ms", "fps")
DIRECTIONS = ("send", "receive")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class Monitor:
    """Samples of every room, newest last."""

    def __init__(self) -> None:
        self._rows: dict[str, collections.deque[dict[str, Any]]] = collections.defaultdict(
            lambda: collections.deque(maxlen=SERIES_LENGTH))
        # room -> (identity, when): the dominant speaker the participants' clients
        # were last told by the SFU (its active_speaker channel)
        self._speakers: dict[str, tuple[str, float]] = {}

    def speaker(self, room: str, identity: object) -> None:
        if isinstance(identity, str) and identity:
            self._speakers[room] = (identity[:128], time.time())

    def speaking(self, rooms: list[str], now: float | None = None) -> dict[str, str]:
        """room -> who is speaking there now, as its participants last reported."""
        now = time.time() if now is None else now
        return {room: self._speakers[room][0] for room in rooms
                if room in self._speakers and now - self._speakers[room][1] <= SPEAKER_WINDOW}

    def add(self, main: str, room: str, identity: str, samples: list[dict[str, Any]]) -> None:
        now = time.time()
        for sample in samples[:16]:  # a client reports a few tracks at a time
            direction = sample.get("direction")
            kind = sample.get("kind")
            if direction not in DIRECTIONS or kind not in ("audio", "video"):
                continue
            row: dict[str, Any] = {
                "time": now, "room": room, "identity": identity,
                "direction": direction, "kind": kind,
                "source": str(sample.get("source", "client"))[:16],
            }
            for name in FIELDS:
                row[name] = _number(sample.get(name))
            self._rows[main].append(row)

    def rows(self, main: str) -> list[dict[str, Any]]:
        """The series as rows: ``pandas.DataFrame(rows)`` makes the table."""
        return list(self._rows.get(main, ()))

    def warnings(self, main: str, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        worst: dict[tuple[str, str], float] = {}
        for row in self.rows(main):
            loss = row["packet_loss"]
            if now - row["time"] > WARNING_WINDOW or loss is None:
                continue
            key = (row["identity"], row["direction"])
            worst[key] = max(worst.get(key, 0.0), loss)
        return [
            f"{identity}'s {'uplink' if direction == 'send' else 'downlink'} is losing "
            f"{round(loss * 100)} % of packets"
            for (identity, direction), loss in sorted(worst.items())
            if loss >= LOSS_WARNING
        ]
