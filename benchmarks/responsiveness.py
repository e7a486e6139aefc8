"""Jupyter's own responsiveness while the SFU forwards: p50/p99 latency of
``GET /api/status`` on the server while one publisher's 640x480 VP8 is
forwarded to N subscribers (default 32), with media in worker processes and
in-process (``media_workers = 0``). The participants run in a separate process
so that their decoding does not share the server's event loop. Prints one JSON line.

    python benchmarks/responsiveness.py --subscribers 32 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import requests
from bench_server import LOOPBACK, BenchServer, moving_bars, percentile, token

from tests.server_process import TOKEN

HERE = Path(__file__).resolve().parent


async def participants(url: str, tokens: list[str], seconds: float) -> None:
    """The publisher and the subscribers (run in a child process)."""
    from jupyter_video._aiortc import use_host_addresses
    from jupyter_video.client import LocalVideoTrack, connect

    use_host_addresses(LOOPBACK)
    publisher = await connect(
        tokens[0],
        "busy",
        url,
        ice_host_addresses=LOOPBACK,
        tracks=[LocalVideoTrack.from_frames(moving_bars(), fps=30, name="camera")],
    )
    viewers = [await connect(jwt, "busy", url, ice_host_addresses=LOOPBACK) for jwt in tokens[1:]]
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for room in [*viewers, publisher]:
        await room.disconnect()


def measure(url: str, seconds: float) -> list[float]:
    """Latencies of /api/status in ms, one request every 20 ms for ``seconds``."""
    session = requests.Session()
    session.headers["Authorization"] = f"token {TOKEN}"
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        session.get(f"{url}api/status", timeout=10).raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.02)
    return latencies


def run(workers: int | None, subscribers: int, seconds: float) -> dict[str, float]:
    with BenchServer(media_workers=workers) as server:
        idle = measure(server.url, 3)
        tokens = [token(server, f"p{index}") for index in range(subscribers + 1)]
        child = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "responsiveness.py"),
                "--participants",
                server.url,
                "--seconds",
                str(seconds + 5),
                *tokens,
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("participants did not join")
        time.sleep(2)  # subscriptions negotiated and forwarding
        busy = measure(server.url, seconds)
        child.wait(timeout=seconds + 60)
    return {
        "idle_p50_ms": round(percentile(idle, 50), 2),
        "idle_p99_ms": round(percentile(idle, 99), 2),
        "busy_p50_ms": round(percentile(busy, 50), 2),
        "busy_p99_ms": round(percentile(busy, 99), 2),
        "requests": len(busy),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--participants", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("tokens", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.participants:
        asyncio.run(participants(args.participants, args.tokens, args.seconds))
    else:
        result = {
            "benchmark": "responsiveness",
            "subscribers": args.subscribers,
            "workers": run(None, args.subscribers, args.seconds),
            "in_process": run(0, args.subscribers, args.seconds),
        }
        print(json.dumps(result))
