"""N participants (Python clients, data only) join one room at the same instant, the
first publishing a data track: seconds until every one sees all others, until every
other one heard the first's message, and the CPU seconds the server and its media
worker spent from the first connect to the last message heard. Prints one JSON line.

    python benchmarks/simultaneous_joins.py --participants 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import psutil
from bench_server import LOOPBACK, BenchServer, token

from jupyter_video._aiortc import use_host_addresses
from jupyter_video.client import LocalDataTrack, RemoteDataTrack, Room, connect


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds of the server and of its media workers so far."""
    server = psutil.Process(pid)
    own = server.cpu_times()
    workers = sum(sum(child.cpu_times()[:2]) for child in server.children()
                  if "jupyter_video.sfu" in " ".join(child.cmdline()))
    return own.user + own.system, workers


async def heard(room: Room, identity: str) -> None:
    while True:
        for participant in room.participants.values():
            for publication in participant.tracks.values():
                if participant.identity == identity and isinstance(publication.track,
                                                                   RemoteDataTrack):
                    async for _ in publication.track.messages():
                        return
        await asyncio.sleep(0.05)


async def run(participants: int) -> dict[str, object]:
    with BenchServer(media_workers=1, max_participants=50, joins_per_second=0) as server:
        use_host_addresses(LOOPBACK)
        name = f"bench-{time.time_ns()}"
        chat = LocalDataTrack(name="chat")
        server_before, worker_before = cpu_seconds(server.process.pid)  # type: ignore[union-attr]
        started = time.monotonic()
        results = await asyncio.gather(*(
            connect(token(server, f"p{n:02d}"), name, server.url, ice_host_addresses=LOOPBACK,
                    tracks=[chat] if n == 0 else [])
            for n in range(participants)), return_exceptions=True)
        rooms = [r for r in results if isinstance(r, Room)]
        joined = time.monotonic() - started
        while not all(len(r.participants) == participants - 1 for r in rooms):
            if time.monotonic() - started > 120:
                break
            await asyncio.sleep(0.05)
        all_seen = time.monotonic() - started
        readers = [asyncio.ensure_future(heard(r, "p00")) for r in rooms[1:]]
        while not all(r.done() for r in readers) and time.monotonic() - started < 120:
            chat.send("hello")
            await asyncio.wait(readers, timeout=0.2)
        all_heard = time.monotonic() - started
        server_after, worker_after = cpu_seconds(server.process.pid)  # type: ignore[union-attr]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*(r.disconnect() for r in rooms), return_exceptions=True)
        use_host_addresses(None)
        return {"simultaneous_joins": {
            "participants": participants, "errors": len(results) - len(rooms),
            "joined_s": round(joined, 2), "all_seen_s": round(all_seen, 2),
            "all_heard_s": round(all_heard, 2),
            "heard": sum(r.done() and not r.cancelled() for r in readers),
            "server_cpu_s": round(server_after - server_before, 2),
            "worker_cpu_s": round(worker_after - worker_before, 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.participants))))


if __name__ == "__main__":
    main()
