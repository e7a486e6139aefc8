"""What a one-to-one call costs the server, in a group room and in a Go room.

Two Python participants (jupyter_video.client) each publish 640x480 30 fps VP8 and
receive the other's, for ``--seconds``, through a real server on loopback (one media
worker process). Measured on the server's side: CPU seconds of the Jupyter server
process and of its media worker(s) while the call runs, and RTP packets its SFU
forwarded (``/video/metrics``); on the participants' side, the frames each decoded.
In a Go room media goes straight between the participants: the server only relayed
the negotiation. Prints one JSON line.

    python benchmarks/peer_to_peer.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

import psutil
import requests
from bench_server import LOOPBACK, BenchServer, moving_bars, token
from prometheus_client.parser import text_string_to_metric_families

from jupyter_video.client import LocalVideoTrack, RemoteVideoTrack, Room, connect


def forwarded_packets(server: Any) -> float:
    creds = server.credentials()
    text = requests.get(f"{server.url}video/metrics", timeout=10,
                        auth=(creds["api_key_sid"], creds["api_key_secret"])).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jupyter_video_packets_forwarded_total":
                return float(sample.value)
    return 0.0


def server_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the server process and of its children (workers)."""
    process = psutil.Process(pid)
    own = sum(process.cpu_times()[:2])
    workers = sum(sum(child.cpu_times()[:2]) for child in process.children(recursive=True))
    return own, workers


async def call(server: Any, room_type: str, seconds: float) -> dict[str, Any]:
    client_url = server.url
    creds = server.credentials()
    name = f"bench-{room_type}-{os.getpid()}"
    response = requests.post(f"{server.url}video/v1/Rooms", timeout=10,
                             auth=(creds["api_key_sid"], creds["api_key_secret"]),
                             data={"UniqueName": name, "Type": room_type})
    response.raise_for_status()
    rooms: list[Room] = []
    decoded: dict[str, int] = {}
    for identity in ("alice", "bob"):
        room = await connect(token(server, identity), name, client_url,
                             ice_host_addresses=LOOPBACK,
                             tracks=[LocalVideoTrack.from_frames(moving_bars(), fps=30)])
        rooms.append(room)

    async def count(room: Room, identity: str) -> None:
        while True:
            for participant in room.participants.values():
                for publication in participant.tracks.values():
                    if isinstance(publication.track, RemoteVideoTrack):
                        async for _ in publication.track.frames():
                            decoded[identity] = decoded.get(identity, 0) + 1
                        return
            await asyncio.sleep(0.05)

    counters = [asyncio.ensure_future(count(room, identity))
                for room, identity in zip(rooms, ("alice", "bob"), strict=True)]
    await asyncio.sleep(3)  # negotiation done and the first keyframes in
    assert server.process is not None
    decoded.clear()
    packets_before, (own_before, workers_before) = forwarded_packets(server), server_cpu(
        server.process.pid)
    await asyncio.sleep(seconds)
    packets_after, (own_after, workers_after) = forwarded_packets(server), server_cpu(
        server.process.pid)
    frames = dict(decoded)
    for task in counters:
        task.cancel()
    for room in rooms:
        await room.disconnect()
    return {
        "server_cpu_percent": round(100 * (own_after - own_before) / seconds, 1),
        "media_worker_cpu_percent": round(100 * (workers_after - workers_before) / seconds, 1),
        "sfu_packets_forwarded_per_s": round((packets_after - packets_before) / seconds, 1),
        "decoded_fps": {who: round(n / seconds, 1) for who, n in sorted(frames.items())},
    }


async def main(seconds: float) -> dict[str, Any]:
    with BenchServer(media_workers=1) as server:
        group = await call(server, "group", seconds)
        go = await call(server, "go", seconds)
    return {"benchmark": "peer_to_peer", "seconds": seconds, "video": "640x480 30 fps VP8",
            "group": group, "go": go}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    print(json.dumps(asyncio.run(main(parser.parse_args().seconds))))
