"""The media socket tests get a real server (one per module, media in one worker
process) and a ``join`` fixture taking ``transport=``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from jupyter_video.client import Room, connect
from jupyter_video.sfu.adapter import use_host_addresses

from ..client.participants import LOOPBACK, Recorder, token
from ..server_process import ServerProcess


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    use_host_addresses(LOOPBACK)
    yield
    use_host_addresses(None)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("websocket"),
        video_config={"ice_host_addresses": LOOPBACK, "media_workers": 1},
    ).start()
    yield process
    process.stop()


@pytest.fixture
async def join(video_server: ServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """``await join(identity, room, transport=..., tracks=[...])`` -> (room, recorder)."""
    rooms: list[Room] = []

    async def _join(identity: str, name: str, **options: Any) -> tuple[Room, Recorder]:
        room = await connect(token(video_server, identity), name, video_server.url,
                             ice_host_addresses=LOOPBACK, **options)
        rooms.append(room)
        return room, Recorder(room)

    yield _join
    for room in rooms:
        await room.disconnect()
