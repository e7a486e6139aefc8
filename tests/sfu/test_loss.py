"""Loss on the publisher's uplink and on a subscriber's downlink is recovered by the SFU.

A user-space relay (:mod:`tests.lossy_link`, seeded) drops 10 % of the RTP
packets between each client and the media worker; the subscriber decodes the
publisher's numbered pattern (or assembles multi-packet VP8 frames, compared
byte for byte with those sent) and must keep >= 20 correct frames a second, while
the worker's counters show what it asked for and got back (NACKs to the
publisher, packets recovered) and what it answered (NACKs from the subscriber,
retransmissions from its ring, as RTX where negotiated).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from jupyter_video import _aiortc
from jupyter_video.sfu import create_media_plane
from jupyter_video.sfu.interface import MediaPlane, MediaStats
from jupyter_video.sfu.rtp import rtcp
from jupyter_video.sfu.rtp.bandwidth import MAX_BITRATE, MIN_BITRATE

from ..lossy_link import Direction, LossyLink
from .peers import HEIGHT, WIDTH, Client, PatternTrack, next_frame, pattern_error, read_index, sid

LOSS = 0.10
MAX_PATTERN_ERROR = 8.0  # as test_forwarding: a concealed or corrupted frame is far above
MEASURED_SECONDS = 6.0
FRAME_TICKS = 3000  # 30 fps at RTP's 90 kHz


class LossyClient(Client):
    """A client whose every packet to and from the SFU crosses ``link``."""

    def __init__(self, plane: MediaPlane, participant_sid: str, link: LossyLink) -> None:
        super().__init__(plane, participant_sid)
        self.link = link

    async def offer(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.link.peer_sdp_to_sfu(self.pc.localDescription.sdp)
        answer = self.link.sfu_sdp_to_peer(await self.plane.apply_offer(self.sid, sdp))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def answer(self) -> None:
        offer = self.link.sfu_sdp_to_peer(await self.plane.create_offer(self.sid))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.link.peer_sdp_to_sfu(self.pc.localDescription.sdp)
        await self.plane.apply_answer(self.sid, sdp)


@pytest.fixture
async def worker_plane() -> AsyncIterator[MediaPlane]:
    # In a worker, the stats count the SFU's RTP alone (not these clients' own).
    async with create_media_plane(1, host_addresses=["127.0.0.1"]) as plane:
        yield plane


async def correct_frames_per_second(track: MediaStreamTrack, seconds: float) -> float:
    """Frames decoded from ``track`` over ``seconds`` that show the published pattern
    at full size (not concealed, not corrupted by a lost reference)."""
    correct = 0
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            frame = await next_frame(track, timeout=left)
        except asyncio.TimeoutError:
            break
        if (frame.width, frame.height) != (WIDTH, HEIGHT):
            continue
        image = frame.to_ndarray(format="rgb24")
        if pattern_error(image) < MAX_PATTERN_ERROR:
            read_index(image)
            correct += 1
    return correct / seconds


class EncodedFrames(MediaStreamTrack):
    """30 fps of 640x480 VP8 encoded once (PyAV, ~470 kbit/s: two or three RTP
    packets a frame, a keyframe a second), sent as ``av.Packet`` objects that
    aiortc's sender only packetizes. ``frames`` are the encoded bytes, in order."""

    kind = "video"

    def __init__(self, seconds: int = 3) -> None:
        super().__init__()
        self.frames = encode_vp8(seconds)
        self._start: float | None = None
        self._index = 0

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._index / 30 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self.frames[self._index % len(self.frames)])
        packet.pts, packet.time_base = self._index * FRAME_TICKS, fractions.Fraction(1, 90000)
        self._index += 1
        return packet


def encode_vp8(seconds: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 640, 480, "yuv420p"
    codec.bit_rate, codec.gop_size = 470_000, 30
    codec.time_base = fractions.Fraction(1, 30)
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    x = np.arange(640, dtype=np.int32)
    y = np.arange(480, dtype=np.int32)[:, None]
    frames = []
    for index in range(30 * seconds):
        image = np.empty((480, 640, 3), np.uint8)
        image[..., 0] = ((x + 4 * index) % 256).astype(np.uint8)
        image[..., 1] = ((y + 2 * index) % 256).astype(np.uint8)
        image[..., 2] = (((x // 64 + (y + 4 * index) // 64) % 2) * 160 + 40).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        frames += [bytes(p) for p in codec.encode(frame)]
    return frames + [bytes(p) for p in codec.encode(None)]


class FrameCollector(LossyClient):
    """A lossy client that keeps the encoded video frames it assembles (aiortc's
    jitter buffer, no decoder): arrival time, bytes, and whether a decoder could
    use it (every frame since the last keyframe arrived: VP8 P frames refer back)."""

    def __init__(self, plane: MediaPlane, participant_sid: str, link: LossyLink) -> None:
        super().__init__(plane, participant_sid, link)
        self.assembled: list[tuple[float, bytes, bool]] = []
        self._last_timestamp: int | None = None
        self._chain = False

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
        _aiortc.tap_encoded_frames(receiver, self._keep)
        self.tracks.put_nowait(track)

    def _keep(self, codec: Any, data: bytes, timestamp: int) -> None:
        if not data[0] & 1:  # VP8 P bit clear: a keyframe (RFC 6386 9.1)
            self._chain = True
        elif self._last_timestamp is None or timestamp - self._last_timestamp != FRAME_TICKS:
            self._chain = False  # a frame is missing: nothing decodes until a keyframe
        self._last_timestamp = timestamp
        self.assembled.append((time.monotonic(), data, self._chain))


@dataclass
class LossyRun:
    """What one publisher -> worker -> subscriber run over lossy links measured."""

    counters: dict[str, int]
    dropped_up: int
    sent_up: int
    dropped_down: int
    sent_down: int

    def report(self, rate: float) -> str:
        return (
            f"{rate=:.1f}/s, dropped up {self.dropped_up}/{self.sent_up}, "
            f"down {self.dropped_down}/{self.sent_down}, counters {self.counters}"
        )

    def assert_recovered(self, rate: float) -> None:
        report = self.report(rate)
        # The links did lose about a tenth of the media each way.
        assert 0.05 * self.sent_up < self.dropped_up < 0.2 * self.sent_up, report
        assert 0.05 * self.sent_down < self.dropped_down < 0.2 * self.sent_down, report
        assert rate >= 20, report
        # The worker asked the publisher again for what the uplink lost and got it
        # (each loss NACKed at least once: a retransmission lost again is asked
        # again), and resent to the subscriber, from its ring, what the downlink lost.
        counters = self.counters
        assert counters.get("nacks_sent", 0) >= 0.8 * self.dropped_up, report
        assert counters.get("packets_recovered", 0) >= 0.8 * self.dropped_up, report
        assert counters.get("nacks_received", 0) >= 0.8 * self.dropped_down, report
        assert counters.get("retransmissions_sent", 0) >= 0.8 * self.dropped_down, report


async def run_lossy(
    plane: MediaPlane,
    track: MediaStreamTrack,
    subscriber_type: type[LossyClient],
    measure: Callable[[LossyClient, MediaStreamTrack, float], Awaitable[float]],
) -> tuple[float, LossyRun]:
    """Publish ``track`` over a lossy uplink to a subscriber behind a lossy downlink;
    ``measure`` the subscriber for MEASURED_SECONDS after two seconds of warm-up."""
    async with (
        LossyLink(uplink=LOSS, seed=10) as uplink,
        LossyLink(downlink=LOSS, seed=20) as downlink,
    ):
        publisher = LossyClient(plane, sid("PA", 1), uplink)
        subscriber = subscriber_type(plane, sid("PA", 2), downlink)
        try:
            await publisher.join()
            [track_sid] = await publisher.publish(track)
            await subscriber.join()
            await subscriber.subscribe(track_sid)
            received = await asyncio.wait_for(subscriber.tracks.get(), 10)
            await measure(subscriber, received, 2.0)  # past the first keyframe's NACKs

            [before] = await plane.stats()
            up = dataclasses.replace(uplink.counts[Direction.UPLINK])
            down = dataclasses.replace(downlink.counts[Direction.DOWNLINK])
            rate = await measure(subscriber, received, MEASURED_SECONDS)
            [after] = await plane.stats()
        finally:
            await publisher.close()
            await subscriber.close()
    up_now, down_now = uplink.counts[Direction.UPLINK], downlink.counts[Direction.DOWNLINK]
    return rate, LossyRun(
        counters=grown(before, after),
        dropped_up=up_now.rtp_dropped - up.rtp_dropped,
        sent_up=up_now.rtp_passed - up.rtp_passed,
        dropped_down=down_now.rtp_dropped - down.rtp_dropped,
        sent_down=down_now.rtp_passed - down.rtp_passed,
    )


def grown(before: MediaStats, after: MediaStats) -> dict[str, int]:
    """How much each integer counter of the worker grew (those that did)."""
    return {
        f.name: getattr(after, f.name) - getattr(before, f.name)
        for f in dataclasses.fields(MediaStats)
        if isinstance(getattr(after, f.name), int)
        and getattr(after, f.name) != getattr(before, f.name)
    }


async def test_ten_percent_loss_up_and_down_is_recovered_by_nack_and_rtx(
    worker_plane: MediaPlane,
) -> None:
    async def decode(_: LossyClient, track: MediaStreamTrack, seconds: float) -> float:
        return await correct_frames_per_second(track, seconds)

    fps, run = await run_lossy(worker_plane, PatternTrack(), LossyClient, decode)
    run.assert_recovered(fps)


async def test_frames_of_several_packets_arrive_whole_and_in_sequence_under_loss(
    worker_plane: MediaPlane,
) -> None:
    # The pattern's frames are one packet each; these are two or three, and
    # keyframes a dozen: a retransmission that filled a gap with the wrong packet
    # would assemble a frame that was never sent.
    track = EncodedFrames()
    sent = set(track.frames)

    async def collect(subscriber: LossyClient, _: MediaStreamTrack, seconds: float) -> float:
        assert isinstance(subscriber, FrameCollector)
        start = time.monotonic()
        await asyncio.sleep(seconds)
        frames = [(data, usable) for at, data, usable in subscriber.assembled if at >= start]
        assert all(data in sent for data, _ in frames), "a frame was assembled that was not sent"
        return sum(usable for _, usable in frames) / seconds

    fps, run = await run_lossy(worker_plane, track, FrameCollector, collect)
    run.assert_recovered(fps)


async def test_a_subscriber_on_a_bad_link_lowers_its_publishers_remb_only_when_alone(
    worker_plane: MediaPlane,
) -> None:
    # bandwidth.py's policy, end to end: the publisher is told the cap while any
    # subscriber takes all it gets; a congested one alone brings it down.
    rembs: list[tuple[float, int]] = []

    def on_rtcp(data: bytes) -> bool:
        for kind, fmt, start, end in rtcp.packets(data):
            remb = rtcp.remb_bitrate(data, start, end) if kind == rtcp.PSFB else None
            if fmt == rtcp.REMB_FMT and remb is not None:
                rembs.append((time.monotonic(), remb[0]))
        return False  # on to aiortc's sender as well

    async def remb_after(since: float, wanted: Callable[[int], bool]) -> int:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            later = [bitrate for at, bitrate in rembs if at > since]
            if len(later) >= 2 and wanted(later[-1]):
                return later[-1]
            await asyncio.sleep(0.1)
        return rembs[-1][1] if rembs else 0

    async with LossyLink(downlink=0.3, seed=30) as bad_link:
        publisher = Client(worker_plane, sid("PA", 1))
        lossy = LossyClient(worker_plane, sid("PA", 2), bad_link)
        clean = Client(worker_plane, sid("PA", 3))
        try:
            await publisher.join()
            [track_sid] = await publisher.publish(PatternTrack())
            [sending] = publisher.pc.getTransceivers()
            _aiortc.divert_srtp(sending.sender.transport, lambda data, at: False, on_rtcp)
            await lossy.join()
            await lossy.subscribe(track_sid)
            await asyncio.wait_for(lossy.tracks.get(), 10)
            [receiving] = lossy.pc.getTransceivers()

            async def no_nacks(media_ssrc: int, lost: list[int]) -> None:
                pass  # what the link loses stays lost: the subscriber reports it

            receiving.receiver._send_rtcp_nack = no_nacks  # type: ignore[method-assign]
            alone = await remb_after(time.monotonic() + 2, lambda b: b < MAX_BITRATE)
            assert MIN_BITRATE <= alone < MAX_BITRATE, rembs

            await clean.join()
            await clean.subscribe(track_sid)
            await asyncio.wait_for(clean.tracks.get(), 10)
            together = await remb_after(time.monotonic(), lambda b: b == MAX_BITRATE)
            assert together == MAX_BITRATE, rembs
        finally:
            await publisher.close()
            await lossy.close()
            await clean.close()
