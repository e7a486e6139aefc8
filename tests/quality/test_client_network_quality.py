"""The Python client's Network Quality: ``connect(network_quality=True)`` gives the
local and each remote participant a ``network_quality_level`` (0-5), announced by
``network_quality_level_changed``, computed by a real server (media in a worker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

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
