"""Subscriptions: one publication forwarded to one subscriber.

A media subscription feeds a :class:`ForwardedTrack` to one of the
subscriber's ``RTCRtpSender``: its ``recv()`` returns ``av.Packet`` so the
sender only packetizes (and rewrites SSRC, sequence numbers and timestamps).
Video starts on a keyframe; a subscriber that falls behind drops its queue and
waits for the next keyframe. A data subscription is an SFU-opened data channel
labelled with the publication's track id.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import av
from aiortc import RTCDataChannel, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .. import _aiortc as adapter
from .publication import DataPublication, EncodedFrame, MediaPublication

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

VIDEO_QUEUE_FRAMES = 30
"""Frames a video subscriber may lag (1 s at 30 fps) before it skips to a keyframe."""
AUDIO_QUEUE_FRAMES = 25
DATA_QUEUE_MESSAGES = 1000
"""Messages held for a subscriber's data channel until it opens."""


class ForwardedTrack(MediaStreamTrack):
    """A sender's track whose frames are encoded packets from a publication."""

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self.clock_rate = (
            adapter.AUDIO_CLOCK_RATE if kind == "audio" else adapter.VIDEO_CLOCK_RATE
        )
        self.maxlen = AUDIO_QUEUE_FRAMES if kind == "audio" else VIDEO_QUEUE_FRAMES
        self.frames: collections.deque[EncodedFrame] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.last_timestamp: int | None = None
        """RTP timestamp of the last frame queued, in this track's own timeline."""

    def rename(self, track_id: str) -> None:
        """Carry another publication's track id (the msid the subscriber sees)."""
        self._id = track_id

    def put(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)
        self.last_timestamp = frame.timestamp
        self._wake()

    def _wake(self) -> None:
        # One future per wait, resolved directly: an asyncio.Event costs a
        # clear(), a future, a waiter deque and its removal per frame and subscriber.
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def next_timestamp(self) -> int:
        """Where a new source's first frame goes: just after what was sent, so the
        subscriber's RTP timestamps never run backwards (a receiver drops such
        frames as late, and the picture stalls)."""
        if self.last_timestamp is None:
            return 0
        step = self.clock_rate // (50 if self.kind == "audio" else 30)  # one frame
        return self.last_timestamp + step

    async def recv(self) -> av.Packet:
        """The next encoded frame, as a packet aiortc packetizes without encoding."""
        while not self.frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self.frames.popleft()
        return adapter.encoded_packet(frame.data, frame.timestamp, self.clock_rate)

    def stop(self) -> None:
        super().stop()
        self._wake()


class SendSlot:
    """A subscriber's sendonly transceiver and its forwarded track.

    aiortc's sender stops for good when its track ends, so a slot outlives
    subscriptions: unsubscribing frees it, a later subscription of the same
    kind and codec reuses it.
    """

    def __init__(self, transceiver: RTCRtpTransceiver, publication: MediaPublication) -> None:
        assert publication.codec is not None
        self.transceiver = transceiver
        self.kind = publication.kind
        self.mime_type = publication.codec.mimeType.lower()
        self.track = ForwardedTrack(publication.kind, publication.track_id)
        self.subscription: MediaSubscription | None = None
        adapter.install_packetizer(transceiver.sender, self.mime_type)
        adapter.count_nacks(sender=transceiver.sender)
        adapter.on_keyframe_request(transceiver.sender, self._on_keyframe_request)
        transceiver.sender.replaceTrack(self.track)

    def fits(self, publication: MediaPublication) -> bool:
        """Whether this free slot can carry ``publication``."""
        return (
            self.subscription is None
            and publication.codec is not None
            and publication.kind == self.kind
            and publication.codec.mimeType.lower() == self.mime_type
        )

    def _on_keyframe_request(self) -> None:
        if self.subscription is not None:
            self.subscription.publication.request_keyframe()


class MediaSubscription:
    """One audio or video publication forwarded to one subscriber."""

    def __init__(self, subscriber_sid: str, publication: MediaPublication) -> None:
        self.subscriber_sid = subscriber_sid
        self.publication = publication
        self.slot: SendSlot | None = None
        self.waiting_for_keyframe = publication.kind == "video"
        self.frames_forwarded = 0
        self.frames_dropped = 0
        self._offset: int | None = None
        self.subscribed_at = time.monotonic()
        self.on_first_frame: Callable[[float], None] | None = None
        """Called with ``subscribed_at`` when the first frame is forwarded."""

    def start(self, slot: SendSlot) -> None:
        """Forward through ``slot``, starting at the next keyframe."""
        self.slot = slot
        slot.subscription = self
        slot.track.rename(self.publication.track_id)
        slot.transceiver.sender.replaceTrack(slot.track)  # the msid carries the new id
        slot.track.frames.clear()
        self._offset = None  # publication time -> this slot's time, set by the first frame
        self.waiting_for_keyframe = self.publication.kind == "video"
        self.publication.subscriptions.append(self)
        recent = list(self.publication.recent)
        if recent and len(recent) <= slot.track.maxlen:
            for frame in recent:  # starts on the kept keyframe, no PLI round trip
                self.push(frame)
        else:
            self.publication.request_keyframe()

    def push(self, frame: EncodedFrame) -> bool:
        """Queue ``frame`` for the subscriber; False when it was dropped."""
        assert self.slot is not None
        queue = self.slot.track.frames
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                self.publication.request_keyframe()
                return False
            self.waiting_for_keyframe = False
        elif len(queue) >= self.slot.track.maxlen:
            if self.publication.kind == "video":
                # Behind by a whole queue: skip to the next keyframe.
                self.frames_dropped += len(queue) + 1
                queue.clear()
                self.waiting_for_keyframe = True
                self.publication.request_keyframe()
                return False
            queue.popleft()
            self.frames_dropped += 1
        if self._offset is None:
            self._offset = self.slot.track.next_timestamp() - frame.timestamp
        self.slot.track.put(
            EncodedFrame(frame.data, frame.timestamp + self._offset, frame.keyframe)
        )
        self.frames_forwarded += 1
        if self.on_first_frame is not None:
            on_first_frame, self.on_first_frame = self.on_first_frame, None
            on_first_frame(self.subscribed_at)
        return True

    def end(self) -> None:
        """Stop forwarding; the slot is free for another subscription."""
        if self in self.publication.subscriptions:
            self.publication.subscriptions.remove(self)
        if self.slot is not None:
            self.slot.track.frames.clear()
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
