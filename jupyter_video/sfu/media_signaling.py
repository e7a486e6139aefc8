"""The quality channels of Twilio's media-signaling protocol (MSP), spoken by the SFU.

twilio-video.js asks for them in RSP ``connect.media_signaling`` and takes each
as a data channel the server opens (docs/signaling.md section 9). Here, per
participant:

- ``network_quality``: the client's inputs come about every second; each is
  answered with the participant's level and, per the verbosity it asks for
  (``reportLevel``, ``remoteReportLevel``), the other participants' levels
  (networkqualitysignaling.js ``_handleNetworkQualityMessage``), measured here
  from the packet path (:mod:`.network_quality`).
- ``render_hints``: which subscribed tracks the client renders and at what size
  (renderhintssignaling.js), each hint answered ``OK``.
- ``track_priority``: the subscriber's priority of a track
  (trackprioritysignaling.js).
- ``track_switch_off``: which tracks the SFU switched off or on
  (trackswitchoffsignaling.js; twilio-video fires ``switchedOff``/``switchedOn``).
- ``publisher_hints``: which simulcast layers of the participant's own tracks
  anyone needs (publisherhintsignaling.js); the publisher stops encoding the rest.

Once a second the participant's video subscriptions are allocated
(:func:`.bandwidth.allocate`) and applied on the packet path
(:class:`.rtp.layers.LayerForwarder`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel

from . import network_quality
from .bandwidth import BandwidthProfile, DownlinkEstimate, VideoDemand, allocate
from .network_quality import Direction, Levels
from .publication import MediaPublication
from .rtp.bandwidth import REMB_FRESH_MS
from .rtp.clock import now_ms
from .rtp.layers import LayerForwarder
from .subscription import MediaSubscription

if TYPE_CHECKING:
    from .peer import Peer

logger = logging.getLogger(__name__)

QUALITY_CHANNELS = ("network_quality", "render_hints", "track_priority",
                    "track_switch_off", "publisher_hints")
"""The MSP channels of this module (``active_speaker`` is the peer's own)."""
TICK_S = 1.0
"""Seconds between two allocations (and measurements) of one participant."""


def forwarder_of(publication: MediaPublication) -> LayerForwarder:
    if publication.forwarder is None:
        publication.forwarder = LayerForwarder(publication)
    return publication.forwarder


class _Counters:
    """The last interval's counters of one stream, for deltas."""

    __slots__ = ("expected", "octets", "received")

    def __init__(self) -> None:
        self.expected = self.received = self.octets = 0


class MediaSignaling:
    """One participant's quality channels and its video allocation."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.channels: dict[str, RTCDataChannel] = {}
        self.profile: BandwidthProfile | None = None
        self.render_hints: dict[str, dict[str, Any]] = {}  # track_sid -> last hint
        self.priorities: dict[str, str] = {}  # track_sid -> subscribe priority
        self.switched_off: set[str] = set()
        self.allocation: dict[str, int | None] = {}
        self.levels = Levels()
        self.quality_request = network_quality.Request()
        self.downlink = DownlinkEstimate()
        self.downlink_bps: int | None = None
        self.publisher_hints: dict[str, list[bool]] = {}  # track_sid -> layers enabled
        self._hint_id = 0
        self.layer_bitrates: dict[int, int] = {}  # id(layer stream) -> bits per second
        self._layer_bits_before: dict[int, int] = {}  # the same, the interval before
        self._sent_before: int | None = None  # video bits sent the interval before
        self._counters: dict[tuple[str, int], _Counters] = {}  # (what, id(object))
        self._touched: set[tuple[str, int]] = set()
        self._timer: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------- channels

    def grant(self, channel: str, label: str) -> bool:
        """Open the MSP channel ``channel`` labelled ``label``; True when an offer is
        needed for it (the peer's first data channel)."""
        pc = self.peer.pc
        needs_offer = pc.sctp is None
        data_channel = pc.createDataChannel(label, ordered=True)
        self.channels[channel] = data_channel
        data_channel.on("message", lambda message: self._on_message(channel, message))
        self._start()
        return needs_offer

    def _send(self, channel: str, body: dict[str, Any]) -> None:
        data_channel = self.channels.get(channel)
        if data_channel is not None and data_channel.readyState == "open":
            data_channel.send(json.dumps(body))

    def _on_message(self, channel: str, message: str | bytes) -> None:
        try:
            body = json.loads(message)
        except ValueError:
            logger.info("%s: not JSON on %s", self.peer.participant_sid, channel)
            return
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "network_quality":
            self._on_network_quality(body)
        elif kind == "render_hints":
            self._on_render_hints(body)
        elif kind == "track_priority":
            self._on_track_priority(body)
        elif kind == "client_reset":
            # The publisher replaced the track's source (publisherhintsignaling.js
            # sendTrackReplaced): its encodings are back to their defaults, so the
            # track's hints go out again at the next tick.
            self.publisher_hints.pop(str(body.get("track")), None)
        # "ready" (data/transport.js) and publisher_hints answers: nothing to do.

    def _on_network_quality(self, body: dict[str, Any]) -> None:
        """Answer the client's inputs with the levels it asked for."""
        if not self.quality_request.read(body):
            return
        if not self.levels.measured:
            # twilio-video keeps a participant's stats until its level changes
            # (participant.js setNetworkQualityLevel): the first answer has them too.
            self.measure()
        self._send("network_quality", network_quality.answer(
            self.quality_request, self.levels, self.peer.participant_sid,
            network_quality.others_levels(self.peer.room.peers)))

    def _on_render_hints(self, body: dict[str, Any]) -> None:
        subscriber = body.get("subscriber") or {}
        results = []
        for hint in subscriber.get("hints") or []:
            track = hint.get("track") if isinstance(hint, dict) else None
            if not isinstance(track, str):
                continue
            state = self.render_hints.setdefault(track, {})
            if "enabled" in hint:
                state["enabled"] = bool(hint["enabled"])
            dimensions = hint.get("render_dimensions")
            if isinstance(dimensions, dict):
                state["size"] = (int(dimensions.get("width", 0)),
                                 int(dimensions.get("height", 0)))
            results.append({"track": track, "result": "OK"})
        self._send("render_hints", {"type": "render_hints", "subscriber": {
            "id": subscriber.get("id"), "hints": results}})
        self.allocate()  # a hidden tile stops costing at once, not at the next tick

    def _on_track_priority(self, body: dict[str, Any]) -> None:
        track, priority = body.get("track"), body.get("subscribe")
        if not isinstance(track, str):
            return
        if priority in ("low", "standard", "high"):
            self.priorities[track] = priority
        else:
            self.priorities.pop(track, None)  # null: back to the publisher's priority
        self.allocate()

    # ----------------------------------------------------------- the periodic work

    def _start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.measure()
            self.allocate()
            self.hint_publishers()
        except Exception:  # one participant's bad state must not stop its ticks
            logger.exception("%s: quality tick", self.peer.participant_sid)
        self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def set_profile(self, profile: BandwidthProfile | None) -> None:
        self.profile = profile
        self._start()  # the profile alone (no channels) still needs the measurements
        self.allocate()

    def _delta(
        self, key: tuple[str, int], expected: int, received: int, octets: int
    ) -> tuple[int, int, int]:
        counters = self._counters.setdefault(key, _Counters())
        self._touched.add(key)
        delta = (expected - counters.expected, received - counters.received,
                 octets - counters.octets)
        counters.expected, counters.received, counters.octets = expected, received, octets
        return delta

    def measure(self) -> None:
        """This participant's levels and downlink over the last interval."""
        peer = self.peer
        send = {"audio": Direction(), "video": Direction()}
        recv = {"audio": Direction(), "video": Direction()}
        for publication in peer.room.publications.values():
            if not isinstance(publication, MediaPublication) \
                    or publication.publisher_sid != peer.participant_sid:
                continue
            direction = send[publication.kind]
            for stream in publication.layers:
                expected, received, octets = self._delta(
                    ("received", id(stream)), stream.packets_expected,
                    stream.packets_received - stream.retransmissions_received,
                    stream.bytes_received)
                if expected <= 0:
                    continue
                direction.measured = True
                direction.loss = max(direction.loss, max(0, expected - received) / expected)
                direction.jitter_ms = max(
                    direction.jitter_ms, stream.jitter * 1000 / stream.parameters.clock_rate)
                direction.bitrate += octets * 8
        rtt = self.quality_request.client_rtt_ms
        sent_bps = 0
        remb: tuple[int, int] | None = None  # (when, bit/s): the subscriber's latest REMB
        now = now_ms()
        for slot in peer.slots:
            sent = slot.stream
            if sent is None or slot.subscription is None:
                continue
            told = sent.bandwidth
            if told.remb_bps is not None and now - told.remb_ms <= REMB_FRESH_MS \
                    and (remb is None or told.remb_ms > remb[0]):
                remb = (told.remb_ms, told.remb_bps)
            _, _, octets = self._delta(("sent", id(sent)), 0, 0, sent.octets_sent)
            direction = recv[slot.kind]
            direction.measured = direction.measured or sent.packets_sent > 0
            direction.loss = max(direction.loss, sent.fraction_lost / 256)
            direction.bitrate += octets * 8
            sent_bps += octets * 8 if slot.kind == "video" else 0
            if sent.rtt_ms is not None:
                rtt = max(rtt, sent.rtt_ms)
        for direction in (*send.values(), *recv.values()):
            direction.rtt_ms = rtt
        for direction in (*send.values(), *recv.values()):
            direction.bitrate = int(direction.bitrate / TICK_S)
        remb_bps = remb[1] if remb is not None else None
        # What was sent over the last two intervals: one interval's count swings by
        # half either way (a keyframe or a late timer falls in one or the next: 216
        # and 421 kbit/s in turn for a steady 320 kbit/s layer), which made the
        # REMB comparison and the loss limit flip from one interval to the next.
        sent_mean = (sent_bps + (self._sent_before if self._sent_before is not None
                                 else sent_bps)) / 2 / TICK_S
        self._sent_before = sent_bps
        self.downlink_bps = self.downlink.update(recv["video"].loss, sent_mean, remb_bps, rtt)
        for direction in recv.values():  # one transport: one downlink for both kinds
            direction.available = self.downlink_bps or remb_bps
        self.levels = Levels(audio_send=send["audio"].level(), audio_recv=recv["audio"].level(),
                             video_send=send["video"].level(), video_recv=recv["video"].level(),
                             measured={f"{kind}_send": send[kind] for kind in send}
                             | {f"{kind}_recv": recv[kind] for kind in recv})
        # Each layer's bitrate over the last two intervals: one interval's count
        # swings by half (see DownlinkEstimate.update), and a top layer measured
        # at its low swing was chosen again the second after a decrease.
        measured = dict((id(stream), bits) for stream, bits in self._layer_bits(peer))
        self.layer_bitrates = {
            key: (bits + self._layer_bits_before.get(key, bits)) // 2
            for key, bits in measured.items()}
        self._layer_bits_before = measured
        # Counters of streams gone (unpublished, unsubscribed) are dropped.
        self._counters = {k: v for k, v in self._counters.items() if k in self._touched}
        self._touched = set()

    def _layer_bits(self, peer: Peer) -> list[tuple[object, int]]:
        """Each layer's bitrate of the publications this participant subscribes to."""
        out: list[tuple[object, int]] = []
        for subscription in peer.subscriptions.values():
            if not isinstance(subscription, MediaSubscription):
                continue
            for stream in subscription.publication.layers:
                _, _, octets = self._delta(("layer", id(stream)), 0, 0, stream.bytes_received)
                out.append((stream, int(octets * 8 / TICK_S)))
        return out

    def demands(self) -> list[tuple[VideoDemand, MediaSubscription]]:
        """The participant's video subscriptions as the allocation sees them."""
        out = []
        room = self.peer.room
        for track_sid, subscription in self.peer.subscriptions.items():
            if not isinstance(subscription, MediaSubscription) or subscription.slot is None:
                continue
            publication = subscription.publication
            if publication.kind != "video":
                continue
            hint = self.render_hints.get(track_sid, {})
            forwarder = publication.forwarder
            sizes = [forwarder.sizes.get(i) if forwarder else None
                     for i in range(len(publication.layers))] or [None]
            out.append((VideoDemand(
                track_sid=track_sid,
                priority=self.priorities.get(track_sid, publication.priority),
                rendered=hint.get("enabled"),
                render_size=hint.get("size"),
                layer_sizes=sizes,
                layer_bitrates=[self.layer_bitrates.get(id(s), 0) for s in publication.layers]
                or [0],
                dominant_speaker=publication.publisher_sid == room.dominant_speaker,
            ), subscription))
        return out

    def allocate(self) -> None:
        """Choose and apply each video subscription's layer or switch-off; tell the
        client what was switched off or on."""
        if self.profile is None and not self.render_hints:
            return  # no Bandwidth Profile: the publication's own best layer for all
        demands = self.demands()
        decisions = allocate([d for d, _ in demands], self.profile, self.downlink_bps)
        if decisions != self.allocation:
            logger.info("%s: video layers %s (downlink %s bit/s; layer sizes %s; "
                        "rendered at %s)", self.peer.participant_sid, decisions,
                        self.downlink_bps, [d.layer_sizes for d, _ in demands],
                        [d.render_size for d, _ in demands])
        self.allocation = decisions
        off: list[str] = []
        on: list[str] = []
        for demand, subscription in demands:
            layer = decisions.get(demand.track_sid)
            forwarder = forwarder_of(subscription.publication)
            if layer is None:
                forwarder.switch_off(subscription)
                if demand.track_sid not in self.switched_off:
                    self.switched_off.add(demand.track_sid)
                    off.append(demand.track_sid)
                continue
            if len(subscription.publication.layers) > 1:
                forwarder.set_target(subscription, layer)
            else:
                forwarder.release(subscription)
            if demand.track_sid in self.switched_off:
                self.switched_off.discard(demand.track_sid)
                on.append(demand.track_sid)
        self.switched_off &= {d.track_sid for d, _ in demands}
        if off or on:
            self._send("track_switch_off", {"type": "track_switch_off", "off": off, "on": on})

    def hint_publishers(self) -> None:
        """Tell this participant which layers of its simulcast tracks anyone needs:
        the highest layer any subscriber's allocation chose, and those under it
        (a layer above every subscriber's target is not encoded)."""
        if "publisher_hints" not in self.channels:
            return
        peer = self.peer
        hints = []
        for publication in peer.room.publications.values():
            if not isinstance(publication, MediaPublication) or publication.kind != "video" \
                    or publication.publisher_sid != peer.participant_sid \
                    or len(publication.layers) < 2 or publication.track_sid is None:
                continue
            needed = -1
            for other in peer.room.peers.values():
                signaling = getattr(other, "media_signaling", None)
                subscribed = publication.track_sid in getattr(other, "subscriptions", {})
                if not subscribed:
                    continue
                if signaling is None or signaling.profile is None:
                    needed = len(publication.layers) - 1  # no profile: the best layer
                    break
                layer = signaling.allocation.get(publication.track_sid)
                if layer is not None:
                    needed = max(needed, layer)
            enabled = [i <= max(needed, 0) for i in range(len(publication.layers))]
            if self.publisher_hints.get(publication.track_sid) == enabled:
                continue
            self.publisher_hints[publication.track_sid] = enabled
            hints.append({"track": publication.track_sid, "encodings": [
                {"enabled": on, "layer_index": i} for i, on in enumerate(enabled)]})
        if hints:
            self._hint_id += 1
            self._send("publisher_hints", {"type": "publisher_hints", "publisher": {
                "id": self._hint_id, "hints": hints}})

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
