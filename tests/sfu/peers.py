"""Real aiortc peers for the media-plane tests, over 127.0.0.1, no signaling server.

A client here plays the part of a browser or kernel participant: it offers
what it publishes and answers what the SFU offers, with the SDP passed by hand
the way the control plane would carry it.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from aiortc.rtp import RtpPacket

from jupyter_video import _aiortc as adapter
from jupyter_video.sfu.interface import Event, MediaPlane
from jupyter_video.sfu.publication import is_keyframe

WIDTH, HEIGHT = 320, 240
BLOCK = 40
ROOM = "RM" + "0" * 32

adapter.use_host_addresses(["127.0.0.1"])


def sid(prefix: str, n: int) -> str:
    return f"{prefix}{n:032x}"


# ------------------------------------------------------------------ the pattern


def pattern(index: int) -> np.ndarray:
    """Frame ``index``: its number in 8 black/white blocks on top, over a gradient."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[..., 0] = (x * 255 // WIDTH).astype(np.uint8)
    image[..., 1] = (y * 255 // HEIGHT).astype(np.uint8)
    image[..., 2] = 128
    for bit in range(8):
        on = (index >> bit) & 1
        image[0:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 235 if on else 16
    return image


def read_index(image: np.ndarray) -> int:
    """The frame number that :func:`pattern` drew into ``image``."""
    index = 0
    for bit in range(8):
        block = image[10 : BLOCK - 10, bit * BLOCK + 10 : (bit + 1) * BLOCK - 10]
        if block.mean() > 128:
            index |= 1 << bit
    return index


def pattern_error(image: np.ndarray) -> float:
    """Mean absolute difference to the pattern of the index ``image`` shows."""
    expected = pattern(read_index(image))
    return float(np.abs(image.astype(np.int16) - expected.astype(np.int16)).mean())


class PatternTrack(VideoStreamTrack):
    """30 fps video whose frame ``i`` is ``pattern(i % 256)``."""

    def __init__(self) -> None:
        super().__init__()
        self.index = 0
        self._frames = [None] * 256  # type: list[av.VideoFrame | None]

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        i = self.index % 256
        self.index += 1
        frame = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


class ToneTrack(AudioStreamTrack):
    """A 440 Hz sine, 20 ms frames of 48 kHz mono s16."""

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self.frequency = frequency
        self._start: float | None = None
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        rate, n = 48000, 960
        if self._start is None:
            self._start = time.time()
        wait = self._start + self._samples / rate - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (np.arange(n) + self._samples) / rate
        samples = (np.sin(2 * math.pi * self.frequency * t) * 12000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, rate)
        self._samples += n
        return frame


# ------------------------------------------------------------------ clients


class Client:
    """A participant's side of a peer connection, driven against a media plane."""

    def __init__(self, plane: MediaPlane, participant_sid: str) -> None:
        self.plane = plane
        self.sid = participant_sid
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
        self.channels: asyncio.Queue[Any] = asyncio.Queue()
        self.keyframes: list[bool] = []
        """Whether each encoded video frame this client received was a keyframe."""
        self.rtp: list[RtpPacket] = []
        """Every RTP packet this client received, as it came off the wire (before
        aiortc's jitter buffer)."""
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self.channels.put_nowait)

    def _on_track(self, track: MediaStreamTrack) -> None:
        dtls = next(t.receiver for t in self.pc.getTransceivers()
                    if t.receiver.track is track).transport
        if not adapter.srtp_diverted(dtls):
            adapter.divert_srtp(dtls, self._observe_rtp, lambda data: False)
        if track.kind == "video":
            receiver = next(
                t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track
            )

            def observe(codec: Any, data: bytes, timestamp: int) -> None:
                self.keyframes.append(is_keyframe(codec.mimeType, data))

            adapter.tap_encoded_frames(receiver, observe, decode=True)
        self.tracks.put_nowait(track)

    def _observe_rtp(self, data: bytes, arrival_ms: int) -> bool:
        self.rtp.append(RtpPacket.parse(data))
        return False  # on to aiortc's receivers

    def rtp_of(self, kind: str) -> list[RtpPacket]:
        """The RTP packets received of ``kind`` (by payload type), retransmissions apart."""
        types = {c.payloadType for t in self.pc.getTransceivers() if t.kind == kind
                 for c in t._codecs if not c.mimeType.lower().endswith("/rtx")}
        return [p for p in self.rtp if p.payload_type in types]

    async def join(self) -> None:
        await self.plane.add_peer(self.sid, ROOM)

    async def publish(self, *tracks: MediaStreamTrack, codec: str | None = None) -> list[str]:
        """Offer ``tracks``; returns the track SIDs bound to them."""
        for track in tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            if codec is not None:
                transceiver.setCodecPreferences(
                    [c for c in RTCRtpSender.getCapabilities(track.kind).codecs
                     if c.mimeType.lower() == codec.lower()]
                )
        await self.offer()
        sids = []
        for track in tracks:
            track_sid = "MT" + uuid.uuid4().hex
            await self.plane.bind_publication(self.sid, track.id, track_sid, track.kind)  # type: ignore[arg-type]
            sids.append(track_sid)
        return sids

    async def publish_data(self, label: str) -> tuple[str, Any]:
        """Open a data channel labelled ``label`` (the data track's id) and bind it."""
        channel = self.pc.createDataChannel(label)
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await self.offer()
        track_sid = "MT" + uuid.uuid4().hex
        await self.plane.bind_publication(self.sid, label, track_sid, "data")
        await asyncio.wait_for(opened.wait(), 10)
        return track_sid, channel

    async def offer(self) -> None:
        """Send an offer to the SFU and apply its answer."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.plane.apply_offer(self.sid, self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def answer(self) -> None:
        """Take an offer from the SFU and answer it."""
        offer = await self.plane.create_offer(self.sid)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.plane.apply_answer(self.sid, self.pc.localDescription.sdp)

    async def subscribe(self, track_sid: str) -> None:
        if await self.plane.subscribe(self.sid, track_sid):
            await self.answer()

    async def close(self) -> None:
        await self.pc.close()


async def next_frame(track: MediaStreamTrack, timeout: float = 10.0) -> Any:
    return await asyncio.wait_for(track.recv(), timeout)


async def wait_for_event(
    plane: MediaPlane, matches: Callable[[Event], bool], timeout: float = 10.0
) -> Event:
    """The first event from ``plane`` that ``matches`` (others are skipped)."""

    async def find() -> Event:
        while True:
            event = await plane.next_event()
            if matches(event):
                return event

    return await asyncio.wait_for(find(), timeout)


