"""Join latency: ``connect()`` to the first decoded frame of a participant already
publishing, p50 and p95 over N joins (default 20), through a real server on
loopback. Prints one JSON line.

    python benchmarks/join.py --joins 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench_server import LOOPBACK, BenchServer, moving_bars, percentile, token

from jupyter_video._aiortc import use_host_addresses
from jupyter_video.client import LocalVideoTrack, RemoteVideoTrack, connect


async def first_frame_after_join(server_url: str, jwt: str, room: str) -> float:
    started = time.perf_counter()
    got_track: asyncio.Future[RemoteVideoTrack] = asyncio.get_running_loop().create_future()
    viewer = await connect(jwt, room, server_url, ice_host_addresses=LOOPBACK)

    def on_subscribed(event: object) -> None:
        track = getattr(event, "track", None)
        if isinstance(track, RemoteVideoTrack) and not got_track.done():
            got_track.set_result(track)

    viewer.on("track_subscribed", on_subscribed)
    for participant in viewer.participants.values():
        for publication in participant.tracks.values():
            if isinstance(publication.track, RemoteVideoTrack) and not got_track.done():
                got_track.set_result(publication.track)
    try:
        track = await asyncio.wait_for(got_track, 20)
        async for _ in track.frames():
            return time.perf_counter() - started
        raise RuntimeError("the track ended before a frame")
    finally:
        await viewer.disconnect()


async def main(joins: int, workers: int | None) -> dict[str, object]:
    use_host_addresses(LOOPBACK)
    with BenchServer(media_workers=workers) as server:
        publisher = await connect(
            token(server, "publisher"),
            "join-bench",
            server.url,
            ice_host_addresses=LOOPBACK,
            tracks=[LocalVideoTrack.from_frames(moving_bars(), fps=30, name="camera")],
        )
        await asyncio.sleep(2)
        times = []
        for index in range(joins):
            times.append(
                await first_frame_after_join(
                    server.url, token(server, f"viewer-{index}"), "join-bench"
                )
            )
        await publisher.disconnect()
    ms = [t * 1000 for t in times]
    return {
        "benchmark": "join",
        "joins": joins,
        "media_workers": workers,
        "first_frame_ms_p50": round(percentile(ms, 50), 1),
        "first_frame_ms_p95": round(percentile(ms, 95), 1),
        "first_frame_ms_max": round(max(ms), 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument(
        "--workers", type=int, default=None, help="media_workers (default: per core)"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.joins, args.workers))))
