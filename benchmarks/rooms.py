"""A 10-person room in one media worker: every participant publishes ~500 kbit/s
VP8 (640x480, 30 fps) and Opus, and subscribes to everyone else (90 video and
90 audio streams forwarded).

The clients cost little CPU, so that the machine's cores go to the SFU: their
media is encoded once (``benchmarks/preencoded.py``: 4 s of VP8 and Opus, PyAV)
and replayed as encoded packets that aiortc only packetizes, and what they
receive is counted per SSRC as it leaves SRTP (sequence gaps and timestamps),
never jitter-buffered or decoded. They run in ``--client-processes`` children,
on uvloop as the worker does.

What is measured, over ``--seconds`` after ``--warmup``:

- ``worker_cpu_percent``: CPU of the media worker process, from its threads'
  ``/proc/<pid>/task/*/schedstat`` (100 = one core);
- ``us_per_forwarded_packet``: that CPU over the RTP packets the worker sent
  to subscribers in the same time (its ``packets_forwarded``);
- per subscriber: ``video_fps`` min and mean over the 9 video streams it gets,
  and ``loss_percent``: packets missing from the sequence numbers it received
  (all 18 streams; nothing is NACKed, so this is the raw loss);
- ``clients_socket_drops_percent``: the share of those packets the kernel
  dropped at the clients' own sockets (their receive buffers overflowed: the
  client processes did not keep up, which a busy machine causes), and
  ``worker_socket_drops``: the same at the worker's sockets (packets in);
- ``clients_cpu_percent`` and ``machine_busy_percent`` (all cores, 100 = all
  busy), to read the rest with.

``--media-worker-tree DIR`` runs the worker from another checkout (for the frame
path: ``git archive main | tar -x -C DIR``). Prints one JSON line.

    python benchmarks/rooms.py --participants 10 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from preencoded import (
    PacketCounter,
    audio_track,
    cpu_seconds,
    encoded_media,
    machine_busy_seconds,
    payload_kinds,
    video_track,
)
from processes import (
    Child,
    media_worker_pid,
    profile,
    profile_summary,
    run_loop,
    serve,
    start_media_plane,
    udp_drops,
)

from jupyter_video import _aiortc
from jupyter_video.sfu.interface import RenegotiationNeeded

ROOM = "RM" + "a" * 32


def participant_sid(index: int) -> str:
    return f"PA{index:032x}"


# ------------------------------------------------------------------ the clients


class Participant:
    """One participant's peer connection: publishes pre-encoded video and audio,
    counts what it receives."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.counter = PacketCounter()
        media = encoded_media()
        self.tracks = [video_track(media), audio_track(media)]
        for track in self.tracks:
            self.pc.addTransceiver(track, direction="sendonly")

    async def offer(self) -> dict[str, Any]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return {
            "sdp": self.pc.localDescription.sdp,
            "tracks": [[t.id, t.kind] for t in self.tracks],
        }

    async def take_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        dtls = self.pc.getTransceivers()[0].sender.transport
        _aiortc.divert_srtp(dtls, self.counter.on_rtp, self.counter.on_rtcp)

    async def answer(self, sdp: str) -> str:
        self.counter.kinds.update(payload_kinds(sdp))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def counts(self) -> list[list[Any]]:
        return [[s.kind, *s.snapshot()] for s in self.counter.streams.values()]


async def serve_clients() -> None:
    """A client process: the participants the parent asks it to host."""
    participants: dict[str, Participant] = {}

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        op, sid = request["op"], request.get("sid", "")
        if op == "offer":
            participants[sid] = Participant()
            return await participants[sid].offer()
        if op == "take_answer":
            await participants[sid].take_answer(request["sdp"])
        elif op == "answer":
            return {"sdp": await participants[sid].answer(request["sdp"])}
        elif op == "counts":
            return {
                "cpu": time.process_time(),
                "drops": udp_drops(os.getpid()),
                "counts": {s: p.counts() for s, p in participants.items()},
            }
        elif op == "close":
            await asyncio.gather(*(p.pc.close() for p in participants.values()))
        return {}

    await serve(handle)


# ------------------------------------------------------------------ measuring


async def run(
    participants: int,
    seconds: float,
    warmup: float,
    processes: int,
    tree: str | None,
    profile_path: str | None = None,
) -> dict[str, Any]:
    encoded_media()  # once, before the children load it
    plane = await start_media_plane(tree)
    children = [Child(__file__, "clients") for _ in range(processes)]
    host = {participant_sid(i): children[i % processes] for i in range(participants)}
    renegotiating: asyncio.Future[None] | None = None
    try:
        await asyncio.gather(*(c.start() for c in children))
        track_sids: dict[str, list[str]] = {}
        for sid, child in host.items():
            await plane.add_peer(sid, ROOM)
            offer = await child.call(op="offer", sid=sid)
            answer = await plane.apply_offer(sid, offer["sdp"])
            track_sids[sid] = []
            for number, (track_id, kind) in enumerate(offer["tracks"]):
                track_sid = f"MT{number:02x}{sid[4:]}"
                await plane.bind_publication(sid, track_id, track_sid, kind)
                track_sids[sid].append(track_sid)
            await child.call(op="take_answer", sid=sid, sdp=answer)
        negotiating = asyncio.Lock()

        async def negotiate(sid: str) -> None:
            async with negotiating:
                offer_sdp = await plane.create_offer(sid)
                reply = await host[sid].call(op="answer", sid=sid, sdp=offer_sdp)
                await plane.apply_answer(sid, reply["sdp"])

        async def renegotiate() -> None:
            # A publication is offered to its subscribers once its publisher's
            # media is negotiated: the media plane says when (as to the control plane).
            async for event in plane.events():
                if isinstance(event, RenegotiationNeeded) and event.participant_sid in host:
                    await negotiate(event.participant_sid)

        renegotiating = asyncio.ensure_future(renegotiate())
        for sid in host:
            for publisher, published in track_sids.items():
                if publisher != sid:
                    for track_sid in published:
                        await plane.subscribe(sid, track_sid)
            await negotiate(sid)
        await asyncio.sleep(warmup)  # ICE, DTLS, the first keyframes

        worker = media_worker_pid(plane)

        async def sample() -> dict[str, Any]:
            replies = await asyncio.gather(*(c.call(op="counts") for c in children))
            [stats] = await plane.stats()
            counts: dict[str, Any] = {}
            for reply in replies:
                counts |= reply["counts"]
            return {
                "time": time.monotonic(),
                "worker_cpu": cpu_seconds(worker),
                "clients_cpu": sum(r["cpu"] for r in replies),
                "clients_drops": sum(r["drops"] for r in replies),
                "worker_drops": udp_drops(worker),
                "machine": machine_busy_seconds(),
                "forwarded": stats.packets_forwarded,
                "counts": counts,
            }

        start = await sample()
        spy = await profile(worker, seconds, profile_path) if profile_path else None
        await asyncio.sleep(seconds)
        end = await sample()
        if spy is not None:
            await spy.wait()
    finally:
        if renegotiating is not None:
            renegotiating.cancel()
        for child in children:
            with contextlib.suppress(Exception):
                await child.call(op="close")
            await child.close()
        await plane.close()
    result = summarize(start, end, participants, seconds, tree)
    if profile_path:
        result["worker_profile"] = profile_summary(profile_path)
    return result


def summarize(
    start: dict[str, Any], end: dict[str, Any], participants: int, seconds: float, tree: str | None
) -> dict[str, Any]:
    elapsed = end["time"] - start["time"]
    cpu = end["worker_cpu"] - start["worker_cpu"]
    forwarded = end["forwarded"] - start["forwarded"]
    subscribers: list[dict[str, Any]] = []
    for sid in sorted(end["counts"]):
        # A subscriber's streams keep their order between samples; new ones come last.
        before = start["counts"].get(sid, [])
        fps, packets, expected, audio_streams = [], 0, 0, 0
        for index, (kind, got, frames, wanted) in enumerate(end["counts"][sid]):
            _, got0, frames0, wanted0 = before[index] if index < len(before) else [kind, 0, 0, 0]
            packets += got - got0
            expected += wanted - wanted0
            if kind == "video":
                fps.append((frames - frames0) / elapsed)
            else:
                audio_streams += 1
        subscribers.append(
            {
                "video_streams": len(fps),
                "audio_streams": audio_streams,
                "video_fps_min": round(min(fps, default=0.0), 1),
                "video_fps_mean": round(float(np.mean(fps)) if fps else 0.0, 1),
                "loss_percent": round(100 * (1 - packets / expected), 2) if expected else None,
            }
        )
    busy = end["machine"][0] - start["machine"][0]
    total = end["machine"][1] - start["machine"][1]
    expected = sum(wanted for counts in end["counts"].values() for *_, wanted in counts) - sum(
        wanted for counts in start["counts"].values() for *_, wanted in counts
    )
    dropped_by_clients = end["clients_drops"] - start["clients_drops"]
    return {
        "benchmark": "rooms",
        "media_worker": tree or "this checkout",
        "participants": participants,
        "media": "640x480 30 fps VP8 ~470 kbit/s + Opus 32 kbit/s each, pre-encoded",
        "seconds": round(elapsed, 1),
        "cpus": os.cpu_count(),
        "worker_cpu_percent": round(100 * cpu / elapsed, 1),
        "packets_forwarded_per_second": round(forwarded / elapsed),
        "us_per_forwarded_packet": round(1e6 * cpu / max(forwarded, 1), 1),
        "video_fps_min": min(s["video_fps_min"] for s in subscribers),
        "loss_percent_max": max(float(s["loss_percent"] or 0.0) for s in subscribers),
        "subscribers": subscribers,
        # Losses that are the clients' own: their sockets' receive buffers overflowed.
        "clients_socket_drops_percent": round(100 * dropped_by_clients / max(expected, 1), 2),
        "worker_socket_drops": end["worker_drops"] - start["worker_drops"],
        "clients_cpu_percent": round(
            100 * (end["clients_cpu"] - start["clients_cpu"]) / elapsed, 1
        ),
        "machine_busy_percent": round(100 * busy / max(total, 1e-9), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds before measuring")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--media-worker-tree", help="run the media worker from this checkout")
    parser.add_argument(
        "--profile", metavar="PATH", help="sample the worker with py-spy into PATH (raw stacks)"
    )
    parser.add_argument("--serve-clients", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_clients:
        run_loop(serve_clients())
        return
    result = run_loop(
        run(
            args.participants,
            args.seconds,
            args.warmup,
            args.client_processes,
            args.media_worker_tree,
            args.profile,
        )
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
