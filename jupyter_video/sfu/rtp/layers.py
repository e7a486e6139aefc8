"""Per-subscriber simulcast layers and switch-off (LiveKit's ``forwarder``,
mediasoup's ``SimulcastConsumer``).

A publication forwards the best layer its publisher sends to every subscription
it holds (``MediaPublication.subscriptions``). A subscription whose layer the
bandwidth allocation chose (:mod:`jupyter_video.sfu.bandwidth`) moves here
instead: it gets the packets of its own layer, and moves to another layer only
at a keyframe of that layer (asked for by PLI on the switch), the subscriber's
sequence numbers, timestamps and VP8 picture ids running on across it
(:meth:`~.send_stream.SendStream.switch_source`, through the subscription's
``resync``). A switched-off subscription is in neither list, so a packet costs
nothing for it; switching it on starts it from its layer's last keyframe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .clock import now_ms, ntp_now
from .codecs import Vp8Descriptor
from .packet import Packet

if TYPE_CHECKING:
    from ..publication import MediaPublication
    from ..subscription import MediaSubscription
    from .receive_stream import ReceiveStream

LAYER_TIMEOUT_MS = 1000
"""A layer silent this long is not sending (the publisher's encoder dropped it, or
publisher hints turned it off): a subscription targeting it gets the best lower one."""


def vp8_keyframe_size(packet: Packet) -> tuple[int, int] | None:
    """Width and height from the first packet of a VP8 keyframe (RFC 6386 section
    9.1: 3-byte frame tag, start code 9d 01 2a, 14-bit width, 14-bit height)."""
    payload = packet.data[packet.payload_start:packet.payload_end]
    descriptor = Vp8Descriptor.parse(payload)
    if descriptor is None:
        return None
    start = descriptor.size
    if len(payload) < start + 10 or payload[start + 3:start + 6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(payload[start + 6:start + 8], "little") & 0x3FFF
    height = int.from_bytes(payload[start + 8:start + 10], "little") & 0x3FFF
    return width, height


class LayeredSubscription:
    """One subscription's place in a :class:`LayerForwarder`."""

    __slots__ = ("current", "subscription", "target")

    def __init__(self, subscription: MediaSubscription, target: int) -> None:
        self.subscription = subscription
        self.target = target
        """The layer index the allocation wants (lowest 0)."""
        self.current: int | None = None
        """The layer index forwarded now (None: waiting for a keyframe of one)."""


class LayerForwarder:
    """The subscriptions of one publication that have a layer of their own."""

    def __init__(self, publication: MediaPublication) -> None:
        self.publication = publication
        self.entries: dict[int, LayeredSubscription] = {}  # id(subscription) -> entry
        self.sizes: dict[int, tuple[int, int]] = {}
        """Layer index -> the width and height of its last keyframe (VP8)."""
        self.bytes_by_layer: dict[int, int] = {}
        """Layer index -> payload bytes received, for the layers' bitrates."""
        self.packets_forwarded = 0
        self.switches = 0
        self._was_enabled = publication.enabled
        self._latest_ms = 0

    # ----------------------------------------------------------- control

    def layer_count(self) -> int:
        return len(self.publication.layers)

    def sending(self, index: int) -> bool:
        """Whether layer ``index`` sent something lately (on the packets' arrival
        clock, which is aiortc's, not :func:`now_ms`)."""
        layer = self.publication.layers[index]
        silent = self._latest_ms - layer.last_packet_ms
        return layer.last_packet_ms > 0 and silent <= LAYER_TIMEOUT_MS

    def effective(self, target: int) -> int:
        """The layer to forward for ``target``: it, or the best lower layer sending
        (or the lowest higher one, if nothing at or under it sends)."""
        for index in range(min(target, self.layer_count() - 1), -1, -1):
            if self.sending(index):
                return index
        for index in range(target + 1, self.layer_count()):
            if self.sending(index):
                return index
        return target

    def set_target(self, subscription: MediaSubscription, target: int) -> None:
        """Forward layer ``target`` to ``subscription`` (taking it from the publication's
        own fan-out, or switching it on)."""
        publication = self.publication
        if subscription in publication.subscriptions:
            publication.subscriptions.remove(subscription)
        entry = self.entries.get(id(subscription))
        if entry is None:
            entry = self.entries[id(subscription)] = LayeredSubscription(subscription, target)
            subscription.resync()
            self._catch_up(entry)
        elif entry.target != target:
            entry.target = target
        self._ask_keyframe(entry)

    def switch_off(self, subscription: MediaSubscription) -> None:
        """Forward nothing to ``subscription`` until :meth:`set_target` again."""
        self.entries.pop(id(subscription), None)
        if subscription in self.publication.subscriptions:
            self.publication.subscriptions.remove(subscription)

    def release(self, subscription: MediaSubscription) -> None:
        """Give ``subscription`` back to the publication's own fan-out."""
        was_here = self.entries.pop(id(subscription), None) is not None
        if subscription.slot is not None and subscription not in self.publication.subscriptions:
            if was_here:
                subscription.resync()
            self.publication.subscriptions.append(subscription)
            subscription.catch_up()

    def close(self) -> None:
        for entry in list(self.entries.values()):
            entry.subscription.end()
        self.entries.clear()

    def _ask_keyframe(self, entry: LayeredSubscription) -> None:
        index = self.effective(entry.target)
        if entry.current != index:
            self.publication.request_layer_keyframe(self.publication.layers[index])

    def _catch_up(self, entry: LayeredSubscription) -> None:
        """Start ``entry`` from its layer's last keyframe, if its ring holds one."""
        index = self.effective(entry.target)
        held = self.publication.layers[index].ring.from_keyframe()
        if not held or entry.subscription.slot is None or entry.subscription.slot.stream is None:
            return
        entry.current = index
        now, ntp = now_ms(), ntp_now()
        for packet in held:
            entry.subscription.send_packet(packet, now, ntp)

    # ----------------------------------------------------------- per packet

    def forward(self, layer: ReceiveStream, packet: Packet) -> None:
        """One media packet of ``layer``: to each entry on that layer, and to each
        entry waiting to move to it when this starts a keyframe."""
        publication = self.publication
        index = publication.layers.index(layer)
        self._latest_ms = max(self._latest_ms, packet.arrival_ms)
        self.bytes_by_layer[index] = (
            self.bytes_by_layer.get(index, 0) + packet.payload_end - packet.payload_start)
        if packet.keyframe and publication.codec is not None \
                and publication.codec.mimeType.lower() == "video/vp8":
            size = vp8_keyframe_size(packet)
            if size is not None:
                self.sizes[index] = size
        if not self.entries:
            return
        enabled = publication.enabled
        if not enabled:
            self._was_enabled = False
            return
        if not self._was_enabled:
            self._was_enabled = True
            for entry in self.entries.values():
                entry.subscription.resync()
                entry.current = None
        now = ntp = 0
        gone: list[int] = []
        for key, entry in self.entries.items():
            subscription = entry.subscription
            if subscription.slot is None:
                gone.append(key)  # unsubscribed
                continue
            if entry.current != index:
                if self.effective(entry.target) != index:
                    continue
                if not packet.keyframe:
                    publication.request_layer_keyframe(layer)
                    continue
                if entry.current is not None:
                    self.switches += 1
                    subscription.resync()  # a new source for the subscriber's stream
                entry.current = index
            if not ntp:
                now, ntp = now_ms(), ntp_now()
            if subscription.send_packet(packet, now, ntp):
                self.packets_forwarded += 1
                if packet.marker:
                    publication.frames_forwarded += 1
        for key in gone:
            del self.entries[key]
