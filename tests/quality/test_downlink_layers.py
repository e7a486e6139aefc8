"""A simulcast publisher and two subscribers under a grid Bandwidth Profile, between
real aiortc peers and the media plane: the subscriber whose downlink loses a
quarter of its video (retransmissions too) gets the lower layer, decoded at the
lower size, while the other keeps decoding the top layer.

aiortc has no simulcast sender, so the publisher here writes two pre-encoded VP8
layers (PyAV) as RTP straight into its SRTP, each on an SSRC its offer announces
in ``a=ssrc-group:SIM``, as twilio-video.js's offer does (docs/quality.md)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from jupyter_video import _aiortc
from jupyter_video.sfu import create_media_plane
from jupyter_video.sfu.interface import MediaPlane
from jupyter_video.sfu.rtp import packet as rtp_packet
from jupyter_video.sfu.rtp.frames import FramePacketizer
from jupyter_video.sfu.rtp.layers import vp8_keyframe_size
from jupyter_video.sfu.rtp.packet import Packet

from ..sfu.peers import ROOM, Client, next_frame, sid
from .peers import LossyClient

pytestmark = pytest.mark.timeout(120)

SIZES = ((320, 180, 150_000), (640, 360, 500_000))
FPS = 15


@pytest.fixture
async def plane() -> AsyncIterator[MediaPlane]:
    media = create_media_plane(0, host_addresses=["127.0.0.1"])
    async with media:
        yield media


def encode_loop(width: int, height: int, bitrate: int, frames: int = 2 * FPS) -> list[bytes]:
    """``frames`` of moving VP8 at this size, a keyframe first (PyAV's libvpx)."""
    vp8 = av.CodecContext.create("libvpx", "w")
    vp8.width, vp8.height, vp8.pix_fmt = width, height, "yuv420p"
    vp8.bit_rate, vp8.time_base = bitrate, fractions.Fraction(1, FPS)
    vp8.gop_size = frames
    vp8.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[bytes] = []
    x = np.arange(width, dtype=np.int32)
    for index in range(frames):
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0] = ((x + 8 * index) % 256).astype(np.uint8)
        image[..., 1] = 128
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        out += [bytes(p) for p in vp8.encode(frame)]
    return out + [bytes(p) for p in vp8.encode(None)]


class Silent(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> Any:
        await asyncio.Future()
        raise MediaStreamError


class SimulcastPublisher:
    """Two VP8 layers on their own SSRCs; a PLI restarts that layer at its keyframe."""

    def __init__(self, plane: MediaPlane, participant_sid: str) -> None:
        self.plane, self.sid = plane, participant_sid
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(Silent(), direction="sendonly")
        self.loops = [encode_loop(w, h, b) for w, h, b in SIZES]
        self.ssrcs = [0] + [random.getrandbits(32) for _ in SIZES[1:]]
        self.positions = [0] * len(SIZES)
        self.task: asyncio.Task[None] | None = None

    async def publish(self) -> str:
        await self.plane.add_peer(self.sid, ROOM)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        lines = self.pc.localDescription.sdp.split("\r\n")
        fid = next(line for line in lines if line.startswith("a=ssrc-group:FID "))
        self.ssrcs[0] = int(fid.split()[1])
        cname = next(line.split("cname:")[1] for line in lines if "cname:" in line)
        at = next(i for i, line in enumerate(lines) if line.startswith("a=ssrc"))
        lines[at:at] = [f"a=ssrc:{s} cname:{cname}" for s in self.ssrcs[1:]] + [
            "a=ssrc-group:SIM " + " ".join(map(str, self.ssrcs))]
        answer = await self.plane.apply_offer(self.sid, "\r\n".join(lines))
        track_sid = "MT" + "5" * 32
        track = self.pc.getTransceivers()[0].sender.track
        await self.plane.bind_publication(self.sid, track.id, track_sid, "video")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        dtls = self.pc.getTransceivers()[0].sender.transport
        _aiortc.divert_srtp(dtls, lambda data, arrival: True, self._on_rtcp)
        payload_type = int(re.search(r"a=rtpmap:(\d+) VP8/90000", answer).group(1))  # type: ignore[union-attr]
        self.task = asyncio.ensure_future(self._send(dtls, payload_type))
        return track_sid

    def _on_rtcp(self, data: bytes) -> bool:
        if len(data) >= 12 and data[1] == 206 and data[0] & 0x1F == 1:  # PLI
            media = int.from_bytes(data[8:12], "big")
            if media in self.ssrcs:
                self.positions[self.ssrcs.index(media)] = 0
        return False

    async def _send(self, dtls: Any, payload_type: int) -> None:
        packetizers = [FramePacketizer("video/VP8") for _ in SIZES]
        sequences = [random.getrandbits(16) for _ in SIZES]
        loop = asyncio.get_running_loop()
        start, tick = loop.time(), 0
        while True:
            for layer, frames in enumerate(self.loops):
                payloads = packetizers[layer].payloads(frames[self.positions[layer]])
                self.positions[layer] = (self.positions[layer] + 1) % len(frames)
                for i, payload in enumerate(payloads):
                    sequences[layer] = (sequences[layer] + 1) & 0xFFFF
                    _aiortc.send_srtp(dtls, rtp_packet.build(
                        payload_type, sequences[layer], (tick * 6000) & 0xFFFFFFFF,
                        self.ssrcs[layer], payload, marker=i == len(payloads) - 1))
            tick += 1
            await asyncio.sleep(max(0.0, start + tick / FPS - loop.time()))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.pc.close()


def keyframe_sizes(client: Client, since: int) -> list[tuple[int, int]]:
    """The sizes of the VP8 keyframes ``client`` received after its first ``since``
    packets (read from the keyframes' headers, RFC 6386 9.1)."""
    sizes = []
    for received in client.rtp[since:]:
        payload = received.payload
        packet = Packet(rtp_packet.build(received.payload_type, received.sequence_number,
                                         received.timestamp, received.ssrc, payload))
        size = vp8_keyframe_size(packet)
        if size is not None:
            sizes.append(size)
    return sizes


async def width_until(track: Any, width: int, timeout: float = 30) -> int:
    """Decode frames until one is ``width`` wide; fail with the widths seen."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        frame = await next_frame(track)
        seen.append(frame.width)
        if frame.width == width:
            return len(seen)
    raise AssertionError(f"no {width}-wide frame within {timeout}s: {sorted(set(seen))}")


async def test_the_subscriber_with_a_lossy_downlink_gets_the_lower_layer(
    plane: MediaPlane,
) -> None:
    publisher = SimulcastPublisher(plane, sid("PA", 1))
    lossy, clean = LossyClient(plane, sid("PA", 2)), Client(plane, sid("PA", 3))
    try:
        track_sid = await publisher.publish()
        tracks = {}
        for client in (lossy, clean):
            await client.join()
            await plane.set_bandwidth_profile(client.sid, {"video": {"mode": "grid"}})
            await client.subscribe(track_sid)
            tracks[client.sid] = await asyncio.wait_for(client.tracks.get(), 10)
        for client in (lossy, clean):  # both start on the top layer
            await width_until(tracks[client.sid], 640)

        video = {c.payloadType for t in lossy.pc.getTransceivers() for c in t._codecs}
        rtx = {c.payloadType for t in lossy.pc.getTransceivers() for c in t._codecs
               if c.mimeType.lower() == "video/rtx"}
        arrived = 0

        def quarter_lost(packet: Any) -> bool:
            nonlocal arrived
            if packet.payload_type in rtx:
                return True  # no recovery: the loss stays in its Receiver Reports
            if packet.payload_type not in video:
                return False
            arrived += 1
            return arrived % 4 == 0

        seen = {c.sid: len(c.rtp) for c in (lossy, clean)}
        lossy.lose = quarter_lost
        # The SFU's next keyframe to the lossy subscriber is the lower layer's (the
        # VP8 keyframe header in what arrives), to the clean one still the top's.
        deadline = time.monotonic() + 30
        while (320, 180) not in keyframe_sizes(lossy, seen[lossy.sid]):
            assert time.monotonic() < deadline, keyframe_sizes(lossy, seen[lossy.sid])
            await asyncio.sleep(0.2)
        assert set(keyframe_sizes(clean, seen[clean.sid])) <= {(640, 360)}
        widths = [(await next_frame(tracks[clean.sid])).width for _ in range(30)]
        assert set(widths) == {640}  # decoding the top layer all along

        lossy.lose = None
        # With the loss gone the estimate climbs back (8 % a second) until the top
        # layer fits again: its keyframe comes (asked for by PLI on the switch up).
        since = len(lossy.rtp)
        deadline = time.monotonic() + 45
        while (640, 360) not in keyframe_sizes(lossy, since):
            assert time.monotonic() < deadline, keyframe_sizes(lossy, since)
            await asyncio.sleep(0.5)
    finally:
        await publisher.close()
        for client in (lossy, clean):
            with contextlib.suppress(Exception):
                await client.close()
