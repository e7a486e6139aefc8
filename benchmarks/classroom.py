"""Classroom timings through a real server on loopback: how long after a moderator's
mute the others stop hearing the student (the last loud audio frame a listener
decodes, after the mute request was sent), and how long opening breakouts and
recalling takes until every kernel participant is in its room and sees its group.
Prints one JSON line.

    python benchmarks/classroom.py --mutes 5 --students 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import numpy as np
from bench_server import LOOPBACK, BenchServer, percentile, token

from jupyter_video._aiortc import use_host_addresses
from jupyter_video.account import Credentials
from jupyter_video.classroom import Classroom, Seat, attend
from jupyter_video.client import LocalAudioTrack, connect
from tests.classroom.hearing import Ear, remote_track
from tests.server_process import ServerProcess


def tone(seconds: float = 120.0) -> np.ndarray:
    t = np.arange(int(seconds * 48000)) / 48000
    return 0.5 * np.sin(2 * np.pi * 440 * t)


def classroom(server: ServerProcess, room: str) -> Classroom:
    raw = server.credentials()
    return Classroom(room, server=server.url, credentials=Credentials(
        raw["account_sid"], raw["auth_token"], raw["api_key_sid"], raw["api_key_secret"],
        server.url))


async def mute_latencies(server: ServerProcess, mutes: int) -> tuple[list[float], list[float]]:
    """Seconds from sending the mute to the last loud frame the listener decoded (0
    when none came after it), and how long the mute request took."""
    room = "bench-mute"
    mic = LocalAudioTrack.from_array(tone(), name="microphone")
    speaker = await connect(token(server, "speaker"), room, server.url, tracks=[mic],
                            ice_host_addresses=LOOPBACK)
    listener = await attend(token(server, "listener"), room, server.url,
                            ice_host_addresses=LOOPBACK)
    teacher = classroom(server, room)
    ear = Ear(await remote_track(listener, "speaker", "audio"))
    latencies, requests = [], []
    try:
        for _ in range(mutes):
            await ear.wait_loud()
            sent = time.monotonic()
            await asyncio.to_thread(teacher.mute, "speaker", "audio")
            requests.append(time.monotonic() - sent)
            await asyncio.sleep(1.5)
            last_loud = max((at for at, peak in ear.heard if peak > 3000), default=sent)
            latencies.append(max(0.0, last_loud - sent))
            mic.disable()  # the speaker unmutes: a new enabled state the server applies
            await asyncio.sleep(0.2)
            mic.enable()
            ear.heard.clear()
    finally:
        ear.stop()
        await listener.leave()
        await speaker.disconnect()
    return latencies, requests


async def seen_groups(seats: list[Seat], rooms: dict[str, str]) -> None:
    groups: dict[str, set[str]] = {}
    for identity, name in rooms.items():
        groups.setdefault(name, set()).add(identity)
    for seat in seats:
        target = rooms[seat.identity]
        await seat.wait_in(target, timeout=60)
        while {p.identity for p in seat.room.participants.values()} != (
                groups[target] - {seat.identity}):
            await asyncio.sleep(0.02)


async def moves(server: ServerProcess, students: int) -> dict[str, Any]:
    room = "bench-breakouts"
    seats = [await attend(token(server, f"s{n}"), room, server.url, identity=f"s{n}",
                          ice_host_addresses=LOOPBACK) for n in range(students)]
    teacher = classroom(server, room)
    try:
        started = time.monotonic()
        opened = await asyncio.to_thread(teacher.breakout, 2, "even")
        await seen_groups(seats, opened["assignment"])
        breakout = time.monotonic() - started
        started = time.monotonic()
        await asyncio.to_thread(teacher.recall)
        await seen_groups(seats, {seat.identity: room for seat in seats})
        recall = time.monotonic() - started
    finally:
        for seat in seats:
            await seat.leave()
    return {"breakout_s": round(breakout, 2), "recall_s": round(recall, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mutes", type=int, default=5)
    parser.add_argument("--students", type=int, default=6)
    args = parser.parse_args()
    use_host_addresses(LOOPBACK)
    with BenchServer(media_workers=1) as server:
        latencies, requests = await mute_latencies(server, args.mutes)
        timings = await moves(server, args.students)
    print(json.dumps({
        "benchmark": "classroom",
        "mute_to_silence_ms": {"p50": round(percentile(latencies, 50) * 1000, 1),
                               "max": round(max(latencies) * 1000, 1), "n": len(latencies)},
        "mute_request_ms_p50": round(percentile(requests, 50) * 1000, 1),
        "students": args.students,
        **timings,
    }))


if __name__ == "__main__":
    asyncio.run(main())
