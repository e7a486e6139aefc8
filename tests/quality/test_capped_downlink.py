"""A simulcast publisher and two subscribers, one of them behind a downlink capped
by rate (a network namespace, a veth pair, ``tc qdisc ... tbf``: capped_link.py),
the other on loopback: the capped one is moved to the lower layer and decodes
frames of that size, the other decodes the top layer, both keep decoding.

The capped subscriber is an aiortc peer in the namespace (namespace_subscriber.py,
signaled over its stdin and stdout); the publisher writes two pre-encoded VP8
layers on SIM SSRCs (test_downlink_layers.py). The tbf queue is deep (1.5 s of
the rate) so the SFU's REMB input, the subscriber's delay-based estimate, has to
act before the queue overflows into loss: the test also says which input moved
the subscriber (the estimate's counters) and fails if it was the loss.

Run with ``-s`` for one JSON line of the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_video.sfu import create_media_plane
from jupyter_video.sfu.interface import MediaPlane
from jupyter_video.sfu.plane import LocalMediaPlane

from ..sfu.peers import ROOM, Client, sid
from .capped_link import HERE, THERE, CappedLink, tbf_available
from .test_downlink_layers import SimulcastPublisher, width_until

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not tbf_available(),
                       reason="needs root, iproute2 (ip netns, tc) and the kernel's sch_tbf"),
]

ROOT = Path(__file__).resolve().parents[2]
CAP = "250kbit"
"""Between the two layers as encoded (320x180 ~100 kbit/s, 640x360 ~340 kbit/s with
their RTP headers; libvpx makes less of the moving gradient than the target)."""
DEEP, SHALLOW = "1500ms", "300ms"
"""tbf queues: 1.5 s of the rate fills in ~5 s at the top layer's rate, time for the
subscriber's delay-based REMB to say so before a packet is dropped; 300 ms
overflows within a second, so the loss-based input sees it first."""


@pytest.fixture
def link() -> Iterator[CappedLink]:
    made = CappedLink()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
async def plane(link: CappedLink) -> AsyncIterator[MediaPlane]:
    # ICE on loopback for the subscriber here and on the veth for the one there.
    media = create_media_plane(0, host_addresses=["127.0.0.1", HERE])
    async with media:
        yield media


class NamespaceSubscriber:
    """The subscriber in the namespace, as the media plane's test clients are driven:
    the SFU's offers go to its stdin, its answers come from its stdout."""

    def __init__(self, plane: MediaPlane, participant_sid: str) -> None:
        self.plane, self.sid = plane, participant_sid
        self.seconds: list[Counter[int]] = []  # frames decoded by width, each second
        self._answers: asyncio.Queue[str] = asyncio.Queue()
        self._process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None

    async def start(self, link: CappedLink) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *link.command(sys.executable, "-m", "tests.quality.namespace_subscriber",
                          "--address", THERE),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        self._reading = asyncio.ensure_future(self._read())
        await self.plane.add_peer(self.sid, ROOM)

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while line := await self._process.stdout.readline():
            body = json.loads(line)
            if "answer" in body:
                self._answers.put_nowait(body["answer"])
            else:
                self.seconds.append(Counter({int(w): n for w, n in body["widths"].items()}))

    async def subscribe(self, track_sid: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        if await self.plane.subscribe(self.sid, track_sid):
            offer = await self.plane.create_offer(self.sid)
            self._process.stdin.write((json.dumps({"offer": offer}) + "\n").encode())
            await self._process.stdin.drain()
            answer = await asyncio.wait_for(self._answers.get(), 15)
            await self.plane.apply_answer(self.sid, answer)

    async def until_width(self, width: int, timeout: float) -> float:
        """Seconds until a second in which it decoded ``width``-wide frames."""
        start, seen = time.monotonic(), len(self.seconds)
        while time.monotonic() - start < timeout:
            if any(second[width] for second in self.seconds[seen:]):
                return time.monotonic() - start
            await asyncio.sleep(0.2)
        raise AssertionError(f"no {width}-wide frame in {timeout}s: {self.seconds[seen:]}")

    async def steady_at(self, width: int, timeout: float, run: int = 3,
                        fps: float = 8) -> float:
        """Seconds until ``run`` seconds in a row of only ``width``-wide frames, more
        than ``fps`` a second on average."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            last = self.seconds[-run:]
            if len(last) == run and all(set(s) == {width} for s in last) \
                    and sum(sum(s.values()) for s in last) > fps * run:
                return time.monotonic() - start
            await asyncio.sleep(0.2)
        raise AssertionError(f"not {run} s of {width}-wide frames at over {fps} fps in "
                             f"{timeout}s: {self.seconds[-run - 5:]}")

    async def close(self) -> None:
        if self._process is not None:
            if self._process.returncode is None:
                self._process.kill()
            await self._process.wait()
        if self._reading is not None:
            self._reading.cancel()


async def count_frames(track: Any, seconds: list[Counter[int]]) -> None:
    """Decode ``track`` for good, appending each second's frames by width."""
    while True:
        second: Counter[int] = Counter()
        if track.readyState != "live":
            return
        end = time.monotonic() + 1
        while (left := end - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                second[(await asyncio.wait_for(track.recv(), left)).width] += 1
        seconds.append(second)


@pytest.mark.parametrize("queue", [DEEP, SHALLOW])
async def test_the_subscriber_behind_a_rate_capped_downlink_gets_the_lower_layer(
    plane: MediaPlane, link: CappedLink, queue: str,
) -> None:
    publisher = SimulcastPublisher(plane, sid("PC", 1))
    capped, clean = NamespaceSubscriber(plane, sid("PC", 2)), Client(plane, sid("PC", 3))
    counting: asyncio.Task[None] | None = None
    try:
        track_sid = await publisher.publish()
        await capped.start(link)
        await clean.join()
        for participant in (capped.sid, clean.sid):
            await plane.set_bandwidth_profile(participant, {"video": {"mode": "grid"}})
        await capped.subscribe(track_sid)
        await clean.subscribe(track_sid)
        clean_track = await asyncio.wait_for(clean.tracks.get(), 10)
        # Both start on the top layer, uncapped, past the estimate's REMB warm-up.
        await width_until(clean_track, 640)
        clean_seconds: list[Counter[int]] = []  # as the namespace subscriber counts
        counting = asyncio.ensure_future(count_frames(clean_track, clean_seconds))
        await capped.until_width(640, 20)
        await asyncio.sleep(4)

        assert isinstance(plane, LocalMediaPlane)
        downlink = plane._peer(capped.sid).media_signaling.downlink  # type: ignore[union-attr]
        # Nothing has limited it yet (aiortc's REMB above 0.9x what it is sent), else
        # what follows would not be the cap's doing.
        assert downlink.bps is None, (downlink.bps, downlink.set_by_loss, downlink.set_by_remb)
        before = (downlink.set_by_loss, downlink.set_by_remb)
        link.cap(CAP, queue)
        capped_at = time.monotonic()
        moved_after = await capped.until_width(320, 30)
        moved_by = {"loss": downlink.set_by_loss - before[0],
                    "remb": downlink.set_by_remb - before[1]}
        dropped_when_moved = link.dropped()

        # Five seconds on: what each decoded, second by second.
        seen, clean_seen = len(capped.seconds), len(clean_seconds)
        await asyncio.sleep(5.5)
        capped_widths = sum(capped.seconds[seen:], Counter())
        clean_widths = sum(clean_seconds[clean_seen:], Counter())
        window = {"capped": len(capped.seconds) - seen, "clean": len(clean_seconds) - clean_seen}
        figures = {
            "test": "capped_downlink", "cap": CAP, "queue": queue,
            "moved_down_after_s": round(moved_after, 1),
            "estimate_set_by": moved_by, "tbf_dropped_when_moved": dropped_when_moved,
            "capped_fps": round(sum(capped_widths.values()) / max(1, window["capped"]), 1),
            "capped_widths": dict(capped_widths),
            "clean_fps": round(sum(clean_widths.values()) / max(1, window["clean"]), 1),
            "clean_widths": dict(clean_widths),
            "downlink_estimate_bps": downlink.bps and int(downlink.bps),
            "seconds_capped": round(time.monotonic() - capped_at, 1),
        }
        # And it decodes them steadily: the seconds right after the move carry the
        # queue's backlog, its drops and the keyframe recovery, whose length
        # depends on the machine (3.4 fps in them in one loaded CI run).
        figures["capped_steady_after_s"] = round(await capped.steady_at(320, 20), 1)
        print(json.dumps(figures))
        assert set(clean_widths) == {640}, figures  # the top layer all along
        assert figures["clean_fps"] > 8, figures
        assert capped_widths.most_common(1)[0][0] == 320, figures  # the smaller frames
        if queue == DEEP:
            # The REMB moved it, before the queue overflowed into loss: with the REMB
            # ignored the loss-based input moved it only after 26 s and 820 packets
            # dropped, and this fails.
            assert moved_by["remb"] >= 1 and moved_by["loss"] == 0, figures
    finally:
        if counting is not None:
            counting.cancel()
        await publisher.close()
        with contextlib.suppress(Exception):
            await clean.close()
        await capped.close()
