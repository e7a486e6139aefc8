"""A media socket publisher's tracks are recorded as a WebRTC publisher's are: its
frames feed the same publication, whose recorder writes them as they came."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_video.client import LocalAudioTrack, connect

from ..client.participants import LOOPBACK, token
from ..server_process import ServerProcess
from ..test_recordings import (
    assert_pattern,
    audio_peak,
    camera,
    create_room,
    download,
    room_recordings,
    tone,
    video_config,
    video_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("socket-recordings")
    process = ServerProcess(root, video_config=video_config(root)).start()
    yield process
    process.stop()


async def test_a_socket_publishers_tracks_are_recorded_playable(
        server: ServerProcess, tmp_path: Path) -> None:
    room = create_room(server, RecordParticipantsOnConnect="true")
    alice = await connect(token(server, "alice"), room["unique_name"], server.url,
                          transport="websocket", ice_host_addresses=LOOPBACK,
                          tracks=[camera(), LocalAudioTrack.from_array(tone(20), name="voice")])
    await wait_until(lambda: len(room_recordings(server, room["sid"])) == 2)
    await asyncio.sleep(4.0)
    await alice.disconnect()
    listed = await wait_until(lambda: [r for r in room_recordings(server, room["sid"])
                                       if r["status"] == "completed"] if all(
        r["status"] == "completed" for r in room_recordings(server, room["sid"])) else None)
    assert sorted((r["type"], r["codec"]) for r in listed) == [("audio", "opus"), ("video", "vp8")]
    for recording in listed:
        path = download(server, recording, tmp_path)
        if recording["type"] == "video":
            codec, seconds, indices = video_of(path)
            assert codec == "vp8" and seconds > 2
            assert_pattern(indices)
        else:
            codec, seconds, peak = audio_peak(path)
            assert codec == "opus" and abs(peak - 440.0) < 5.0 and seconds > 2
