"""Forwarding cost: the SFU's CPU per forwarded stream, against re-encoding.

One publisher sends 640x480 30 fps VP8 (about 1 Mbit/s); N subscribers
receive it through

- ``forwarding``: jupyter_video's media plane in one worker process (encoded
  frames fanned out, no decoding, no encoding);
- ``relay``: the baseline, an aiortc SFU that decodes the stream and re-encodes
  it per subscriber (``aiortc.contrib.media.MediaRelay``), in its own process,
  measured in the same run.

What is measured, over ``--seconds`` after 3 s of warm-up:

- ``sfu_cpu_percent``: CPU of the SFU process alone, read from its threads'
  ``/proc/<pid>/task/*/schedstat`` (100 = one core); ``_per_stream`` divides
  it by N.
- ``publisher_fps``: frames the publisher's track produced. The publisher runs
  in a process of its own (encoding VP8 takes a good part of a core; sharing a
  process with N subscribers it fell behind at 32, and every subscriber got
  what it did not send).
- ``sfu_received_fps`` / ``sfu_forwarded_fps``: forwarding only, from the
  SFU's own counters: complete frames taken from the publisher, and frames
  queued per subscriber (mean over subscribers).
- ``sfu_us_per_forwarded_packet``: forwarding only, the SFU's CPU over the RTP
  packets it sent to subscribers (its ``packets_forwarded``), receiving
  included: all-in, the figure issue 10 targets at 9 subscribers (<= 32 us).
- ``subscriber_fps_*``: complete encoded frames each subscriber assembled from
  RTP (aiortc's jitter buffer, no decoding), in this process.
- ``clients_cpu_percent``: this process (the N subscribers) and the
  publisher's; ``machine_busy_percent``: all cores, from ``/proc/stat`` (100 =
  every core busy): a busy machine starves clients and SFU alike, so read the
  fps with it.
- ``relay_over_forwarding_cpu_per_frame``: the SFU CPU per frame delivered to
  subscribers, relay over forwarding (relay saturates a core well before 32
  subscribers and then delivers fewer frames).

``--media-worker-tree DIR`` runs the forwarding worker from another checkout
(the frame path: ``git archive main | tar -x -C DIR``). Prints one JSON line.

    python benchmarks/forwarding.py --n 1,4,9,16,32 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.codecs import vpx
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack
from preencoded import cpu_seconds, machine_busy_seconds
from processes import Child, media_worker_pid, serve, start_media_plane

from jupyter_video import _aiortc as adapter

WIDTH, HEIGHT, FPS = 640, 480, 30
BITRATE = 1_000_000
ROOM = "RM" + "b" * 32


class MovingPattern(VideoStreamTrack):
    """640x480 frames with texture and a moving bar, so VP8 has something to code."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(7)
        self._texture = rng.integers(0, 255, (HEIGHT, WIDTH), dtype=np.uint8)
        self.index = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        shift = (self.index * 4) % WIDTH
        luma = np.roll(self._texture, shift, axis=1)
        x = (self.index * 8) % (WIDTH - 40)
        luma[:, x : x + 40] = 255
        yuv = np.concatenate([luma, np.full((HEIGHT // 2, WIDTH), 128, np.uint8)])
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        self.index += 1
        return frame


def pin_vp8_bitrate() -> None:
    """Hold every VP8 encoder of this process at BITRATE, whatever REMB says
    (aiortc clamps its target between these module constants)."""
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = BITRATE


class Subscriber:
    """A client that counts the encoded frames it receives, without decoding them."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self.bytes = 0
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
        adapter.tap_encoded_frames(receiver, self._count)

    def _count(self, codec: Any, data: bytes, timestamp: int) -> None:
        self.frames += 1
        self.bytes += len(data)

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)


# ---------------------------------------------------------------- the two SFUs


class ForwardingSfu:
    """jupyter_video's media plane, one worker process."""

    name = "forwarding"

    def __init__(self, tree: str | None = None) -> None:
        self.tree = tree
        self._track_sid = "MT" + "1" * 32

    async def start(self) -> None:
        self.plane = await start_media_plane(self.tree)

    @property
    def pid(self) -> int:
        return media_worker_pid(self.plane)

    async def publish(self, offer: str, track_id: str) -> str:
        await self.plane.add_peer("PA" + "0" * 32, ROOM)
        answer = await self.plane.apply_offer("PA" + "0" * 32, offer)
        await self.plane.bind_publication("PA" + "0" * 32, track_id, self._track_sid, "video")
        return answer

    async def subscribe(self, n: int, answer: Callable[[str], Awaitable[str]]) -> None:
        sid = f"PA{n + 1:032x}"
        await self.plane.add_peer(sid, ROOM)
        await self.plane.subscribe(sid, self._track_sid)
        await self.plane.apply_answer(sid, await answer(await self.plane.create_offer(sid)))

    async def counts(self) -> tuple[int, int, int] | None:
        """Frames received from the publisher, frames queued to subscribers and RTP
        packets sent to them, so far."""
        [stats] = await self.plane.stats()
        return stats.frames_received, stats.frames_forwarded, stats.packets_forwarded

    async def close(self) -> None:
        await self.plane.close()


class RelaySfu:
    """The baseline: an aiortc SFU re-encoding per subscriber, in a subprocess."""

    name = "relay"

    def __init__(self) -> None:
        self.child = Child(__file__, "relay")

    async def start(self) -> None:
        await self.child.start()

    @property
    def pid(self) -> int:
        return self.child.pid

    async def publish(self, offer: str, track_id: str) -> str:
        return str((await self.child.call(op="publish", sdp=offer))["sdp"])

    async def subscribe(self, n: int, answer: Callable[[str], Awaitable[str]]) -> None:
        offer = (await self.child.call(op="subscribe", n=n))["sdp"]
        await self.child.call(op="answer", n=n, sdp=await answer(offer))

    async def counts(self) -> tuple[int, int, int] | None:
        return None  # MediaRelay counts nothing

    async def close(self) -> None:
        await self.child.call(op="close")
        await self.child.close()


async def serve_relay() -> None:
    """The baseline SFU process: MediaRelay, one encoder per subscriber."""
    from aiortc.contrib.media import MediaRelay

    relay = MediaRelay()
    source: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    pcs: dict[int, RTCPeerConnection] = {}

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] == "publish":
            pc = pcs[-1] = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.on("track", lambda track: source.done() or source.set_result(track))
            await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return {"sdp": pc.localDescription.sdp}
        if request["op"] == "subscribe":
            pc = pcs[request["n"]] = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTrack(relay.subscribe(await source, buffered=False))
            await pc.setLocalDescription(await pc.createOffer())
            return {"sdp": pc.localDescription.sdp}
        if request["op"] == "answer":
            await pcs[request["n"]].setRemoteDescription(
                RTCSessionDescription(request["sdp"], "answer")
            )
        elif request["op"] == "close":
            await asyncio.gather(*(pc.close() for pc in pcs.values()))
        return {}

    pin_vp8_bitrate()
    await serve(handle)


class Publisher:
    """The publishing client, in a process of its own (it encodes VP8)."""

    def __init__(self) -> None:
        self.child = Child(__file__, "publisher")
        self.track_id = ""

    @property
    def pid(self) -> int:
        return self.child.pid

    async def start(self) -> str:
        """Start it; its offer."""
        await self.child.start()
        reply = await self.child.call(op="offer")
        self.track_id = reply["track_id"]
        return str(reply["sdp"])

    async def answer(self, sdp: str) -> None:
        await self.child.call(op="answer", sdp=sdp)

    async def frames(self) -> int:
        """Frames its track has produced so far."""
        return int((await self.child.call(op="frames"))["frames"])

    async def close(self) -> None:
        await self.child.call(op="close")
        await self.child.close()


async def serve_publisher() -> None:
    """The publisher process: one sendonly MovingPattern track."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = MovingPattern()
    pc.addTransceiver(track, direction="sendonly")

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] == "offer":
            await pc.setLocalDescription(await pc.createOffer())
            return {"sdp": pc.localDescription.sdp, "track_id": track.id}
        if request["op"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "answer"))
        elif request["op"] == "frames":
            return {"frames": track.index}
        elif request["op"] == "close":
            await pc.close()
        return {}

    pin_vp8_bitrate()
    await serve(handle)


# ---------------------------------------------------------------- measuring


async def measure(sfu: ForwardingSfu | RelaySfu, n: int, seconds: float) -> dict[str, Any]:
    """Run one publisher and ``n`` subscribers through ``sfu``; the SFU's cost."""
    await sfu.start()
    publisher = Publisher()
    subscribers = [Subscriber() for _ in range(n)]
    try:
        offer = await publisher.start()
        await publisher.answer(await sfu.publish(offer, publisher.track_id))
        for i, subscriber in enumerate(subscribers):
            await sfu.subscribe(i, subscriber.answer)
        await asyncio.sleep(3.0)  # connect, first keyframe, encoders warm

        async def sample() -> dict[str, Any]:
            return {
                "time": time.monotonic(),
                "sfu_cpu": cpu_seconds(sfu.pid),
                "clients_cpu": time.process_time() + cpu_seconds(publisher.pid),
                "machine": machine_busy_seconds(),
                "published": await publisher.frames(),
                "sfu_counts": await sfu.counts(),
                "frames": [s.frames for s in subscribers],
                "bytes": [s.bytes for s in subscribers],
            }

        start = await sample()
        await asyncio.sleep(seconds)
        end = await sample()
        elapsed = end["time"] - start["time"]

        def rate(key: str) -> float:
            return float(end[key] - start[key]) / elapsed

        def rates(key: str) -> list[float]:
            return [(e - s) / elapsed for s, e in zip(start[key], end[key], strict=True)]

        fps = rates("frames")
        mbps = [r * 8 / 1e6 for r in rates("bytes")]
        cpu = end["sfu_cpu"] - start["sfu_cpu"]
        sfu_percent = 100 * cpu / elapsed
        delivered = sum(end["frames"]) - sum(start["frames"])
        busy = end["machine"][0] - start["machine"][0]
        total = end["machine"][1] - start["machine"][1]
        result: dict[str, Any] = {
            "sfu": sfu.name,
            "subscribers": n,
            "sfu_cpu_percent": round(sfu_percent, 1),
            "sfu_cpu_percent_per_stream": round(sfu_percent / n, 2),
            "sfu_cpu_ms_per_delivered_frame": round(1000 * cpu / max(delivered, 1), 3),
            "publisher_fps": round(rate("published"), 1),
        }
        if start["sfu_counts"] is not None:
            received, forwarded, packets = rates("sfu_counts")
            result["sfu_received_fps"] = round(received, 1)
            result["sfu_forwarded_fps"] = round(forwarded / n, 1)
            result["sfu_packets_forwarded_per_second"] = round(packets)
            result["sfu_us_per_forwarded_packet"] = round(1e6 * cpu / max(packets * elapsed, 1), 1)
        result |= {
            "subscriber_fps_mean": round(float(np.mean(fps)), 1),
            "subscriber_fps_min": round(float(np.min(fps)), 1),
            "subscriber_mbps_mean": round(float(np.mean(mbps)), 2),
            "clients_cpu_percent": round(100 * rate("clients_cpu"), 1),
            "machine_busy_percent": round(100 * busy / max(total, 1e-9), 1),
        }
        return result
    finally:
        for pc in (s.pc for s in subscribers):
            with contextlib.suppress(Exception):
                await pc.close()
        with contextlib.suppress(Exception):
            await publisher.close()
        await sfu.close()


async def run(
    counts: list[int], seconds: float, baseline: bool, tree: str | None
) -> dict[str, Any]:
    adapter.use_host_addresses(["127.0.0.1"])
    pin_vp8_bitrate()
    results: list[dict[str, Any]] = []
    for n in counts:
        results.append(await measure(ForwardingSfu(tree), n, seconds))
        if baseline:
            results.append(await measure(RelaySfu(), n, seconds))
    # Relay saturates its core well before 32 subscribers and then delivers fewer
    # frames, so CPU per delivered frame compares the two fairly.
    ratios = {}
    for n in counts:
        by_sfu = {r["sfu"]: r for r in results if r["subscribers"] == n}
        if "relay" in by_sfu:
            key = "sfu_cpu_ms_per_delivered_frame"
            ratio = by_sfu["relay"][key] / max(by_sfu["forwarding"][key], 1e-9)
            ratios[str(n)] = round(ratio, 1)
    return {
        "benchmark": "forwarding",
        "media_worker": tree or "this checkout",
        "video": f"{WIDTH}x{HEIGHT} {FPS} fps VP8 ~{BITRATE // 1000} kbit/s",
        "seconds": seconds,
        "cpus": os.cpu_count(),
        "results": results,
        "relay_over_forwarding_cpu_per_frame": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1,4,9,16,32", help="subscriber counts, e.g. 1,4")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the MediaRelay runs")
    parser.add_argument("--media-worker-tree", help="run the media worker from this checkout")
    parser.add_argument("--serve-relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-publisher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_relay or args.serve_publisher:
        asyncio.run(serve_relay() if args.serve_relay else serve_publisher())
        return
    counts = [int(n) for n in args.n.split(",") if n]
    result = asyncio.run(run(counts, args.seconds, not args.no_baseline, args.media_worker_tree))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
