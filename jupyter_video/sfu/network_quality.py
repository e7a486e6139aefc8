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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    available: int | None = None
    """The bandwidth estimate (bit/s) of the direction, None: none made."""
    measured: bool = False

    def level(self) -> int:
        return level(self.loss, self.rtt_ms, self.jitter_ms) if self.measured else 5

    def bandwidth_level(self) -> int | None:
        """5 while what is sent fits the estimate, falling by one for each 20 % of it
        that does not (None without an estimate)."""
        if self.available is None:
            return None
        if self.bitrate <= self.available:
            return 5
        return max(0, 5 - int((self.bitrate - self.available) * 5 / self.bitrate) - 1)

    def stats(self) -> dict[str, object]:
        """``sendStats``/``recvStats`` as twilio-video reads them
        (lib/stats/networkqualitysendorrecvstats.js): bandwidth, fraction lost and
        latency, each with its level. ``available`` is the downlink estimate on the
        receiving side (sfu/bandwidth.py ``DownlinkEstimate``, else the subscriber's
        REMB); the SFU makes none of a publisher's uplink, whose sender estimates it,
        so ``sendStats`` has it null. Its level is how much of what is sent fits."""
        return {
            "bandwidth": {"actual": self.bitrate, "available": self.available,
                          "level": self.bandwidth_level()},
            "fractionLost": {"fractionLost": round(self.loss, 4),
                             "level": _level(self.loss, LOSS_STEPS)},
            "latency": {"jitter": round(self.jitter_ms, 1), "rtt": round(self.rtt_ms, 1),
                        "level": min(_level(self.rtt_ms, RTT_STEPS_MS),
                                     _level(self.jitter_ms, JITTER_STEPS_MS))},
        }


@dataclass
class Levels:
    """A participant's levels (``networkQualityLevels`` in twilio-video.js)."""

    audio_send: int = 5
    audio_recv: int = 5
    video_send: int = 5
    video_recv: int = 5
    measured: dict[str, Direction] = field(default_factory=dict)
    """What the levels came from: "audio_send", "video_recv", ... (verbosity 3)."""

    @property
    def level(self) -> int:
        return min(self.audio_send, self.audio_recv, self.video_send, self.video_recv)

    def to_msp(self, verbosity: int, sid: str | None = None) -> int | dict[str, object]:
        """The level as networkqualitysignaling.js reads it: the number at verbosity 1,
        the decomposed levels from 2 on, their stats at 3 (``remotes`` entries carry
        the sid)."""
        if verbosity <= 1 and sid is None:
            return self.level
        body: dict[str, object] = {"level": self.level}
        if sid is not None:
            body["sid"] = sid
        if verbosity >= 2:
            for kind in ("audio", "video"):
                media: dict[str, object] = {"send": getattr(self, f"{kind}_send"),
                                            "recv": getattr(self, f"{kind}_recv")}
                if verbosity >= 3:
                    for side in ("send", "recv"):
                        direction = self.measured.get(f"{kind}_{side}")
                        media[f"{side}Stats"] = direction.stats() if direction else None
                body[kind] = media
        return body


@dataclass
class Request:
    """What a participant's ``network_quality`` inputs ask for (networkqualitysignaling.js):
    the verbosity of its own level and of the others', and its ICE round trip."""

    report_level: int = 1
    remote_report_level: int = 0
    client_rtt_ms: float = 0.0

    def read(self, body: dict[str, Any]) -> bool:
        """Take one input message; whether it wants an answer."""
        self.report_level = int(body.get("reportLevel", 1) or 0)
        self.remote_report_level = int(body.get("remoteReportLevel", 0) or 0)
        ice = body.get("ice") or {}
        if isinstance(ice.get("rtt"), int | float):
            self.client_rtt_ms = float(ice["rtt"]) * 1000
        return self.report_level > 0


def answer(request: Request, levels: Levels, own_sid: str,
           others: Iterable[tuple[str, Levels]]) -> dict[str, object]:
    """The ``network_quality`` message for ``request``: the participant's own levels,
    and those of ``others`` (sid, levels: the participants that enabled the API, as
    Twilio documents) when it asks for remote levels."""
    remotes = []
    if request.remote_report_level > 0:
        remotes = [other.to_msp(request.remote_report_level, sid)
                   for sid, other in others if sid != own_sid]
    return {"type": "network_quality", "local": levels.to_msp(request.report_level),
            "remotes": remotes}


def others_levels(peers: dict[str, Any]) -> Iterator[tuple[str, Levels]]:
    """(sid, levels) of the peers of a room whose media signaling has the
    ``network_quality`` channel open (WebRTC and media socket peers alike)."""
    for sid, peer in peers.items():
        signaling = getattr(peer, "media_signaling", None)
        if signaling is not None and "network_quality" in signaling.channels:
            yield sid, signaling.levels
