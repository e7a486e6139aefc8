"""Subscriptions: one publication forwarded to one subscriber.

A media subscription sends the publication's packets through a
:class:`SendSlot`: one of the subscriber's sendonly transceivers, whose aiortc
sender never starts (:func:`jupyter_video._aiortc.take_sender`); the slot's
:class:`~.rtp.send_stream.SendStream` sends from the SSRC that sender
announced in SDP, and the SFU answers the subscriber's RTCP for it. Video
starts on a keyframe, from the publication's ring at once when it holds one.
A data subscription is an SFU-opened data channel labelled with the
publication's track id.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc import RTCDataChannel, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpSendParameters

from .. import _aiortc as adapter
from .publication import DataPublication, EncodedFrame, MediaPublication
from .rtp.clock import now_ms, ntp_now
from .rtp.counters import forwarding_counts
from .rtp.packet import Packet
from .rtp.send_stream import SendParameters, SendStream

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

DATA_QUEUE_MESSAGES = 1000
"""Messages held for a subscriber's data channel until it opens."""

RtpSend = Callable[[bytes], bool]
"""Sends one RTP or RTCP packet to the subscriber (False: not connected)."""


class SlotTrack(MediaStreamTrack):
    """What a slot's sender holds as its track: only its id matters (the msid the
    subscriber sees); the sender never starts, so nothing reads from it."""

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id

    def rename(self, track_id: str) -> None:
        """Carry another publication's track id."""
        self._id = track_id

    async def recv(self) -> None:  # type: ignore[override]
        raise MediaStreamError("the SFU sends packets, not frames")


class SendSlot:
    """A subscriber's sendonly transceiver and the stream sent on it.

    A slot outlives subscriptions: unsubscribing frees it, a later subscription
    of the same kind and codec reuses it, and the subscriber's sequence numbers,
    timestamps and VP8 picture ids run on across them.
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        publication: MediaPublication,
        send: RtpSend,
        on_ready: Callable[[SendSlot], None] = lambda slot: None,
    ) -> None:
        assert publication.codec is not None
        self.transceiver = transceiver
        self.kind = publication.kind
        self.mime_type = publication.codec.mimeType.lower()
        self.clock_rate = publication.clock_rate
        self.track = SlotTrack(publication.kind, publication.track_id)
        self.subscription: MediaSubscription | None = None
        self.stream: SendStream | None = None
        """Made once the subscriber's answer and DTLS are done (aiortc would start
        its sender then)."""
        self.send = send
        self._on_ready = on_ready
        adapter.take_sender(transceiver.sender, self._negotiated)
        transceiver.sender.replaceTrack(self.track)

    def _negotiated(self, parameters: RTCRtpSendParameters, ssrc: int, rtx_ssrc: int) -> None:
        if self.stream is not None:
            return  # renegotiation keeps an m-section's payload types, ids and SSRCs
        media = [c for c in parameters.codecs if not c.mimeType.lower().endswith("/rtx")]
        if not media:
            return
        codec = media[0]
        rtx = next(
            (c for c in parameters.codecs if c.mimeType.lower().endswith("/rtx")
             and c.parameters.get("apt") == codec.payloadType),
            None,
        )
        self.stream = SendStream(SendParameters(
            kind=self.kind,
            mime_type=codec.mimeType,
            clock_rate=codec.clockRate,
            payload_type=codec.payloadType or 0,
            ssrc=ssrc,
            rtx_payload_type=rtx.payloadType if rtx is not None else None,
            rtx_ssrc=rtx_ssrc if rtx is not None else None,
            mid=parameters.muxId or None,
            extensions={e.uri: e.id for e in parameters.headerExtensions},
        ))
        self._on_ready(self)
        if self.subscription is not None:
            self.subscription.catch_up()

    def move_to(self, transceiver: RTCRtpTransceiver) -> None:
        """Carry on in ``transceiver``, the same m-section of a new peer connection
        (an ICE restart), with the same SSRCs and send stream: the subscriber's
        receiver sees one stream going on (sequence numbers continue)."""
        adapter.keep_sender_identity(transceiver.sender, self.transceiver.sender)
        self.transceiver = transceiver
        adapter.take_sender(transceiver.sender, self._negotiated)
        transceiver.sender.replaceTrack(self.track)

    def fits(self, publication: MediaPublication) -> bool:
        """Whether this free slot can carry ``publication``."""
        return (
            self.subscription is None
            and publication.codec is not None
            and publication.kind == self.kind
            and publication.codec.mimeType.lower() == self.mime_type
        )

    def keyframe_requested(self) -> None:
        """The subscriber sent a PLI or FIR for this slot's stream."""
        forwarding_counts.keyframe_requests_received += 1
        if self.subscription is not None:
            self.subscription.publication.request_keyframe()

    def retransmit(self, sequences: list[int]) -> None:
        """Answer the subscriber's NACK from what was sent."""
        if self.stream is None:
            return
        forwarding_counts.nacks_received += len(sequences)
        for packet in self.stream.retransmissions(sequences):
            if self.send(packet):
                forwarding_counts.retransmissions_sent += 1

    def sender_report(self, now: int, ntp: int) -> bytes:
        return b"" if self.stream is None else self.stream.sender_report(now, ntp)


class MediaSubscription:
    """One audio or video publication forwarded to one subscriber, packet by packet."""

    wants_frames = False

    def __init__(self, subscriber_sid: str, publication: MediaPublication) -> None:
        self.subscriber_sid = subscriber_sid
        self.publication = publication
        self.slot: SendSlot | None = None
        self.waiting_for_keyframe = publication.kind == "video"
        self.packets_forwarded = 0
        self.packets_dropped = 0
        self._resync = True
        self.subscribed_at = time.monotonic()
        self.on_first_frame: Callable[[float], None] | None = None
        """Called with ``subscribed_at`` when the first frame is forwarded."""

    @property
    def frames_forwarded(self) -> int:
        return self.packets_forwarded

    def start(self, slot: SendSlot) -> None:
        """Forward through ``slot``, starting at a keyframe: the ring's last one at
        once, or the next one (asked of the publisher)."""
        self.slot = slot
        slot.subscription = self
        slot.track.rename(self.publication.track_id)
        slot.transceiver.sender.replaceTrack(slot.track)  # the msid carries the new id
        self.waiting_for_keyframe = self.publication.kind == "video"
        self._resync = True
        self.publication.subscriptions.append(self)
        self.catch_up()

    def restart_source(self) -> None:
        """The publication's receive stream starts over (its publisher's ICE restart
        made a new one): go on from its next keyframe, the subscriber's numbering
        continued (SendStream.switch_source)."""
        self.waiting_for_keyframe = self.publication.kind == "video"
        self._resync = True

    def catch_up(self) -> None:
        """Send what the ring holds from its last keyframe (once the slot can send)."""
        if self.slot is None or self.slot.stream is None or self.publication.kind != "video":
            return
        if not self.waiting_for_keyframe:
            return
        held = self.publication.ring.from_keyframe()
        if not held:
            self.publication.request_keyframe()
            return
        now, ntp = now_ms(), ntp_now()
        for packet in held:
            self.send_packet(packet, now, ntp)

    def resync(self) -> None:
        """The next packet continues the subscriber's numbering after a pause."""
        self._resync = True
        self.waiting_for_keyframe = self.publication.kind == "video"

    def send_packet(self, packet: Packet, now: int, ntp: int) -> bool:
        """Send ``packet`` to the subscriber; False when it was not sent."""
        slot = self.slot
        if slot is None or slot.stream is None:
            return False
        stream = slot.stream
        if self.waiting_for_keyframe:
            if not packet.keyframe:
                self.packets_dropped += 1
                self.publication.request_keyframe()
                return False
            self.waiting_for_keyframe = False
        if self._resync:
            self._resync = False
            stream.switch_source(self.publication.extensions)
        data = stream.forward(packet, now, ntp)
        if not slot.send(data):
            return False
        forwarding_counts.packets_sent += 1
        forwarding_counts.bytes_sent += packet.payload_end - packet.payload_start
        self.packets_forwarded += 1
        if self.on_first_frame is not None and (packet.marker or self.publication.kind == "audio"):
            on_first_frame, self.on_first_frame = self.on_first_frame, None
            on_first_frame(self.subscribed_at)
        return True

    def bandwidth_wanted(self, now: int) -> int | None:
        slot = self.slot
        if slot is None or slot.stream is None:
            return None
        return slot.stream.bandwidth.wanted(now)

    def push(self, frame: EncodedFrame) -> bool:
        raise RuntimeError("a WebRTC subscription takes packets, not frames")

    def end(self) -> None:
        """Stop forwarding; the slot is free for another subscription."""
        if self in self.publication.subscriptions:
            self.publication.subscriptions.remove(self)
        if self.slot is not None:
            self.slot.subscription = None
            self.slot = None


class DataSubscription:
    """A data publication relayed to one subscriber over an SFU-opened channel."""

    def __init__(self, subscriber_sid: str, publication: DataPublication) -> None:
        self.subscriber_sid = subscriber_sid
        self.publication = publication
        self.channel: RTCDataChannel | None = None
        self._held: collections.deque[str | bytes] = collections.deque(
            maxlen=DATA_QUEUE_MESSAGES
        )

    def start(self, pc: RTCPeerConnection) -> None:
        """Open the subscriber's channel, labelled with the publication's track id."""
        source = self.publication.channel
        self.channel = pc.createDataChannel(
            self.publication.track_id,
            ordered=source.ordered if source is not None else True,
            maxPacketLifeTime=source.maxPacketLifeTime if source is not None else None,
            maxRetransmits=source.maxRetransmits if source is not None else None,
        )
        self.channel.on("open", self._flush)
        self.publication.subscriptions.append(self)

    def send(self, message: str | bytes) -> None:
        """Relay one message (held until the channel opens)."""
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(message)
        elif self.channel is None or self.channel.readyState == "connecting":
            self._held.append(message)

    def _flush(self) -> None:
        assert self.channel is not None
        while self._held:
            self.channel.send(self._held.popleft())

    def end(self) -> None:
        if self in self.publication.subscriptions:
            self.publication.subscriptions.remove(self)
        if self.channel is not None:
            self.channel.close()
            self.channel = None


Subscription = MediaSubscription | DataSubscription
