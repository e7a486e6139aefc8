"""Races between one participant's work and another's leaving: what a subscription
refresh chose can be gone by the time it runs. Made deterministic by holding the
subscriber's lock from inside the server (the test-only registry driver), as a slow
negotiation would.

Found by ``test_fuzz_signaling`` in a fresh CI run: "live room task failed" with
53300 "Track ... is not published" from ``refresh_subscriptions``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import requests

from jupyter_video.client import LocalVideoTrack, connect

from ..client.participants import LOOPBACK, Recorder, room_name, subscribed_to, token
from ..server_process import ServerProcess
from ..waiting import wait_until
from .conftest import tracebacks, video_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("races")
    process = ServerProcess(root, driver=True, video_config=video_config(root)).start()
    yield process
    process.stop()


def grey_frames(level: int) -> Iterator[np.ndarray]:
    while True:
        yield np.full((120, 160, 3), level, np.uint8)


def published_tracks(server: ServerProcess, room: str, participant_sid: str) -> list[str]:
    creds = server.credentials()
    listing = requests.get(
        f"{server.url}video/v1/Rooms/{room}/Participants/{participant_sid}/PublishedTracks",
        auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=10).json()
    return [track["sid"] for track in listing["published_tracks"]]


async def test_a_track_unpublished_while_a_subscription_waits_is_skipped(
    server: ServerProcess,
) -> None:
    """Carol's refresh chose Alice's track, then waited for Carol's lock while Alice
    left: the refresh skips the track, logs no failure, and Carol still gets the
    next publisher's video."""
    name = room_name()
    carol = await connect(token(server, "carol"), name, server.url, ice_host_addresses=LOOPBACK)
    events = Recorder(carol)
    alice = bob = None
    try:
        held = 8.0
        server.drive("hold_lock", participant_sid=carol.local_participant.sid, seconds=held)
        alice = await connect(token(server, "alice"), name, server.url,
                              ice_host_addresses=LOOPBACK,
                              tracks=[LocalVideoTrack.from_frames(grey_frames(200), fps=10)])
        # Published: Carol's refresh has chosen the track and waits for her lock.
        alice_sid = alice.local_participant.sid
        tracks: list[str] = []
        for _ in range(40):
            tracks = await asyncio.to_thread(published_tracks, server, name, alice_sid)
            if tracks:
                break
            await asyncio.sleep(0.1)
        assert tracks, "alice's track not published"
        await alice.disconnect()
        alice = None
        skipped = f"subscriptions of carol: {tracks[0]} was unpublished meanwhile"
        await wait_until(lambda: skipped in server.log_text() or tracebacks(server),
                         timeout=held + 10, what="the refresh, once the lock was free")
        assert tracebacks(server) == []  # before: "live room task failed", 53300
        assert skipped in server.log_text()
        bob = await connect(token(server, "bob"), name, server.url, ice_host_addresses=LOOPBACK,
                            tracks=[LocalVideoTrack.from_frames(grey_frames(60), fps=10)])
        subscribed = await events.wait("track_subscribed", subscribed_to("video"))
        assert subscribed.participant is not None and subscribed.participant.identity == "bob"
        frame = await asyncio.wait_for(anext(subscribed.track.frames()), 20)
        assert frame.shape == (120, 160, 3) and abs(float(frame.mean()) - 60) < 10
        assert carol.state.value == "connected"
    finally:
        for room in (alice, bob, carol):
            if room is not None:
                await room.disconnect()
