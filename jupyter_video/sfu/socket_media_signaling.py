"""The MSP quality channels for a media socket peer (:mod:`.websocket`).

A media socket carries data channels in its own framing (docs/media_socket.md):
the SFU opens one with a ``data_channel`` control message, the page's
``WebSocketPeerConnection`` fires ``datachannel`` with its label, and what the
page sends on it comes back as DATA with the ``ANSWER`` flag. That is all
twilio-video's MSP transports need, so the quality channels open on the socket
as ``active_speaker`` does; what differs from :mod:`.media_signaling` is what
they act on and measure, since a socket peer has no RTP, no RTCP and one layer:

- ``render_hints`` ``enabled: false`` switches the subscription off (its frames
  are no longer queued for the socket: it leaves the publication's fan-out) and
  ``track_switch_off`` says so; enabled again, it restarts at a keyframe. Render
  dimensions are answered ``OK`` and choose nothing (the socket forwards the one
  layer the publication has).
- ``track_priority`` is kept and answered by nothing (no allocation yet).
- ``network_quality`` levels come from the socket's own counters: the share of
  video frames dropped for the socket's backpressure is the downlink's loss (TCP
  loses nothing else); the SFU's one-way delay trend of the participant's frames
  (what its receiver reports carry) is the uplink's jitter; the client's RTT where
  its inputs give one. ``recvStats.bandwidth.available`` is the socket's delivery
  rate from the participant's acks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from ..signaling import mediasocket as ms
from . import network_quality
from .network_quality import Direction, Levels

if TYPE_CHECKING:
    from .websocket import SocketSubscription, WebSocketPeer

logger = logging.getLogger(__name__)

SOCKET_QUALITY_CHANNELS = ("network_quality", "render_hints", "track_priority",
                           "track_switch_off")
"""The quality channels a media socket peer gets (no ``publisher_hints``: it
publishes one encoding per track)."""
TICK_S = 1.0


class SocketMediaSignaling:
    """One media socket participant's quality channels."""

    def __init__(self, peer: WebSocketPeer) -> None:
        self.peer = peer
        self.channels: dict[str, int] = {}  # MSP channel name -> socket channel
        self._names: dict[int, str] = {}
        self.render_enabled: dict[str, bool] = {}  # track_sid -> the client's hint
        self.priorities: dict[str, str] = {}
        self.switched_off: set[str] = set()
        self.levels = Levels()
        self.quality_request = network_quality.Request()
        self._counts: dict[str, int] = {}  # counter -> its value at the last tick
        self._timer: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------- channels

    def grant(self, channel: str, label: str) -> None:
        number = self.peer.open_data_channel(label)
        self.channels[channel] = number
        self._names[number] = channel
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def owns(self, number: int) -> bool:
        return number in self._names

    def _send(self, channel: str, body: dict[str, Any]) -> None:
        number = self.channels.get(channel)
        if number is not None:
            self.peer.sender.send_data(ms.data_message(number, json.dumps(body)))

    def on_message(self, number: int, message: str | bytes) -> None:
        """What the participant sent on one of its quality channels."""
        try:
            body = json.loads(message)
        except ValueError:
            logger.info("%s: not JSON on %s", self.peer.participant_sid, self._names[number])
            return
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "network_quality":
            self._on_network_quality(body)
        elif kind == "render_hints":
            self._on_render_hints(body)
        elif kind == "track_priority":
            track, priority = body.get("track"), body.get("subscribe")
            if isinstance(track, str) and priority in ("low", "standard", "high"):
                self.priorities[track] = priority
            elif isinstance(track, str):
                self.priorities.pop(track, None)
        # "ready" (data/transport.js): nothing to do.

    def _on_network_quality(self, body: dict[str, Any]) -> None:
        if not self.quality_request.read(body):
            return
        if not self.levels.measured:
            self.measure()  # twilio-video keeps the first answer's stats (participant.js)
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
            if "enabled" in hint:
                self.render_enabled[track] = bool(hint["enabled"])
            results.append({"track": track, "result": "OK"})
        self._send("render_hints", {"type": "render_hints", "subscriber": {
            "id": subscriber.get("id"), "hints": results}})
        self.apply()  # a hidden tile stops costing at once

    # ----------------------------------------------------------- switch-off

    def _video_subscriptions(self) -> dict[str, SocketSubscription]:
        from .websocket import SocketSubscription

        return {sid: s for sid, s in self.peer.subscriptions.items()
                if isinstance(s, SocketSubscription) and s.publication.kind == "video"}

    def apply(self) -> None:
        """Switch subscriptions off or on as the render hints say, and tell the
        participant of each change (``track_switch_off``)."""
        subscriptions = self._video_subscriptions()
        off = {sid for sid in subscriptions if self.render_enabled.get(sid) is False}
        turned_off, turned_on = off - self.switched_off, (self.switched_off & set(
            subscriptions)) - off
        for sid in turned_off:
            subscriptions[sid].switch_off()
        for sid in turned_on:
            subscriptions[sid].switch_on()
        self.switched_off = off
        if turned_off or turned_on:
            self._send("track_switch_off", {"type": "track_switch_off",
                                            "off": sorted(turned_off), "on": sorted(turned_on)})

    # ----------------------------------------------------------- the periodic work

    def _tick(self) -> None:
        self._timer = None
        try:
            self.measure()
            self.apply()
        except Exception:  # one participant's bad state must not stop its ticks
            logger.exception("%s: quality tick", self.peer.participant_sid)
        self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def _delta(self, name: str, value: int) -> int:
        before = self._counts.get(name, 0)
        self._counts[name] = value
        return value - before

    def measure(self) -> None:
        """This participant's levels over the last interval, from the socket."""
        from .websocket import SocketSubscription

        peer = self.peer
        recv = {"audio": Direction(), "video": Direction()}
        send = {"audio": Direction(), "video": Direction()}
        forwarded = dropped = 0
        for subscription in peer.subscriptions.values():
            if not isinstance(subscription, SocketSubscription):
                continue
            direction = recv[subscription.publication.kind]
            direction.measured = direction.measured or subscription.frames_forwarded > 0
            if subscription.publication.kind == "video":
                forwarded += subscription.frames_forwarded
                dropped += subscription.frames_dropped_for_backpressure
        forwarded, dropped = self._delta("forwarded", forwarded), self._delta("dropped", dropped)
        if forwarded + dropped > 0:
            recv["video"].loss = dropped / (forwarded + dropped)
        acked = self._delta("acked", peer.sender.bytes_acked)
        rate = peer.sender.delivery_rate
        for direction in recv.values():  # one socket: one downlink for both kinds
            direction.bitrate = int(acked * 8 / TICK_S) if direction.measured else 0
            direction.available = int(rate * 8) if rate is not None else None
        for kind, frames, trend_ms in peer.inbound_counts():
            direction = send[kind]
            direction.measured = direction.measured or frames > 0
            direction.jitter_ms = max(direction.jitter_ms, abs(trend_ms))
        for direction in (*send.values(), *recv.values()):
            direction.rtt_ms = self.quality_request.client_rtt_ms
        self.levels = Levels(audio_send=send["audio"].level(), audio_recv=recv["audio"].level(),
                             video_send=send["video"].level(), video_recv=recv["video"].level(),
                             measured={f"{kind}_send": send[kind] for kind in send}
                             | {f"{kind}_recv": recv[kind] for kind in recv})

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
