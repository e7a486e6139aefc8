"""Loss on the publisher's uplink and on a subscriber's downlink is recovered by the SFU.

A user-space relay (:mod:`tests.lossy_link`, seeded) drops 10 % of the RTP
packets between each client and the media worker; the subscriber decodes the
publisher's numbered pattern and must keep >= 20 correct frames a second, while
the worker's counters show what it asked for and got back (NACKs to the
publisher, packets recovered) and what it answered (NACKs from the subscriber,
retransmissions from its ring, as RTX where negotiated).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from jupyter_video.sfu import create_media_plane
from jupyter_video.sfu.interface import MediaPlane, MediaStats

from ..lossy_link import Direction, LinkCounts, LossyLink
from .peers import HEIGHT, WIDTH, Client, PatternTrack, next_frame, pattern_error, read_index, sid

LOSS = 0.10
MAX_PATTERN_ERROR = 8.0  # as test_forwarding: a concealed or corrupted frame is far above
MEASURED_SECONDS = 6.0


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


def dropped_since(link: LossyLink, direction: Direction, before: LinkCounts) -> int:
    return link.counts[direction].rtp_dropped - before.rtp_dropped


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
    async with (
        LossyLink(uplink=LOSS, seed=10) as uplink,
        LossyLink(downlink=LOSS, seed=20) as downlink,
    ):
        publisher = LossyClient(worker_plane, sid("PA", 1), uplink)
        subscriber = LossyClient(worker_plane, sid("PA", 2), downlink)
        try:
            await publisher.join()
            [track_sid] = await publisher.publish(PatternTrack())
            await subscriber.join()
            await subscriber.subscribe(track_sid)
            track = await asyncio.wait_for(subscriber.tracks.get(), 10)
            await next_frame(track)
            await correct_frames_per_second(track, 2.0)  # past the first keyframe's NACKs

            [before] = await worker_plane.stats()
            up = dataclasses.replace(uplink.counts[Direction.UPLINK])
            down = dataclasses.replace(downlink.counts[Direction.DOWNLINK])
            fps = await correct_frames_per_second(track, MEASURED_SECONDS)
            [after] = await worker_plane.stats()
        finally:
            await publisher.close()
            await subscriber.close()

    counters = grown(before, after)
    dropped_up = dropped_since(uplink, Direction.UPLINK, up)
    dropped_down = dropped_since(downlink, Direction.DOWNLINK, down)
    sent_up = uplink.counts[Direction.UPLINK].rtp_passed - up.rtp_passed
    sent_down = downlink.counts[Direction.DOWNLINK].rtp_passed - down.rtp_passed
    report = f"{fps=:.1f}, {dropped_up=}/{sent_up}, {dropped_down=}/{sent_down}, {counters=}"
    # The links did lose about a tenth of the media each way.
    assert 0.05 * sent_up < dropped_up < 0.2 * sent_up, report
    assert 0.05 * sent_down < dropped_down < 0.2 * sent_down, report
    assert fps >= 20, report
    # The worker asked the publisher again for what the uplink lost and got it
    # (each loss NACKed at least once: a retransmission lost again is asked again),
    # and resent to the subscriber, from its ring, what the downlink lost.
    assert counters.get("nacks_sent", 0) >= 0.8 * dropped_up, report
    assert counters.get("packets_recovered", 0) >= 0.8 * dropped_up, report
    assert counters.get("nacks_received", 0) >= 0.8 * dropped_down, report
    assert counters.get("retransmissions_sent", 0) >= 0.8 * dropped_down, report
