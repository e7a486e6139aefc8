"""Network Quality levels (0-5) from what the packet path measures.

Twilio's Network Quality API gives each participant a level from 0 (broken) to 5
(excellent) per direction (send: its uplink, as the SFU receives it; recv: its
downlink, as its Receiver Reports tell) and media kind, and an overall level
that is the lowest of them. Each direction's level is the lowest of the levels
its loss, round trip and jitter earn on the thresholds below (Twilio names the
inputs, not the thresholds: these follow ITU-T G.1010's bands for conversational
media, coarsely).
"""

from __future__ import annotations

from dataclasses import dataclass

LOSS_STEPS = (0.01, 0.03, 0.06, 0.10, 0.20)
"""Loss fraction under each step: 5, 4, 3, 2, 1 (above the last: 0)."""
RTT_STEPS_MS = (150, 300, 500, 800, 1500)
JITTER_STEPS_MS = (20, 40, 70, 120, 200)


def _level(value: float, steps: tuple[float, ...]) -> int:
    for index, step in enumerate(steps):
        if value < step:
            return 5 - index
    return 0


def level(loss: float, rtt_ms: float = 0.0, jitter_ms: float = 0.0) -> int:
    """The level of one direction: the lowest that loss, RTT and jitter allow."""
    return min(_level(loss, LOSS_STEPS), _level(rtt_ms, RTT_STEPS_MS),
               _level(jitter_ms, JITTER_STEPS_MS))


@dataclass
class Direction:
    """What was measured of one direction of one kind over the last interval."""

    loss: float = 0.0
    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    bitrate: int = 0
    measured: bool = False

    def level(self) -> int:
        return level(self.loss, self.rtt_ms, self.jitter_ms) if self.measured else 5


@dataclass
class Levels:
    """A participant's levels (``networkQualityLevels`` in twilio-video.js)."""

    audio_send: int = 5
    audio_recv: int = 5
    video_send: int = 5
    video_recv: int = 5

    @property
    def level(self) -> int:
        return min(self.audio_send, self.audio_recv, self.video_send, self.video_recv)

    def to_msp(self, verbosity: int, sid: str | None = None) -> int | dict[str, object]:
        """The level as networkqualitysignaling.js reads it: the number at verbosity 1,
        the decomposed levels from 2 on (``remotes`` entries carry the sid)."""
        if verbosity <= 1 and sid is None:
            return self.level
        body: dict[str, object] = {"level": self.level}
        if sid is not None:
            body["sid"] = sid
        if verbosity >= 2:
            body["audio"] = {"send": self.audio_send, "recv": self.audio_recv}
            body["video"] = {"send": self.video_send, "recv": self.video_recv}
        return body
