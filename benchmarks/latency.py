"""Added latency through the SFU: p50 / p95 for audio and video, packet by packet.

One publisher sends pre-encoded 640x480 VP8 (~470 kbit/s) and Opus
(``benchmarks/preencoded.py``) to one media worker; ``--subscribers`` peers
receive both. Every peer's UDP crosses a relay of this process
(``tests/lossy_link.py``, losing nothing here) that notes, at socket level on the
machine's one monotonic clock, when each RTP packet went to the SFU and when
each came out of it: the latency is the second time minus the first, so it
holds the worker's time and two loopback hops, and none of the clients' own
(the subscribers take their packets as they leave SRTP, no jitter buffer).
The relays share this process's loop (uvloop where installed) with the
clients: at many subscribers, its own delays show in the tail (p95), so read
the p50 there.

The SFU rewrites SSRC, sequence numbers and timestamps, so packets are paired
by their frame: the publisher moves each frame's RTP timestamp by a seeded
random few milliseconds off its nominal place (and sends it then), which makes
the intervals a fingerprint; the timestamp offset each subscriber's stream
has is the one that most subscriber frames agree on, and a frame's packets
pair in sequence order. ``video_frame_ms`` times a frame's last packet (when it
is complete at the subscriber) against the publisher's last packet of it.

``--media-worker-tree DIR`` runs the worker from another checkout (the frame
path: ``git archive main | tar -x -C DIR``). Prints one JSON line.

    python benchmarks/latency.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from preencoded import PacketCounter, audio_track, encoded_media, payload_kinds, video_track
from processes import media_worker_pid, run_loop, start_media_plane

from jupyter_video import _aiortc
from jupyter_video.sfu.interface import RenegotiationNeeded

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.lossy_link import Direction, LossyLink

ROOM = "RM" + "c" * 32
PUBLISHER = "PA" + "0" * 32
VIDEO_JITTER = 300  # RTP ticks at 90 kHz: +-3.3 ms, well inside a 33 ms frame interval
AUDIO_JITTER = 100  # at 48 kHz: +-2.1 ms of a 20 ms frame
MATCHED_FRAMES = 40  # subscriber frames that vote for the timestamp offset


@dataclass
class Capture:
    """RTP packets one relay passed in one direction: (payload type, seq, ts, ns)."""

    direction: Direction
    kinds: dict[int, str] = field(default_factory=dict)
    packets: list[tuple[int, int, int, int]] = field(default_factory=list)

    def tap(self, direction: Direction, data: bytes, time_ns: int) -> None:
        if direction is self.direction and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
            seq = int.from_bytes(data[2:4], "big")
            self.packets.append((data[1] & 0x7F, seq, int.from_bytes(data[4:8], "big"), time_ns))

    def frames(self, kind: str) -> dict[int, list[int]]:
        """RTP timestamp -> its packets' times in sequence order (first arrivals only)."""
        by_frame: dict[int, dict[int, int]] = collections.defaultdict(dict)
        for pt, seq, ts, ns in self.packets:
            if self.kinds.get(pt) == kind:
                by_frame[ts].setdefault(seq, ns)
        # Sequence order within a frame, also across a wrap at 65536.
        ordered = {}
        for ts, seqs in by_frame.items():
            first = next(iter(seqs))
            ordered[ts] = [seqs[s] for s in sorted(seqs, key=lambda s: (s - first + 32768) % 65536)]
        return ordered


def timestamp_offset(sent: dict[int, list[int]], received: dict[int, list[int]]) -> int | None:
    """The offset (mod 2**32) the SFU added to this stream's timestamps: the one
    most of the first received frames agree on, None if no clear majority."""
    votes: collections.Counter[int] = collections.Counter()
    first = sorted(received, key=lambda ts: received[ts][0])[:MATCHED_FRAMES]
    for ts in first:
        for original in sent:
            votes[(ts - original) % (1 << 32)] += 1
    if not votes:
        return None
    offset, count = votes.most_common(1)[0]
    return offset if count >= 0.8 * len(first) else None


def latencies(
    sent: dict[int, list[int]], received: dict[int, list[int]]
) -> tuple[list[float], list[float]]:
    """(per packet, per frame's last packet) added latency in ms."""
    offset = timestamp_offset(sent, received)
    if offset is None:
        raise RuntimeError("no timestamp offset pairs the subscriber's frames with the publisher's")
    packets, frames = [], []
    for ts, times in received.items():
        original = sent.get((ts - offset) % (1 << 32))
        if original is None or len(original) != len(times):
            continue  # lost, or sent before the capture began
        packets += [(r - s) / 1e6 for s, r in zip(original, times, strict=True)]
        frames.append((times[-1] - original[-1]) / 1e6)
    return packets, frames


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    array = np.asarray(values)
    return {
        "count": len(values),
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "max": round(float(array.max()), 2),
    }


class Peer:
    """A peer connection whose UDP crosses its own relay."""

    def __init__(self, direction: Direction) -> None:
        # One transport for audio and video (as twilio-video asks): one address to relay.
        bundle = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = RTCPeerConnection(bundle)
        self.capture = Capture(direction)
        self.link = LossyLink(on_datagram=self.capture.tap)
        self.counter = PacketCounter()

    def divert(self) -> None:
        """Take received packets as they leave SRTP (no jitter buffer, no decoding)."""
        dtls = self.pc.getTransceivers()[0].receiver.transport
        _aiortc.divert_srtp(dtls, self.counter.on_rtp, self.counter.on_rtcp)


async def run(subscribers: int, seconds: float, warmup: float, tree: str | None) -> dict[str, Any]:
    media = encoded_media()
    plane = await start_media_plane(tree)
    publisher = Peer(Direction.UPLINK)
    receivers = [Peer(Direction.DOWNLINK) for _ in range(subscribers)]
    peers = {PUBLISHER: publisher} | {f"PA{n + 1:032x}": p for n, p in enumerate(receivers)}
    renegotiating: asyncio.Future[None] | None = None
    try:
        for peer in peers.values():
            await peer.link.start()
        tracks = [video_track(media, VIDEO_JITTER), audio_track(media, AUDIO_JITTER)]
        for track in tracks:
            publisher.pc.addTransceiver(track, direction="sendonly")
        await plane.add_peer(PUBLISHER, ROOM)
        await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
        offer = publisher.pc.localDescription.sdp
        publisher.capture.kinds = payload_kinds(offer)
        answer = await plane.apply_offer(PUBLISHER, publisher.link.peer_sdp_to_sfu(offer))
        track_sids = [f"MT{n:032x}" for n in range(len(tracks))]
        for track, track_sid in zip(tracks, track_sids, strict=True):
            await plane.bind_publication(PUBLISHER, track.id, track_sid, track.kind)
        await publisher.pc.setRemoteDescription(
            RTCSessionDescription(sdp=publisher.link.sfu_sdp_to_peer(answer), type="answer")
        )

        async def negotiate(sid: str) -> None:
            peer = peers[sid]
            sdp = peer.link.sfu_sdp_to_peer(await plane.create_offer(sid))
            peer.capture.kinds = payload_kinds(sdp)
            peer.counter.kinds = dict(peer.capture.kinds)
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await peer.pc.setLocalDescription(await peer.pc.createAnswer())
            await plane.apply_answer(sid, peer.link.peer_sdp_to_sfu(peer.pc.localDescription.sdp))
            peer.divert()

        async def renegotiate() -> None:
            async for event in plane.events():  # the publication became ready
                if isinstance(event, RenegotiationNeeded) and event.participant_sid != PUBLISHER:
                    await negotiate(event.participant_sid)

        renegotiating = asyncio.ensure_future(renegotiate())
        for sid in list(peers)[1:]:
            await plane.add_peer(sid, ROOM)
            needs_offer = [await plane.subscribe(sid, track_sid) for track_sid in track_sids]
            if any(needs_offer):
                await negotiate(sid)
        await asyncio.sleep(warmup)
        for peer in peers.values():  # measure from here on
            peer.capture.packets.clear()
        worker = media_worker_pid(plane)
        await asyncio.sleep(seconds)
        [stats] = await plane.stats()
    finally:
        if renegotiating is not None:
            renegotiating.cancel()
        for peer in peers.values():
            with contextlib.suppress(Exception):
                await peer.pc.close()
            peer.link.close()
        await plane.close()

    result: dict[str, Any] = {
        "benchmark": "latency",
        "media_worker": tree or "this checkout",
        "worker_pid": worker,
        "subscribers": subscribers,
        "seconds": seconds,
        "cpus": os.cpu_count(),
    }
    for kind in ("audio", "video"):
        sent = publisher.capture.frames(kind)
        packets: list[float] = []
        frames: list[float] = []
        for peer in receivers:
            p, f = latencies(sent, peer.capture.frames(kind))
            packets += p
            frames += f
        result[f"{kind}_packet_ms"] = percentiles(packets)
        if kind == "video":
            result["video_frame_ms"] = percentiles(frames)
    result["packets_forwarded"] = stats.packets_forwarded
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--media-worker-tree", help="run the media worker from this checkout")
    args = parser.parse_args()
    _aiortc.use_host_addresses(["127.0.0.1"])
    result = run_loop(run(args.subscribers, args.seconds, args.warmup, args.media_worker_tree))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
