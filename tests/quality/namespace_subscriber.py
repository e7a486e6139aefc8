"""A subscriber for a namespace (tests/quality/capped_link.py): an aiortc peer
whose signaling is its stdin and stdout, one JSON object a line.

    ip netns exec NS python -m tests.quality.namespace_subscriber --address A

In: ``{"offer": sdp}`` (the SFU's offer) -> out: ``{"answer": sdp}``. Then once a
second ``{"frames": n, "widths": {width: frames}}``: the video frames it decoded
in that second by width. aiortc's receiver sends REMB (abs-send-time is written
by the SFU for each subscriber) and Receiver Reports as it would anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from jupyter_video import _aiortc as adapter


def say(body: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


async def decode(track: MediaStreamTrack, widths: Counter[int]) -> None:
    try:
        while True:
            frame = await track.recv()
            widths[frame.width] += 1
    except MediaStreamError:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args()
    adapter.use_host_addresses([args.address])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    widths: Counter[int] = Counter()
    tasks: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(decode(track, widths)))
          if track.kind == "video" else None)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def report() -> None:
        while True:
            await asyncio.sleep(1.0)
            say({"frames": sum(widths.values()), "widths": dict(widths)})
            widths.clear()

    reporting = asyncio.ensure_future(report())
    try:
        async with asyncio.timeout(args.seconds):  # never outlives a test that died
            while line := await reader.readline():
                offer = json.loads(line)["offer"]
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                say({"answer": pc.localDescription.sdp})
    except TimeoutError:
        pass
    finally:
        reporting.cancel()
        for task in tasks:
            task.cancel()
        await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
