"""A class in one media worker, with and without a Bandwidth Profile: 1 presenter and
29 viewers, everyone publishing a 3-layer VP8 simulcast camera (SSRC simulcast, as
twilio-video.js writes it) and subscribed to everyone else.

Phase 1 (no profile) forwards every subscriber the best layer of every camera, as
the SFU did before docs/quality.md. Phase 2 gives every participant the quality
channels and ``bandwidth_profile.video.mode = grid`` and sends the render hints a
grid of small tiles makes: the presenter rendered large (1280x720), each viewer's
camera small (160x90). Measured per phase, over ``--seconds``:

- ``worker_cpu_percent``: the media worker's CPU (100 = one core), from its
  threads' schedstat, and ``us_per_forwarded_packet`` (that CPU over packets sent);
- ``downlink_kbps`` per subscriber (min, mean, max) and ``video_packets_per_second``:
  what the subscribers received, counted as it leaves SRTP (never decoded);
- ``clients_socket_drops_percent``: packets the clients' own sockets dropped.

The clients cost little: each layer's VP8 is encoded once (benchmarks/preencoded.py)
and replayed as RTP packets written straight into SRTP (``_aiortc.send_srtp``) on
the layer's SSRC, announced in the offer by ``a=ssrc-group:SIM`` (aiortc has no
simulcast sender); a PLI for a layer restarts that layer's loop at its keyframe.
Clients run in ``--client-processes`` children. Prints one JSON line.

    python benchmarks/quality.py --participants 30 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import time
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from preencoded import EncodedMedia, cpu_seconds, encoded_media, machine_busy_seconds
from processes import Child, media_worker_pid, run_loop, serve, start_media_plane, udp_drops

from jupyter_video import _aiortc
from jupyter_video.sfu.interface import RenegotiationNeeded
from jupyter_video.sfu.rtp import packet as rtp_packet
from jupyter_video.sfu.rtp.frames import FramePacketizer

ROOM = "RM" + "b" * 32
LAYERS = ((160, 90, 60_000), (320, 180, 150_000), (640, 360, 400_000))
"""Width, height and bitrate of each simulcast layer, lowest first."""
VIDEO_RATE = 90_000
PRESENTER_SIZE = {"width": 1280, "height": 720}
TILE_SIZE = {"width": 160, "height": 90}


def participant_sid(index: int) -> str:
    return f"PA{index:032x}"


def layer_media(fps: int) -> list[EncodedMedia]:
    return [encoded_media(width=w, height=h, fps=fps, video_bitrate=b, seconds=2)
            for w, h, b in LAYERS]


# ------------------------------------------------------------------ the clients


class Silent(MediaStreamTrack):
    """The track aiortc's sender holds: it never yields a frame (the layers' RTP is
    written by :class:`SimulcastSender`), so aiortc's encoder never runs."""

    kind = "video"

    async def recv(self) -> Any:
        await asyncio.Future()
        raise MediaStreamError


class SimulcastSender:
    """Replays each layer's encoded loop on its own SSRC, in real time."""

    def __init__(self, media: list[EncodedMedia], fps: int) -> None:
        self.media = media
        self.fps = fps
        self.ssrcs = [random.getrandbits(32) for _ in media]
        self.positions = [0 for _ in media]
        self.sequences = [random.getrandbits(16) for _ in media]
        self.packetizers = [FramePacketizer("video/VP8") for _ in media]
        self.payload_type = 96
        self.task: asyncio.Task[None] | None = None

    def announce(self, sdp: str) -> str:
        """``sdp`` (aiortc's offer) with the layers' SSRCs and a SIM group in its
        video section; aiortc's own SSRC (and its RTX pair) is the lowest layer's."""
        lines = sdp.split("\r\n")
        first = next(i for i, line in enumerate(lines) if line.startswith("a=ssrc"))
        fid = next((line for line in lines if line.startswith("a=ssrc-group:FID ")), None)
        # The media SSRC: the FID group's first (aiortc's a=ssrc lines come in any order).
        own = int(fid.split()[1]) if fid else int(lines[first][7:].split()[0])
        cname = next(line.split("cname:")[1] for line in lines if "cname:" in line)
        self.ssrcs[0] = own
        extra = [f"a=ssrc:{ssrc} cname:{cname}" for ssrc in self.ssrcs[1:]]
        extra.append("a=ssrc-group:SIM " + " ".join(str(s) for s in self.ssrcs))
        return "\r\n".join(lines[:first] + extra + lines[first:])

    def start(self, dtls: Any, answer: str) -> None:
        match = re.search(r"a=rtpmap:(\d+) VP8/90000", answer)
        if match:
            self.payload_type = int(match.group(1))
        self.task = asyncio.ensure_future(self._run(dtls))

    def keyframe_requested(self, ssrc: int) -> None:
        if ssrc in self.ssrcs:
            self.positions[self.ssrcs.index(ssrc)] = 0  # the loop starts on its keyframe

    async def _run(self, dtls: Any) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            timestamp = (tick * VIDEO_RATE // self.fps) & 0xFFFFFFFF
            for layer, media in enumerate(self.media):
                frame = media.video[self.positions[layer]]
                self.positions[layer] = (self.positions[layer] + 1) % len(media.video)
                payloads = self.packetizers[layer].payloads(frame)
                for i, payload in enumerate(payloads):
                    self.sequences[layer] = (self.sequences[layer] + 1) & 0xFFFF
                    _aiortc.send_srtp(dtls, rtp_packet.build(
                        self.payload_type, self.sequences[layer], timestamp,
                        self.ssrcs[layer], payload, marker=i == len(payloads) - 1))
            tick += 1
            await asyncio.sleep(max(0.0, start + tick / self.fps - loop.time()))


class Participant:
    """One participant: a simulcast camera out, video counted in, MSP channels."""

    def __init__(self, fps: int) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(Silent(), direction="sendonly")
        self.sender = SimulcastSender(layer_media(fps), fps)
        self.video_types: set[int] = set()
        self.bytes = 0
        self.packets = 0
        self.channels: dict[str, Any] = {}
        self.pc.on("datachannel", lambda channel: self.channels.__setitem__(
            channel.label.split("-")[0], channel))

    async def offer(self) -> dict[str, Any]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        track = self.pc.getTransceivers()[0].sender.track
        return {"sdp": self.sender.announce(self.pc.localDescription.sdp), "track": track.id}

    async def take_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        dtls = self.pc.getTransceivers()[0].sender.transport
        _aiortc.divert_srtp(dtls, self._on_rtp, self._on_rtcp)
        self.sender.start(dtls, sdp)

    def _on_rtp(self, data: bytes, arrival_ms: int) -> bool:
        if data[1] & 0x7F in self.video_types:
            self.packets += 1
            self.bytes += len(data)
        return True  # never to aiortc's receivers: nothing decoded

    def _on_rtcp(self, data: bytes) -> bool:
        offset = 0
        while offset + 12 <= len(data):
            length = (int.from_bytes(data[offset + 2:offset + 4], "big") + 1) * 4
            if data[offset + 1] == 206 and data[offset] & 0x1F == 1:  # PLI
                self.sender.keyframe_requested(int.from_bytes(data[offset + 8:offset + 12], "big"))
            offset += length
        return False

    async def answer(self, sdp: str) -> str:
        self.video_types.update(
            int(pt) for pt in re.findall(r"a=rtpmap:(\d+) VP8/90000", sdp))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def hint(self, hints: list[dict[str, Any]]) -> bool:
        channel = self.channels.get("render_hints")
        if channel is None or channel.readyState != "open":
            return False
        channel.send(json.dumps({"type": "ready"}))
        channel.send(json.dumps({"type": "render_hints",
                                 "subscriber": {"id": 1, "hints": hints}}))
        return True


async def serve_clients(fps: int) -> None:
    participants: dict[str, Participant] = {}

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        op, sid = request["op"], request.get("sid", "")
        if op == "offer":
            participants[sid] = Participant(fps)
            return await participants[sid].offer()
        if op == "take_answer":
            await participants[sid].take_answer(request["sdp"])
        elif op == "answer":
            return {"sdp": await participants[sid].answer(request["sdp"])}
        elif op == "hint":
            return {"sent": participants[sid].hint(request["hints"])}
        elif op == "counts":
            return {"cpu": time.process_time(), "drops": udp_drops(os.getpid()),
                    "counts": {s: [p.bytes, p.packets] for s, p in participants.items()}}
        elif op == "close":
            for p in participants.values():
                if p.sender.task is not None:
                    p.sender.task.cancel()
            await asyncio.gather(*(p.pc.close() for p in participants.values()))
        return {}

    await serve(handle)


# ------------------------------------------------------------------ measuring


async def run(participants: int, seconds: float, warmup: float, processes: int,
              fps: int) -> dict[str, Any]:
    layer_media(fps)  # encoded once, before the children load it
    plane = await start_media_plane()
    children = [Child(__file__, "clients", "--fps", str(fps)) for _ in range(processes)]
    host = {participant_sid(i): children[i % processes] for i in range(participants)}
    presenter = participant_sid(0)
    renegotiating: asyncio.Future[None] | None = None
    phases: dict[str, Any] = {}
    try:
        await asyncio.gather(*(c.start() for c in children))
        track_of: dict[str, str] = {}
        for sid, child in host.items():
            await plane.add_peer(sid, ROOM)
            offer = await child.call(op="offer", sid=sid)
            answer = await plane.apply_offer(sid, offer["sdp"])
            track_of[sid] = f"MT{sid[2:]}"
            await plane.bind_publication(sid, offer["track"], track_of[sid], "video")
            await child.call(op="take_answer", sid=sid, sdp=answer)
        negotiating = asyncio.Lock()

        async def negotiate(sid: str) -> None:
            async with negotiating:
                offer_sdp = await plane.create_offer(sid)
                reply = await host[sid].call(op="answer", sid=sid, sdp=offer_sdp)
                await plane.apply_answer(sid, reply["sdp"])

        async def renegotiate() -> None:
            async for event in plane.events():
                if isinstance(event, RenegotiationNeeded) and event.participant_sid in host:
                    await negotiate(event.participant_sid)

        renegotiating = asyncio.ensure_future(renegotiate())
        for sid in host:
            for publisher, track_sid in track_of.items():
                if publisher != sid:
                    await plane.subscribe(sid, track_sid)
            await negotiate(sid)
        await asyncio.sleep(warmup)
        worker = media_worker_pid(plane)
        phases["without_bandwidth_profile"] = await measure(plane, worker, children, seconds)

        for sid in host:
            channels = {"render_hints": f"render_hints-{sid[-8:]}",
                        "track_switch_off": f"track_switch_off-{sid[-8:]}"}
            if (await plane.grant_media_signaling(sid, channels)).needs_offer:
                await negotiate(sid)
            await plane.set_bandwidth_profile(sid, {"video": {"mode": "grid"}})
        await asyncio.sleep(2.0)  # the channels open
        for sid, child in host.items():
            hints = [{"track": track_sid, "render_dimensions":
                      PRESENTER_SIZE if publisher == presenter else TILE_SIZE}
                     for publisher, track_sid in track_of.items() if publisher != sid]
            for _ in range(20):
                if (await child.call(op="hint", sid=sid, hints=hints))["sent"]:
                    break
                await asyncio.sleep(0.25)
        await asyncio.sleep(warmup / 2)  # the layers' keyframes
        phases["with_bandwidth_profile"] = await measure(plane, worker, children, seconds)
    finally:
        if renegotiating is not None:
            renegotiating.cancel()
        for child in children:
            with contextlib.suppress(Exception):
                await child.call(op="close")
            await child.close()
        await plane.close()
    without = phases["without_bandwidth_profile"]
    with_profile = phases["with_bandwidth_profile"]
    return {
        "benchmark": "quality",
        "participants": participants,
        "media": "3-layer VP8 SSRC simulcast per participant: " + ", ".join(
            f"{w}x{h} {b // 1000} kbit/s" for w, h, b in LAYERS) + f", {fps} fps, pre-encoded",
        "hints_with_profile": "presenter 1280x720, viewers 160x90 (grid)",
        "cpus": os.cpu_count(),
        **phases,
        "downlink_ratio": round(with_profile["downlink_kbps_mean"]
                                / max(without["downlink_kbps_mean"], 1e-9), 3),
        "worker_cpu_ratio": round(with_profile["worker_cpu_percent"]
                                  / max(without["worker_cpu_percent"], 1e-9), 3),
    }


async def measure(plane: Any, worker: int, children: list[Child], seconds: float
                  ) -> dict[str, Any]:
    async def sample() -> dict[str, Any]:
        replies = await asyncio.gather(*(c.call(op="counts") for c in children))
        [stats] = await plane.stats()
        counts: dict[str, list[int]] = {}
        for reply in replies:
            counts |= reply["counts"]
        return {"time": time.monotonic(), "cpu": cpu_seconds(worker),
                "forwarded": stats.packets_forwarded, "machine": machine_busy_seconds(),
                "drops": sum(r["drops"] for r in replies), "counts": counts}

    start = await sample()
    await asyncio.sleep(seconds)
    end = await sample()
    elapsed = end["time"] - start["time"]
    kbps = [8 * (end["counts"][s][0] - start["counts"][s][0]) / elapsed / 1000
            for s in end["counts"]]
    packets = sum(end["counts"][s][1] - start["counts"][s][1] for s in end["counts"])
    forwarded = end["forwarded"] - start["forwarded"]
    cpu = end["cpu"] - start["cpu"]
    busy = end["machine"][0] - start["machine"][0]
    total = end["machine"][1] - start["machine"][1]
    return {
        "seconds": round(elapsed, 1),
        "worker_cpu_percent": round(100 * cpu / elapsed, 1),
        "us_per_forwarded_packet": round(1e6 * cpu / max(forwarded, 1), 1),
        "packets_forwarded_per_second": round(forwarded / elapsed),
        "video_packets_per_second": round(packets / elapsed),
        "downlink_kbps_min": round(min(kbps), 1),
        "downlink_kbps_mean": round(float(np.mean(kbps)), 1),
        "downlink_kbps_max": round(max(kbps), 1),
        "clients_socket_drops_percent": round(
            100 * (end["drops"] - start["drops"]) / max(packets, 1), 2),
        "machine_busy_percent": round(100 * busy / max(total, 1e-9), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds a phase")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--serve-clients", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_clients:
        run_loop(serve_clients(args.fps))
        return
    result = run_loop(run(args.participants, args.seconds, args.warmup,
                          args.client_processes, args.fps))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
