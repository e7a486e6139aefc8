"""The Python client's Network Quality: ``connect(network_quality=True)`` gives the
local and each remote participant a ``network_quality_level`` (0-5), announced by
``network_quality_level_changed``, computed by a real server (media in a worker)."""

from __future__ import annotations

from collections.abc import Iterator

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
