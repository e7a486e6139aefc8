"""Which layer of each video track a subscriber gets, or whether it is switched off:
Twilio's Network Bandwidth Profile and Track Priority, as a pure function.

Inputs are a subscriber's ``bandwidth_profile.video`` (RSP connect/update, built
by twilio-video.js ``createBandwidthProfileVideoPayload`` in lib/util/index.js),
its render hints and subscribe priorities (MSP ``render_hints`` and
``track_priority``), the publishers' priorities, the layers each publication
sends (size and measured bitrate) and the subscriber's estimated downlink. The
rules are Twilio's documented ones (Bandwidth Profile API, "Track Priority and
Track Switch-Off"): a track the client says it does not render is off; the
render size picks the smallest layer with as many pixels; under a bitrate cap lower
priorities get lower layers first and are switched off first; ``presentation``
keeps non-high tracks at their lowest layer; ``track_switch_off: disabled``
never switches a track off for bandwidth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PRIORITY_RANK = {"low": 0, "standard": 1, "high": 2}
MODES = ("grid", "collaboration", "presentation")
SWITCH_OFF_MODES = ("disabled", "detected", "predicted")
DEFAULT_LAYER_BITRATES = (150_000, 500_000, 1_500_000)
"""Bits per second assumed for a layer (lowest first) before it was measured."""


@dataclass
class BandwidthProfile:
    """``bandwidth_profile.video`` as twilio-video.js sends it."""

    mode: str = "grid"
    max_subscription_bitrate: int | None = None
    """Bits per second for all the subscriber's video (None or 0: no cap)."""
    track_switch_off: str = "predicted"
    active_speaker_priority: str = "standard"
    render_dimensions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Priority -> the size tracks of that priority are rendered at (no render hints)."""
    max_tracks: int | None = None

    @classmethod
    def from_rsp(cls, payload: dict[str, Any] | None) -> BandwidthProfile | None:
        """The profile of an RSP ``bandwidth_profile`` (None: the client sent none).

        Raises ValueError naming the field to fix."""
        if payload is None:
            return None
        video = payload.get("video") or {}
        if not isinstance(video, dict):
            raise ValueError("bandwidth_profile.video must be an object")
        mode = video.get("mode", "grid")
        if mode not in MODES:
            raise ValueError(f"bandwidth_profile.video.mode must be one of {', '.join(MODES)}")
        switch_off = video.get("track_switch_off", "predicted")
        if switch_off not in SWITCH_OFF_MODES:
            raise ValueError("bandwidth_profile.video.track_switch_off must be one of "
                             + ", ".join(SWITCH_OFF_MODES))
        speaker = video.get("active_speaker_priority", "standard")
        if speaker not in PRIORITY_RANK:
            raise ValueError("bandwidth_profile.video.active_speaker_priority must be "
                             "low, standard or high")
        cap = video.get("max_subscription_bandwidth", video.get("max_subscription_bitrate"))
        if cap is not None and (not isinstance(cap, int | float) or cap < 0):
            raise ValueError("bandwidth_profile.video.max_subscription_bandwidth must be "
                             "a number of bits per second")
        dimensions: dict[str, tuple[int, int]] = {}
        for priority, size in (video.get("render_dimensions") or {}).items():
            if priority in PRIORITY_RANK and isinstance(size, dict):
                dimensions[priority] = (int(size.get("width", 0)), int(size.get("height", 0)))
        max_tracks = video.get("max_tracks")
        return cls(mode=mode, max_subscription_bitrate=int(cap) if cap else None,
                   track_switch_off=switch_off, active_speaker_priority=speaker,
                   render_dimensions=dimensions,
                   max_tracks=int(max_tracks) if max_tracks else None)


@dataclass
class VideoDemand:
    """One video track a subscriber is subscribed to."""

    track_sid: str
    priority: str = "standard"
    """The effective priority: the subscriber's, else the publisher's."""
    rendered: bool | None = None
    """The client's last render hint ``enabled`` (None: it sent none)."""
    render_size: tuple[int, int] | None = None
    layer_sizes: Sequence[tuple[int, int] | None] = (None,)
    """Each layer's frame size (lowest first; None where not known yet)."""
    layer_bitrates: Sequence[int] = (0,)
    """Each layer's measured bits per second (0: not measured or not sending)."""
    dominant_speaker: bool = False


def _wanted_layer(demand: VideoDemand, profile: BandwidthProfile | None) -> int:
    """The lowest layer with as many pixels as the track is rendered at."""
    top = len(demand.layer_sizes) - 1
    size = demand.render_size
    if size is None and profile is not None:
        size = profile.render_dimensions.get(demand.priority)
    if size is None or top == 0:
        return top
    sizes = list(demand.layer_sizes)
    if sizes[top] is not None and all(s is None for s in sizes[:top]):
        # Chrome's simulcast scales each lower layer by half (webrtc's
        # simulcast_encoder_adapter, scaleResolutionDownBy 4, 2, 1).
        width, height = sizes[top]  # type: ignore[misc]
        sizes = [(width >> (top - i), height >> (top - i)) for i in range(top + 1)]
    # By pixel count, not width and height each: a tile of another aspect ratio
    # (object-fit: cover crops) is as sharp from a layer with as many pixels.
    for index, layer in enumerate(sizes):
        if layer is not None and layer[0] * layer[1] >= size[0] * size[1]:
            return index
    if all(s is None for s in sizes):
        # Sizes not seen yet: a quarter of 1280x720 or less is layer 0, half layer 1.
        area = size[0] * size[1]
        return 0 if area <= 320 * 180 else min(1, top) if area <= 640 * 360 else top
    return top


def _cost(demand: VideoDemand, layer: int) -> int:
    measured = demand.layer_bitrates[layer] if layer < len(demand.layer_bitrates) else 0
    if measured > 0:
        return measured
    count = len(demand.layer_sizes)
    return DEFAULT_LAYER_BITRATES[min(layer + (3 - count), 2)]


def allocate(
    demands: Sequence[VideoDemand],
    profile: BandwidthProfile | None,
    downlink_bps: int | None,
) -> dict[str, int | None]:
    """Track SID -> the layer index to forward (lowest 0), or None: switched off."""
    result: dict[str, int | None] = {}
    if profile is not None and profile.active_speaker_priority != "standard":
        demands = [
            VideoDemand(**{**d.__dict__, "priority": profile.active_speaker_priority})
            if d.dominant_speaker else d for d in demands
        ]
    budget: float | None = None
    caps = [c for c in (profile.max_subscription_bitrate if profile else None, downlink_bps) if c]
    if caps:
        budget = float(min(caps))
    wanted: dict[str, int] = {}
    live: list[VideoDemand] = []
    for demand in demands:
        if demand.rendered is False:
            result[demand.track_sid] = None
            continue
        layer = _wanted_layer(demand, profile)
        if profile is not None and profile.mode == "presentation" and demand.priority != "high":
            layer = 0
        wanted[demand.track_sid] = layer
        live.append(demand)
    # Highest priority first; among equals the order subscribed (a stable sort).
    live.sort(key=lambda d: -PRIORITY_RANK.get(d.priority, 1))
    if profile is not None and profile.max_tracks:
        for demand in live[profile.max_tracks:]:
            result[demand.track_sid] = None
        live = live[:profile.max_tracks]
    may_switch_off = profile is None or profile.track_switch_off != "disabled"
    spent = 0.0
    for demand in live:  # everyone's lowest layer first, in priority order
        cost = _cost(demand, 0)
        if budget is not None and spent + cost > budget and may_switch_off:
            result[demand.track_sid] = None
            continue
        result[demand.track_sid] = 0
        spent += cost
    # Then one layer up at a time, each round in priority order (grid, collaboration
    # and presentation alike: the wanted layer already says how far each may go).
    for step in range(1, max(wanted.values(), default=0) + 1):
        for demand in live:
            current = result.get(demand.track_sid)
            if current is None or current + 1 != step or step > wanted[demand.track_sid]:
                continue
            extra = _cost(demand, step) - _cost(demand, current)
            if budget is not None and spent + extra > budget:
                continue
            result[demand.track_sid] = step
            spent += extra
    return result


REMB_OVERUSE = 0.9
"""A subscriber's REMB under this share of what it was sent says its link is
overused: libwebrtc's receiver drops its estimate to 0.85x the rate it receives
when the queueing delay grows (AimdRateControl, draft-ietf-rmcat-gcc-02 5.5)."""

REMB_OVERUSE_INTERVALS = 2
"""Intervals in a row the REMB must stay under the rate sent to count: a new
subscription's first second carries a burst (the layer's last keyframe on,
from the ring) that a receiver's estimate, just started, never matched."""

REMB_WARM_UP_INTERVALS = 5
"""Intervals of video sent before the REMB counts: libwebrtc's receive-side
estimate is not initialised for its first 5 s (AimdRateControl
``kInitializationTime``) and follows the rate it got until then; Chrome's first
REMBs to a new subscriber (60-85 kbit/s for a 100-140 kbit/s layer here) would
switch the track off."""

REMB_FALL = 0.95
"""A REMB under the rate sent counts only from one that fell under this share of
the highest of the subscriber's last :data:`REMB_PEAK_INTERVALS` REMBs, and for as
long as it stays under the rate sent: an overuse is a decrease (libwebrtc's to
0.85x of what arrives), while a receiver's estimate still ramping up is under what
it gets and rising. Chrome's REMB to a new subscriber climbed 66 -> 104 kbit/s over
its first 7 s while 130 kbit/s arrived: taken as a limit (with sent averaged over
two intervals) it held both twilio-video subscribers of a 640x360 simulcast track
at the 320-wide layer for over 45 s."""

REMB_PEAK_INTERVALS = 3


class DownlinkEstimate:
    """A subscriber's downlink: the lower of GCC's loss-based estimate
    (draft-ietf-rmcat-gcc-02 section 6: above 10 % loss the rate sent times
    (1 - loss/2), under 2 % up by 8 % a second) and the subscriber's latest REMB
    (its delay-based estimate) where that is under what it was sent.

    A REMB at or above the rate sent is no limit: libwebrtc caps the REMB it sends
    at 1.5x the rate it receives (AimdRateControl ``ClampBitrate``), so taking it as
    a ceiling would hold a subscriber put on a low layer there for ever. Below it
    (:data:`REMB_OVERUSE`, :data:`REMB_OVERUSE_INTERVALS` in a row) it is a
    congestion signal, as loss is, and the estimate
    climbs from it as from a loss-based one. None until a limit was seen.
    """

    def __init__(self) -> None:
        self.bps: float | None = None
        self._remb_under = 0  # intervals in a row with the REMB under the rate sent
        self._intervals_sent = 0  # intervals in which video was sent
        self._hold = 0  # intervals left in which loss makes no new decrease
        self._rembs: list[int] = []  # the last REMB_PEAK_INTERVALS REMBs
        self.set_by_loss = 0
        """Intervals in which the loss-based limit set the estimate."""
        self.set_by_remb = 0
        """Intervals in which the REMB set it (below the loss-based limit, or alone):
        with :attr:`set_by_loss`, which input moved a subscriber (the tests tell a
        delay-based move from a loss-based one by them)."""

    def update(self, loss_fraction: float, sent_bps: float,
               remb_bps: int | None = None, rtt_ms: float = 0.0) -> int | None:
        """The estimate after one interval in which ``sent_bps`` went to the
        subscriber, ``loss_fraction`` was lost, its latest fresh REMB said
        ``remb_bps`` (None: none) and the round trip was ``rtt_ms``."""
        if self._hold > 0:
            self._hold -= 1
        loss_limit: float | None = None
        remb_limit: float | None = None
        if loss_fraction > 0.10 and sent_bps > 0 and self._hold == 0:
            # GCC: A(t) = A(t-1) (1 - p/2), from the estimate where there is one.
            loss_limit = (self.bps or sent_bps) * (1 - loss_fraction / 2)
            # The next Receiver Reports still count packets sent before this
            # decrease (a queue's worth, a round trip): no second decrease for them
            # (libwebrtc waits 300 ms + RTT, SendSideBandwidthEstimation). Without
            # this a tbf queue's backlog cut the estimate twice, under the lowest
            # layer, and the subscriber was switched off.
            self._hold = 2 + math.ceil(max(0.0, rtt_ms) / 1000)
        if sent_bps > 0:
            self._intervals_sent += 1
        fell = remb_bps is not None and bool(self._rembs) \
            and remb_bps < REMB_FALL * max(self._rembs)
        if remb_bps is not None:
            self._rembs = [*self._rembs, remb_bps][-REMB_PEAK_INTERVALS:]
        if remb_bps is not None and sent_bps > 0 and remb_bps < sent_bps * REMB_OVERUSE \
                and self._intervals_sent > REMB_WARM_UP_INTERVALS \
                and (fell or self._remb_under > 0):
            self._remb_under += 1
            if self._remb_under >= REMB_OVERUSE_INTERVALS:
                remb_limit = float(remb_bps)
        else:
            self._remb_under = 0
        if remb_limit is not None and (loss_limit is None or remb_limit < loss_limit):
            self.bps = remb_limit
            self.set_by_remb += 1
        elif loss_limit is not None:
            self.bps = loss_limit
            self.set_by_loss += 1
        elif loss_fraction > 0.10 and self._hold > 0:
            pass  # the loss of what was sent before the last decrease
        elif loss_fraction < 0.02 and self.bps is not None:
            self.bps *= 1.08
            if self.bps > 2 * max(sent_bps, 1.0) + 3_000_000:
                self.bps = None  # far above anything sent: no limit seen any more
        return int(self.bps) if self.bps else None
