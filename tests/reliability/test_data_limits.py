"""Data track messages past the size and rate limits are not forwarded, and nobody
else's are touched: a third participant floods the room of the live pair.

The limits are the defaults (``VideoApp.max_data_message_bytes`` 16384,
``data_messages_per_second`` 100 with a burst of 200). A WebRTC sender is told
the size limit by the SFU's SDP (``a=max-message-size``), so its own ``send()``
refuses a larger message; a sender that ignores it (here: aiortc's check turned
off, as a hostile client would) and a media socket sender (no SDP limit to
read) get their oversize messages dropped at the SFU, counted in
``/video/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from jupyter_video.client import LocalDataTrack, Room, RoomEvent, connect

from ..client.participants import LOOPBACK, token
from ..server_process import ServerProcess
from .conftest import tracebacks
from .live_pair import LivePair

pytestmark = pytest.mark.timeout(240)

LIMIT = 16384
RATE, BURST = 100.0, 200
FLOOD = 2000


class Heard:
    """What Alice and Bob received from one flooder, in order."""

    def __init__(self, pair: LivePair, identity: str) -> None:
        self.messages: dict[str, list[str | bytes]] = {"alice": [], "bob": []}
        for side in (pair.alice, pair.bob):
            assert side.room is not None
            side.room.on("track_message", self._listener(side.identity, identity))

    def _listener(self, name: str, identity: str) -> Callable[[RoomEvent], None]:
        def heard(event: RoomEvent) -> None:
            participant, message = event.participant, event.message
            if participant is not None and participant.identity == identity and message:
                self.messages[name].append(message)
        return heard

    def labels(self, name: str) -> list[str]:
        """Each message's label (its text up to the first space)."""
        return [(m if isinstance(m, str) else m.decode(errors="replace")).split(" ", 1)[0]
                for m in self.messages[name]]

    async def wait_for(self, label: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(label in self.labels(n) for n in self.messages):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{label!r} never reached both: {self.counts()}")

    def counts(self) -> dict[str, int]:
        return {name: len(messages) for name, messages in self.messages.items()}


def metrics(server: ServerProcess) -> dict[str, float]:
    creds = server.credentials()
    text = requests.get(server.url + "video/metrics", timeout=10,
                        auth=(creds["api_key_sid"], creds["api_key_secret"])).text
    found = {}
    pattern = r'^jupyter_video_data_messages_(\w+?)(?:_total)?(?:\{reason="(\w+)"\})? ([0-9.e+]+)$'
    for match in re.finditer(pattern, text, re.M):
        found[match.group(2) or match.group(1)] = float(match.group(3))
    return found


def padded(label: str, size: int) -> str:
    """A text message of ``size`` bytes that starts with ``label``."""
    return (label + " ").ljust(size, "x")


async def join_flooder(
    pair: LivePair, identity: str, transport: str
) -> tuple[Room, LocalDataTrack]:
    track = LocalDataTrack(name="flood")
    room = await connect(token(pair.server, identity), pair.room, pair.server.url,
                         ice_host_addresses=LOOPBACK, tracks=[track],
                         transport=transport)  # type: ignore[arg-type]
    return room, track


async def flood_and_check(pair: LivePair, heard: Heard, track: LocalDataTrack,
                          size_checked_by_sender: bool) -> dict[str, Any]:
    """Oversize, exactly-the-limit and flooding messages; what reached Alice and Bob."""
    # within the limit, to know the track is subscribed by both
    started = time.monotonic()
    while time.monotonic() - started < 20 and not all(heard.counts().values()):
        track.send("hello")
        await asyncio.sleep(0.2)
    await heard.wait_for("hello")
    await asyncio.sleep(2.5)  # the budget refills after the hellos (200 at 100/s)
    if size_checked_by_sender:
        # The SFU's SDP said 16384: aiortc's send() refuses more (the sender is told).
        with pytest.raises(ValueError, match=str(LIMIT)):
            track.send(padded("refused", LIMIT + 1))
        for channel in track._channels:  # a hostile sender: it ignores what SDP said
            channel.transport._remote_max_message_size = 0
    for n in range(5):
        track.send(padded(f"oversize-{n}", LIMIT + 1 + n * 1000))
        track.send(padded(f"oversize-binary-{n}", 64 * 1024).encode())
    track.send(padded("at-the-limit", LIMIT))
    track.send(padded("at-the-limit-binary", LIMIT).encode())
    await heard.wait_for("at-the-limit-binary")
    await asyncio.sleep(2.5)  # the budget is full again

    flood_started = time.monotonic()
    sent = 0
    while sent < FLOOD:  # 2,000 a second, 20 times the rate
        for _ in range(40):
            track.send(f"flood-{sent} {'y' * 100}")
            sent += 1
        await asyncio.sleep(0.02)
    await asyncio.sleep(2.5)
    track.send("after")  # within the rate again: it arrives, after the whole flood
    await heard.wait_for("after")
    flood_seconds = time.monotonic() - flood_started  # the SFU got the flood within it
    figures: dict[str, Any] = {"sent": sent, "flood_s": round(flood_seconds, 2)}
    for name in ("alice", "bob"):
        labels = heard.labels(name)
        assert not [label for label in labels if label.startswith(("oversize", "refused"))]
        assert labels.count("at-the-limit") == 1 and labels.count("at-the-limit-binary") == 1
        flood = [label for label in labels if label.startswith("flood-")]
        # The burst passes whole (reliable, ordered: nothing else is lost), then the rate.
        assert flood[:BURST] == [f"flood-{n}" for n in range(BURST)]
        assert len(flood) <= BURST + RATE * flood_seconds + 5
        figures[f"{name}_flood_heard"] = len(flood)
    return figures


def test_oversize_and_flooding_data_messages_are_dropped_and_the_pair_is_unaffected(
    server: ServerProcess, pair: LivePair
) -> None:
    before = metrics(server)
    heard = Heard(pair, "flooder")
    pair.healthy()

    async def scenario() -> dict[str, Any]:
        room, track = await join_flooder(pair, "flooder", "webrtc")
        try:
            return await flood_and_check(pair, heard, track, size_checked_by_sender=True)
        finally:
            await room.disconnect()

    figures = pair.run(scenario(), timeout=150)
    after = metrics(server)
    counts = pair.healthy()  # the pair's own messages and frames kept arriving
    assert after["too_large"] - before.get("too_large", 0) == 10
    assert after["over_rate"] - before.get("over_rate", 0) >= figures["sent"] - figures[
        "alice_flood_heard"]
    print(json.dumps({"data_limits_webrtc": {**figures, **counts, "metrics": after}}))
    assert tracebacks(server) == []


def test_a_media_socket_flooder_is_limited_the_same_way(
    server: ServerProcess, pair: LivePair
) -> None:
    before = metrics(server)
    heard = Heard(pair, "socket-flooder")

    async def scenario() -> dict[str, Any]:
        room, track = await join_flooder(pair, "socket-flooder", "websocket")
        try:
            return await flood_and_check(pair, heard, track, size_checked_by_sender=False)
        finally:
            await room.disconnect()

    figures = pair.run(scenario(), timeout=150)
    after = metrics(server)
    counts = pair.healthy()
    assert after["too_large"] - before.get("too_large", 0) == 10
    print(json.dumps({"data_limits_media_socket": {**figures, **counts}}))
    assert tracebacks(server) == []
