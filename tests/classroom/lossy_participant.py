"""A classroom participant for a namespace (tests/classroom/lossy_link.py): it joins,
publishes a tone and a picture, reports its stats, and leaves after ``--seconds``.

    python -m tests.classroom.lossy_participant --server URL --token T --room R --address A
"""

from __future__ import annotations

import argparse
import asyncio

from jupyter_video.classroom import attend

from .conftest import media_tracks


async def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--server", "--token", "--room", "--address"):
        parser.add_argument(name, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    seat = await attend(args.token, args.room, args.server, tracks=media_tracks,
                        ice_host_addresses=[args.address])
    print("joined", flush=True)
    try:
        await asyncio.sleep(args.seconds)
    finally:
        await seat.leave()


if __name__ == "__main__":
    asyncio.run(main())
