"""Composition speed, and what a composition costs the live rooms beside it.

Track recordings as the media plane writes them (640x480 30 fps VP8 with a moving
textured pattern, about 1 Mbit/s, and 48 kHz Opus, in Matroska) are composed into a
1280x720 grid, by the composer pool exactly as the server runs it (a child process
at lower priority): 2 people, then 9. Speed is a ratio of real time: seconds of
room composed per second of wall time (above 1: faster than the lecture lasted).

Then a live room runs in jupyter_video's media plane (one worker process: one
publisher, ``--subscribers`` subscribers, as benchmarks/forwarding.py runs them):
the subscribers' fps is measured alone, then while the 9-person composition runs.
Prints one JSON line.

    python benchmarks/compositions.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from forwarding import (
    BITRATE,
    FPS,
    HEIGHT,
    WIDTH,
    ForwardingSfu,
    Publisher,
    Subscriber,
    cpu_seconds,
    machine_busy_seconds,
    pin_vp8_bitrate,
)

from jupyter_video import _aiortc as adapter
from jupyter_video.compositions import ComposerPool, Job, TrackFile

RESOLUTION = (1280, 720)


def write_tracks(directory: Path, seconds: float) -> tuple[Path, Path]:
    """One video and one audio recording, ``seconds`` long (each source decodes its own copy
    of the stream, so one file serves every participant)."""
    video, audio = directory / "camera.mkv", directory / "voice.mka"
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 255, (HEIGHT, WIDTH), dtype=np.uint8)
    with av.open(str(video), "w", format="matroska") as container:
        stream = container.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = BITRATE
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for index in range(int(seconds * FPS)):
            luma = np.roll(texture, (index * 4) % WIDTH, axis=1)
            x = (index * 8) % (WIDTH - 40)
            luma[:, x : x + 40] = 255
            yuv = np.concatenate([luma, np.full((HEIGHT // 2, WIDTH), 128, np.uint8)])
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    rate = 48000
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(audio), "w", format="matroska") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(samples) - 959, 960):
            frame = av.AudioFrame.from_ndarray(
                samples[start : start + 960].reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return video, audio


def grid_job(people: int, video: Path, audio: Path, seconds: float, output: Path) -> Job:
    tracks = []
    for person in range(people):
        for kind, path in (("video", video), ("audio", audio)):
            sid = f"RT{kind[0]}{person:031x}"
            tracks.append(TrackFile(sid, f"MT{kind[0]}{person:031x}", f"p{person}-{kind}", kind,
                                    str(path), 0.0))
    return Job(str(output), "mp4", *RESOLUTION, {"grid": {"video_sources": ["*"]}}, ["*"], [],
               True, seconds, tracks)


async def speed(pool: ComposerPool, job: Job) -> dict[str, Any]:
    start = time.monotonic()
    result = await pool.run(job)
    wall = time.monotonic() - start
    return {
        "people": len(job.tracks) // 2,
        "room_seconds": round(result.duration, 2),
        "compose_seconds": round(wall, 2),
        "realtime_ratio": round(result.duration / wall, 2),
        "output_kbps": round(result.size * 8 / result.duration / 1000),
    }


async def live_fps(job: Job, subscribers: int, window: float) -> dict[str, Any]:
    """Subscriber fps of a live room alone, then while ``job`` is composed beside it."""
    sfu = ForwardingSfu()
    await sfu.start()
    publisher = Publisher()
    clients = [Subscriber() for _ in range(subscribers)]
    pool = ComposerPool(1)
    try:
        await publisher.answer(await sfu.publish(await publisher.start(), publisher.track_id))
        for index, client in enumerate(clients):
            await sfu.subscribe(index, client.answer)
        await asyncio.sleep(3.0)  # connected, first keyframe, encoders warm

        async def measure() -> tuple[float, float, float]:
            frames, cpu = sum(c.frames for c in clients), cpu_seconds(sfu.pid)
            busy, total = machine_busy_seconds()
            start = time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - start
            busy2, total2 = machine_busy_seconds()
            fps = (sum(c.frames for c in clients) - frames) / elapsed / subscribers
            return fps, 100 * (cpu_seconds(sfu.pid) - cpu) / elapsed, (
                100 * (busy2 - busy) / max(total2 - total, 1e-9))

        alone, worker_alone, machine_alone = await measure()
        composing = asyncio.ensure_future(pool.run(job))
        await asyncio.sleep(1.0)  # the composer process started and decoding
        beside, worker_beside, machine_beside = await measure()
        still_running = not composing.done()
        await composing
        return {
            "subscribers": subscribers,
            "subscriber_fps_alone": round(alone, 1),
            "subscriber_fps_while_composing": round(beside, 1),
            "worker_cpu_percent_alone": round(worker_alone, 1),
            "worker_cpu_percent_while_composing": round(worker_beside, 1),
            "machine_busy_percent_alone": round(machine_alone, 1),
            "machine_busy_percent_while_composing": round(machine_beside, 1),
            "composition_ran_the_whole_window": still_running,
        }
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.pc.close()
        with contextlib.suppress(Exception):
            await publisher.close()
        await sfu.close()


async def run(seconds: float, subscribers: int, window: float) -> dict[str, Any]:
    adapter.use_host_addresses(["127.0.0.1"])
    pin_vp8_bitrate()
    with tempfile.TemporaryDirectory(prefix="jupyter_video-bench-") as name:
        directory = Path(name)
        video, audio = write_tracks(directory, seconds)
        pool = ComposerPool(1)
        results = [
            await speed(pool, grid_job(people, video, audio, seconds, directory / f"{people}.mp4"))
            for people in (2, 9)
        ]
        live = await live_fps(
            grid_job(9, video, audio, seconds, directory / "beside.mp4"), subscribers, window
        )
    return {
        "benchmark": "compositions",
        "sources": f"{WIDTH}x{HEIGHT} {FPS} fps VP8 ~{BITRATE // 1000} kbit/s + Opus 48 kHz",
        "output": f"{RESOLUTION[0]}x{RESOLUTION[1]} H.264 + AAC mp4, grid",
        "cpus": os.cpu_count(),
        "speed": results,
        "live_room": live,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the recordings")
    parser.add_argument("--subscribers", type=int, default=3, help="live room's subscribers")
    parser.add_argument("--window", type=float, default=5.0, help="seconds of each fps sample")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.seconds, args.subscribers, args.window))))


if __name__ == "__main__":
    main()
