"""Client tests gather ICE on loopback only (aioice leaves 127.0.0.1 out by default);
the end-to-end ones get a real server (one per module) and a ``join`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from jupyter_video._aiortc import use_host_addresses
from jupyter_video.client import Room, connect

from ..server_process import ServerProcess
from .participants import LOOPBACK, Recorder, token

UNIT_TIMEOUT = 30  # seconds; the end-to-end modules set their own


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    use_host_addresses(LOOPBACK)
    yield
    use_host_addresses(None)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``jupyter server`` with the extension, media on 127.0.0.1 in one worker process."""
    process = ServerProcess(
        tmp_path_factory.mktemp("client-e2e"),
        video_config={"ice_host_addresses": LOOPBACK, "media_workers": 1},
    ).start()
    yield process
    process.stop()


@pytest.fixture
async def join(video_server: ServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """``await join(identity, room, tracks=[...])`` -> (room, recorder); all leave at the end."""
    rooms: list[Room] = []

    async def _join(identity: str, name: str, **options: Any) -> tuple[Room, Recorder]:
        room = await connect(token(video_server, identity), name, video_server.url,
                             ice_host_addresses=LOOPBACK, **options)
        rooms.append(room)
        return room, Recorder(room)

    yield _join
    for room in rooms:
        await room.disconnect()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TIMEOUT))
