"""Classroom tests: one real server per module (moderator identity ``teacher``), Python
participants that follow the classroom (``seat``), and the teacher's ``Classroom``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from jupyter_video.account import Credentials
from jupyter_video.classroom import Classroom, Seat, attend
from jupyter_video.client import LocalAudioTrack, LocalVideoTrack

from ..client.conftest import loopback_only  # noqa: F401 - ICE on 127.0.0.1, as there
from ..client.participants import LOOPBACK, token
from ..server_process import ServerProcess

TIMEOUT = 90  # seconds per test: real peers join, move and leave


def tone(seconds: float = 30.0, frequency: float = 440.0, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * frequency * t)


def solid_frames(level: int = 128) -> Callable[[], np.ndarray]:
    frame = np.full((120, 160, 3), level, dtype=np.uint8)
    return lambda: frame


def media_tracks() -> list[Any]:
    return [LocalAudioTrack.from_array(tone(), name="microphone"),
            LocalVideoTrack.from_frames(solid_frames(), fps=10, name="camera")]


def room_name() -> str:
    return f"lecture-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("classroom"),
        video_config={"ice_host_addresses": LOOPBACK, "media_workers": 1,
                      "moderators": ["teacher"]},
    ).start()
    yield process
    process.stop()


@pytest.fixture
def classroom(video_server: ServerProcess) -> Callable[[str], Classroom]:
    """``classroom(room)``: the teacher's object, with the server's API key."""
    raw = video_server.credentials()
    credentials = Credentials(raw["account_sid"], raw["auth_token"], raw["api_key_sid"],
                              raw["api_key_secret"], video_server.url)
    return lambda room: Classroom(room, server=video_server.url, credentials=credentials)


@pytest.fixture
async def seat(video_server: ServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """``await seat(identity, room, tracks=factory)``: a Python participant; all leave."""
    seats: list[Seat] = []

    async def _seat(identity: str, room: str, tracks: Callable[[], list[Any]] = list) -> Seat:
        joined = await attend(token(video_server, identity), room, video_server.url,
                              identity=identity, tracks=tracks, ice_host_addresses=LOOPBACK)
        seats.append(joined)
        return joined

    yield _seat
    for joined in seats:
        await joined.leave()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.path).startswith(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUT))
