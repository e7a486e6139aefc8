"""Forwarding cost: the SFU's CPU per forwarded stream, against re-encoding.

One publisher sends 640x480 30 fps VP8 (about 1 Mbit/s); N subscribers
receive it through

- ``forwarding``: jupyter_video's media plane in one worker process (encoded
  frames fanned out, no decoding, no encoding);
- ``relay``: the baseline, an aiortc SFU that decodes the stream and re-encodes
  it per subscriber (``aiortc.contrib.media.MediaRelay``), in its own process.

The SFU's CPU is read from ``/proc/<pid>/stat`` of its process alone: the
clients (one publisher, N subscribers that count encoded frames without
decoding them) run in this process. Prints one JSON line.

    python benchmarks/forwarding.py --n 1,4,16,32 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
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

from jupyter_video.sfu import adapter
from jupyter_video.sfu.worker import WorkerMediaPlane

WIDTH, HEIGHT, FPS = 640, 480, 30
BITRATE = 1_000_000
ROOM = "RM" + "b" * 32
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


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

    def __init__(self) -> None:
        self.plane = WorkerMediaPlane(1, host_addresses=["127.0.0.1"])
        self._track_sid = "MT" + "1" * 32

    async def start(self) -> None:
        await self.plane.start()

    @property
    def pid(self) -> int:
        return self.plane.worker_pids[0]

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

    async def close(self) -> None:
        await self.plane.close()


class RelaySfu:
    """The baseline: an aiortc SFU re-encoding per subscriber, in a subprocess."""

    name = "relay"

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve-relay",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def _call(self, **request: Any) -> str:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()
        return str(json.loads(await self.process.stdout.readline())["sdp"])

    async def publish(self, offer: str, track_id: str) -> str:
        return await self._call(op="publish", sdp=offer)

    async def subscribe(self, n: int, answer: Callable[[str], Awaitable[str]]) -> None:
        offer = await self._call(op="subscribe", n=n)
        await self._call(op="answer", n=n, sdp=await answer(offer))

    async def close(self) -> None:
        assert self.process is not None and self.process.stdin
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()


async def serve_relay() -> None:
    """The baseline SFU process: MediaRelay, one encoder per subscriber."""
    from aiortc.contrib.media import MediaRelay

    adapter.use_host_addresses(["127.0.0.1"])
    pin_vp8_bitrate()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    relay = MediaRelay()
    source: asyncio.Future[MediaStreamTrack] = loop.create_future()
    pcs: dict[int, RTCPeerConnection] = {}

    def reply(sdp: str) -> None:
        sys.stdout.write(json.dumps({"sdp": sdp}) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        request = json.loads(line)
        if request["op"] == "publish":
            pc = pcs[-1] = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.on("track", lambda track: source.done() or source.set_result(track))
            await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            reply(pc.localDescription.sdp)
        elif request["op"] == "subscribe":
            pc = pcs[request["n"]] = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTrack(relay.subscribe(await source, buffered=False))
            await pc.setLocalDescription(await pc.createOffer())
            reply(pc.localDescription.sdp)
        elif request["op"] == "answer":
            pc = pcs[request["n"]]
            await pc.setRemoteDescription(RTCSessionDescription(request["sdp"], "answer"))
            reply("")
    await asyncio.gather(*(pc.close() for pc in pcs.values()))


# ---------------------------------------------------------------- measuring


async def measure(sfu: ForwardingSfu | RelaySfu, n: int, seconds: float) -> dict[str, Any]:
    """Run one publisher and ``n`` subscribers through ``sfu``; the SFU's cost."""
    await sfu.start()
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    subscribers = [Subscriber() for _ in range(n)]
    try:
        track = MovingPattern()
        publisher.addTransceiver(track, direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        answer = await sfu.publish(publisher.localDescription.sdp, track.id)
        await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        for i, subscriber in enumerate(subscribers):
            await sfu.subscribe(i, subscriber.answer)
        await asyncio.sleep(3.0)  # connect, first keyframe, encoders warm
        cpu0, client0, t0 = cpu_seconds(sfu.pid), time.process_time(), time.monotonic()
        published0 = track.index
        frames0 = [s.frames for s in subscribers]
        bytes0 = [s.bytes for s in subscribers]
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        published = (track.index - published0) / elapsed
        cpu = cpu_seconds(sfu.pid) - cpu0
        client_cpu = time.process_time() - client0
        fps = [(s.frames - f) / elapsed for s, f in zip(subscribers, frames0, strict=True)]
        mbps = [(s.bytes - b) * 8 / elapsed / 1e6 for s, b in zip(subscribers, bytes0, strict=True)]
        sfu_percent = 100 * cpu / elapsed
        delivered = sum(s.frames - f for s, f in zip(subscribers, frames0, strict=True))
        return {
            "sfu": sfu.name,
            "subscribers": n,
            "sfu_cpu_percent": round(sfu_percent, 1),
            "sfu_cpu_percent_per_stream": round(sfu_percent / n, 2),
            "publisher_fps": round(published, 1),
            "sfu_cpu_ms_per_delivered_frame": round(1000 * cpu / max(delivered, 1), 3),
            "subscriber_fps_mean": round(float(np.mean(fps)), 1),
            "subscriber_fps_min": round(float(np.min(fps)), 1),
            "subscriber_mbps_mean": round(float(np.mean(mbps)), 2),
            "clients_cpu_percent": round(100 * client_cpu / elapsed, 1),
        }
    finally:
        for pc in [publisher, *(s.pc for s in subscribers)]:
            with contextlib.suppress(Exception):
                await pc.close()
        await sfu.close()


async def run(counts: list[int], seconds: float, baseline: bool) -> dict[str, Any]:
    adapter.use_host_addresses(["127.0.0.1"])
    pin_vp8_bitrate()
    results: list[dict[str, Any]] = []
    for n in counts:
        results.append(await measure(ForwardingSfu(), n, seconds))
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
        "video": f"{WIDTH}x{HEIGHT} {FPS} fps VP8 ~{BITRATE // 1000} kbit/s",
        "seconds": seconds,
        "cpus": os.cpu_count(),
        "results": results,
        "relay_over_forwarding_cpu_per_frame": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1,4,16,32", help="subscriber counts, e.g. 1,4")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the MediaRelay runs")
    parser.add_argument("--serve-relay", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_relay:
        asyncio.run(serve_relay())
        return
    counts = [int(n) for n in args.n.split(",") if n]
    result = asyncio.run(run(counts, args.seconds, not args.no_baseline))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
