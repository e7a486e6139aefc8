"""Recording cost: the media worker's CPU per recorded track.

One publisher sends 640x480 30 fps VP8 (about 1 Mbit/s, as in forwarding.py)
and 48 kHz Opus into jupyter_video's media plane (one worker process); the
worker records N copies of each track (each copy is its own Matroska file,
muxing every frame, exactly the work of recording N tracks). The worker's CPU
is read from ``/proc/<pid>/stat`` with no recording, then with N; the
difference is the cost of recording. Files go to a temporary directory that is
removed afterwards. Prints one JSON line.

    python benchmarks/recording.py --n 1,4,16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from forwarding import BITRATE, FPS, HEIGHT, WIDTH, MovingPattern, cpu_seconds, pin_vp8_bitrate

from jupyter_video import _aiortc as adapter
from jupyter_video.sfu.worker import WorkerMediaPlane

ROOM = "RM" + "c" * 32
PUBLISHER = "PA" + "0" * 32


async def cpu_percent(pid: int, seconds: float) -> float:
    before, start = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - start)


async def measure(n: int, seconds: float, directory: Path) -> dict[str, Any]:
    """CPU of the worker forwarding to nobody, then recording ``n`` copies of each track."""
    plane = WorkerMediaPlane(1, host_addresses=["127.0.0.1"])
    await plane.start()
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        video, audio = MovingPattern(), AudioStreamTrack()
        for track in (video, audio):
            publisher.addTransceiver(track, direction="sendonly")
        await publisher.setLocalDescription(await publisher.createOffer())
        await plane.add_peer(PUBLISHER, ROOM)
        answer = await plane.apply_offer(PUBLISHER, publisher.localDescription.sdp)
        await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        sids = {"video": "MT" + "1" * 32, "audio": "MT" + "2" * 32}
        await plane.bind_publication(PUBLISHER, video.id, sids["video"], "video")
        await plane.bind_publication(PUBLISHER, audio.id, sids["audio"], "audio")
        await asyncio.sleep(3.0)  # connected, encoder warm
        pid = plane.worker_pids[0]
        idle = await cpu_percent(pid, seconds)

        recordings = []
        for i in range(n):
            for kind, extension in (("video", "mkv"), ("audio", "mka")):
                sid = f"RT{kind[0]}{i:031x}"
                path = directory / f"{n}-{sid}.{extension}"
                await plane.start_recording(PUBLISHER, sids[kind], sid, str(path))
                recordings.append(sid)
        await asyncio.sleep(2.0)  # every recorder past its first keyframe
        [before] = await plane.stats()
        recording = await cpu_percent(pid, seconds)
        [after] = await plane.stats()
        summaries = [await plane.stop_recording(sid) for sid in recordings]
        frames = after.frames_recorded - before.frames_recorded
        added = recording - idle
        return {
            "recorded_tracks": 2 * n,
            "worker_cpu_percent_idle": round(idle, 1),
            "worker_cpu_percent_recording": round(recording, 1),
            "recording_cpu_percent_per_track": round(added / (2 * n), 2),
            "recording_cpu_us_per_frame": round(1e4 * added * seconds / max(frames, 1), 1),
            "frames_recorded_per_second": round(frames / seconds, 1),
            "bytes_written": sum(s.size for s in summaries if s is not None),
            "failed": sum(1 for s in summaries if s is None or s.error),
            "decoders_created": after.decoders_created,
            "encoders_created": after.encoders_created,
        }
    finally:
        with contextlib.suppress(Exception):
            await publisher.close()
        await plane.close()


async def run(counts: list[int], seconds: float) -> dict[str, Any]:
    adapter.use_host_addresses(["127.0.0.1"])
    pin_vp8_bitrate()
    with tempfile.TemporaryDirectory(prefix="jupyter_video-bench-") as directory:
        results = [await measure(n, seconds, Path(directory)) for n in counts]
    return {
        "benchmark": "recording",
        "tracks": f"{WIDTH}x{HEIGHT} {FPS} fps VP8 ~{BITRATE // 1000} kbit/s + Opus 48 kHz",
        "seconds": seconds,
        "cpus": os.cpu_count(),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", default="1,4,16", help="copies of each track recorded, e.g. 1,4")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    args = parser.parse_args()
    counts = [int(n) for n in args.n.split(",")]
    print(json.dumps(asyncio.run(run(counts, args.seconds))))


if __name__ == "__main__":
    main()
