"""Network Quality levels from the packet path, between real aiortc peers and the
media plane: a subscriber's level falls when its downlink loses packets and comes
back when the loss stops; the publisher's send level stays high meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jupyter_video.sfu import create_media_plane
from jupyter_video.sfu.interface import MediaPlane

from ..sfu.peers import Client, PatternTrack, sid
from .peers import LossyClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def plane() -> AsyncIterator[MediaPlane]:
    media = create_media_plane(0, host_addresses=["127.0.0.1"])
    async with media:
        yield media


class QualityChannel:
    """The client's end of a granted ``network_quality`` channel: inputs out, levels in."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        channel.on("message", lambda m: self.replies.put_nowait(json.loads(m)))

    async def levels(self) -> dict[str, Any]:
        """Send the inputs twilio-video sends (verbosity 2 for self, 1 for remotes) and
        return the reply."""
        self.channel.send(json.dumps({"type": "network_quality", "reportLevel": 2,
                                      "remoteReportLevel": 1, "ice": {"rtt": 0.001}}))
        return await asyncio.wait_for(self.replies.get(), 5)


async def granted(plane: MediaPlane, client: Client) -> QualityChannel:
    grant = await plane.grant_media_signaling(client.sid, {"network_quality": "network_quality-1"})
    assert grant.opened == ["network_quality"]
    if grant.needs_offer:
        await client.answer()
    channel = await asyncio.wait_for(client.channels.get(), 10)
    assert channel.label == "network_quality-1"
    if channel.readyState != "open":
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 10)
    channel.send(json.dumps({"type": "ready"}))
    return QualityChannel(channel)


async def level_until(channel: QualityChannel, check: Any, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        reply = await channel.levels()
        seen.append(reply["local"])
        if check(reply):
            return reply
        await asyncio.sleep(1.0)
    raise AssertionError(f"levels never so within {timeout}s: {seen}")


async def test_a_subscribers_level_drops_with_downlink_loss_and_recovers(
    plane: MediaPlane,
) -> None:
    publisher, subscriber = Client(plane, sid("PA", 1)), LossyClient(plane, sid("PA", 2))
    try:
        await publisher.join()
        [track_sid] = await publisher.publish(PatternTrack())
        await subscriber.join()
        await subscriber.subscribe(track_sid)
        await asyncio.wait_for(subscriber.tracks.get(), 10)
        mine = await granted(plane, subscriber)
        theirs = await granted(plane, publisher)

        clean = await level_until(mine, lambda r: r["local"]["video"]["recv"] >= 4)
        assert clean["local"]["level"] >= 4

        media_types = {c.payloadType for t in subscriber.pc.getTransceivers()
                       if t.kind == "video" for c in t._codecs}
        arrived = 0

        def lossy(packet: Any) -> bool:  # a fifth of the video lost, retransmissions too
            nonlocal arrived
            if packet.payload_type not in media_types:
                return False
            arrived += 1
            return arrived % 5 == 0 or packet.payload_type not in media_types - {
                c.payloadType for t in subscriber.pc.getTransceivers()
                for c in t._codecs if c.mimeType.lower() == "video/rtx"}

        subscriber.lose = lossy
        lossy_reply = await level_until(mine, lambda r: r["local"]["video"]["recv"] <= 2)
        assert lossy_reply["local"]["level"] <= 2
        # The publisher's uplink is fine; it sees the subscriber's level among remotes.
        publisher_view = await theirs.levels()
        assert publisher_view["local"]["video"]["send"] >= 4
        assert {r["sid"] for r in publisher_view["remotes"]} == {subscriber.sid}

        subscriber.lose = None
        await level_until(mine, lambda r: r["local"]["level"] >= 4)
    finally:
        for client in (publisher, subscriber):
            with contextlib.suppress(Exception):
                await client.close()
