"""The Python client's Network Quality: ``connect(network_quality=True)`` gives the
local and each remote participant a ``network_quality_level`` (0-5), announced by
``network_quality_level_changed``, computed by a real server (media in a worker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from jupyter_video._aiortc import use_host_addresses
from jupyter_video.client import LocalVideoTrack, connect

from ..client.participants import LOOPBACK, Recorder, room_name, token
from ..server_process import ServerProcess
from ..widgets.browser import moving_frames

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("quality-client"), video_config={
        "ice_host_addresses": LOOPBACK, "media_workers": 1}).start()
    yield process
    process.stop()
    use_host_addresses(None)


async def test_kernels_get_their_own_and_each_others_network_quality_level(
    video_server: ServerProcess,
) -> None:
    name = room_name()
    alice = await connect(token(video_server, "alice"), name, video_server.url,
                          ice_host_addresses=LOOPBACK, network_quality=True,
                          tracks=[LocalVideoTrack.from_frames(moving_frames())])
    bob = await connect(token(video_server, "bob"), name, video_server.url,
                        ice_host_addresses=LOOPBACK, network_quality=True)
    try:
        events = Recorder(bob)
        mine = await events.wait("network_quality_level_changed",
                                 lambda e: e.participant is None)  # bob's own
        assert mine.level is not None
        assert mine.level == bob.local_participant.network_quality_level
        assert 4 <= mine.level <= 5  # loopback: nothing lost
        theirs = await events.wait("network_quality_level_changed",
                                   lambda e: e.participant is not None)
        assert theirs.participant is not None and theirs.level is not None
        assert theirs.participant.identity == "alice"
        assert theirs.participant.network_quality_level == theirs.level
        assert 0 <= theirs.level <= 5
        assert alice.local_participant.network_quality_level in range(6)
    finally:
        await bob.disconnect()
        await alice.disconnect()


async def test_a_kernel_over_the_media_socket_gets_network_quality_levels(
    video_server: ServerProcess,
) -> None:
    """The quality channels open on the media socket too (sfu/socket_media_signaling.py):
    a kernel whose media goes over the socket gets its own level, measured from the
    socket's counters, and a WebRTC participant's; that one gets the kernel's. (The
    socket's channel opens at once, so the first level can come before connect()
    returns: the levels are polled, not awaited as events.)"""
    name = room_name()
    alice = await connect(token(video_server, "alice"), name, video_server.url,
                          ice_host_addresses=LOOPBACK, network_quality=True,
                          tracks=[LocalVideoTrack.from_frames(moving_frames())])
    bob = await connect(token(video_server, "bob"), name, video_server.url,
                        network_quality=True, transport="websocket")

    def level_of(room: Any, identity: str | None) -> int | None:
        if identity is None:
            return room.local_participant.network_quality_level  # type: ignore[no-any-return]
        found = [p for p in room.participants.values() if p.identity == identity]
        return found[0].network_quality_level if found else None

    try:
        assert bob.transport == "websocket"
        deadline = time.monotonic() + 20
        while None in (level_of(bob, None), level_of(bob, "alice"), level_of(alice, "bob")):
            assert time.monotonic() < deadline, (
                level_of(bob, None), level_of(bob, "alice"), level_of(alice, "bob"))
            await asyncio.sleep(0.2)
        assert 4 <= level_of(bob, None) <= 5  # type: ignore[operator]  # loopback: none dropped
        assert level_of(bob, "alice") in range(6)
        assert level_of(alice, "bob") in range(6)
    finally:
        await bob.disconnect()
        await alice.disconnect()


async def test_a_stalled_media_socket_lowers_its_level_and_it_recovers(
    video_server: ServerProcess,
) -> None:
    """A kernel over the media socket stops reading it for 3 s (under the 5 s that
    end it with 53405): its acks stop, the SFU's window closes, its video frames
    wait and are dropped, and the level a WebRTC participant gets for it falls to
    2 or lower; reading again, it comes back to 4 or 5."""
    from jupyter_video.client.websocket_peer_connection import WebSocketPeerConnection

    def noise() -> Iterator[np.ndarray]:  # ~500 kbit/s of VP8: a stall fills the window
        generator = np.random.default_rng(5)
        while True:
            yield generator.integers(0, 256, (240, 320, 3), dtype=np.uint8)

    name = room_name()
    alice = await connect(token(video_server, "alice"), name, video_server.url,
                          ice_host_addresses=LOOPBACK, network_quality=True,
                          tracks=[LocalVideoTrack.from_frames(noise())])
    bob = await connect(token(video_server, "bob"), name, video_server.url,
                        network_quality=True, transport="websocket")

    def bobs_level() -> int | None:
        found = [p for p in alice.participants.values() if p.identity == "bob"]
        return found[0].network_quality_level if found else None

    async def levels_for(seconds: float) -> list[int | None]:
        seen = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seen.append(bobs_level())
            await asyncio.sleep(0.1)
        return seen

    try:
        socket = bob._pc.pc  # type: ignore[attr-defined]
        assert isinstance(socket, WebSocketPeerConnection)
        deadline = time.monotonic() + 20
        while bobs_level() not in (4, 5):
            assert time.monotonic() < deadline, bobs_level()
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # the socket's delivery rate known: its window sized
        socket._pause_reading(True)
        stalled = await levels_for(3.0)
        socket._pause_reading(False)
        after = await levels_for(2.0)
        assert min(level for level in stalled + after if level is not None) <= 2, (
            stalled, after)
        deadline = time.monotonic() + 15
        while bobs_level() not in (4, 5):
            assert time.monotonic() < deadline, bobs_level()
            await asyncio.sleep(0.2)
        assert bob.state.value == "connected"
    finally:
        await bob.disconnect()
        await alice.disconnect()
